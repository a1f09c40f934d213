import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot import ASPECTS_KEY
from spacy_mulcot.cli import app
from spacy_mulcot.readers import ChainIndex, ReadStats, RowError, read_jsonl, read_mvsa, read_twitter
from spacy_mulcot.readers.corpus import MulcotCorpus

from ..helpers import TWITTER_HEADER as HEADER
from ..helpers import make_image


@pytest.fixture
def tiny_tsv(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(make_image())
    rows = [
        "1\t2\t1.jpg\tRT @ fan : $T$ is everything # MCM\tChuck Bass",
        "2\t1\t1.jpg\tRT @ fan : Chuck Bass is everything $T$\t# MCM",
        "3\t0\t2.jpg\t$T$ shut down again\tNew York City",
    ]
    path = tmp_path / "train.tsv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_twitter_views_on_handwritten_rows(tiny_tsv):
    vocab = spacy.blank("en").vocab
    sentence = list(read_twitter(tiny_tsv, vocab, view="sentence"))
    assert len(sentence) == 2
    spans = sentence[0].spans[ASPECTS_KEY]
    assert [(s.text, s.label_) for s in spans] == [("Chuck Bass", "POS"), ("# MCM", "NEU")]
    assert sentence[0].text == "RT @ fan : Chuck Bass is everything # MCM"
    assert sentence[0]._.image.path.endswith("images/1.jpg")
    aspect = list(read_twitter(tiny_tsv, vocab, view="aspect"))
    assert len(aspect) == 3 and all(len(d.spans[ASPECTS_KEY]) == 1 for d in aspect)
    assert aspect[2].spans[ASPECTS_KEY][0].label_ == "NEG"


@pytest.mark.parametrize(
    "row,message",
    [
        ("9\t7\t1.jpg\t$T$ x\ty", "label must be 0, 1 or 2"),
        ("9\t1\t1.jpg\tno placeholder\ty", r"\$T\$ exactly once"),
        ("9\t1\t1.jpg\tonly four fields", "expected 5 tab-separated fields"),
    ],
)
def test_malformed_row_names_file_and_line(tiny_tsv, row, message):
    text = tiny_tsv.read_text() + row + "\n"
    tiny_tsv.write_text(text)
    vocab = spacy.blank("en").vocab
    with pytest.raises(RowError, match=message) as err:
        list(read_twitter(tiny_tsv, vocab))
    assert f"{tiny_tsv}, line 5" in str(err.value)
    stats = ReadStats()
    docs = list(read_twitter(tiny_tsv, vocab, view="aspect", on_error="skip", stats=stats))
    assert len(docs) == 3 and stats.skipped == 1 and stats.records == 4


@pytest.mark.data
def test_twitter2015_counts_and_every_chain_attaches(twitter15):
    vocab = spacy.blank("en").vocab
    expected = {"train": (3179, 2101), "dev": (1122, 727), "test": (1037, 674)}
    for split, (n_aspects, n_tweets) in expected.items():
        chains = ChainIndex(twitter15 / "reasoning" / f"{split}.json") if split != "train" else None
        aspect_docs = list(read_twitter(twitter15 / f"{split}.tsv", vocab, view="aspect", chains=chains))
        assert len(aspect_docs) == n_aspects
        sentence = list(read_twitter(twitter15 / f"{split}.tsv", vocab, view="sentence", chains=chains))
        assert len(sentence) == n_tweets
        assert sum(len(d.spans[ASPECTS_KEY]) for d in sentence) == n_aspects
        if chains is not None:
            spans = [s for d in aspect_docs for s in d.spans[ASPECTS_KEY]]
            assert all(s._.rationale for s in spans)
            assert chains.unmatched_spans == 0
            # Chain labels that differ from gold: 28 on dev, 21 on test (the data README).
            disagree = sum(s._.rationale_label != s.label_ for s in spans)
            assert disagree == {"dev": 28, "test": 21}[split]
            spans = [s for d in sentence for s in d.spans[ASPECTS_KEY]]
            assert all(s._.rationale for s in spans)
    assert all(d._.image.path and (twitter15 / "images" / d._.image.path.split("/")[-1]).exists() for d in sentence)


def test_chain_index_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ChainIndex(bad)
    bad.write_text(json.dumps([{"text": "x"}]))
    with pytest.raises(ValueError, match="record 0 lacks"):
        ChainIndex(bad)


def test_mvsa_reader(tmp_path):
    nlp = spacy.blank("en")
    posts = [{"id": 7, "text": "What a day!", "emotion_label": 0}, {"id": 8, "text": "meh", "emotion_label": 2}]
    path = tmp_path / "mvsa_single.json"
    path.write_text(json.dumps(posts))
    (tmp_path / "img").mkdir()
    docs = list(read_mvsa(path, nlp, image_dir=tmp_path / "img"))
    assert docs[0].cats == {"POS": 1.0, "NEU": 0.0, "NEG": 0.0}
    assert docs[1].cats["NEG"] == 1.0
    assert docs[0]._.image.path.endswith("img/7.jpg")
    path.write_text(json.dumps(posts + [{"id": 9, "text": "x", "emotion_label": 5}]))
    with pytest.raises(RowError, match="record 2: emotion_label"):
        list(read_mvsa(path, nlp))
    stats = ReadStats()
    assert len(list(read_mvsa(path, nlp, on_error="skip", stats=stats))) == 2 and stats.skipped == 1


def test_mvsa_without_images_is_text_only(tmp_path):
    """The MVSA-Single copy people can get has no images: no folder, no image refs."""
    nlp = spacy.blank("en")
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"id": "5", "text": "What a day!", "emotion_label": 0}]))
    (doc,) = read_mvsa(path, nlp)  # no images/ beside it
    assert doc._.image is None and doc.cats["POS"] == 1.0
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list(read_mvsa(path, nlp, images=True))
    (tmp_path / "images").mkdir()
    assert next(read_mvsa(path, nlp))._.image.path.endswith("images/5.jpg")
    assert next(read_mvsa(path, nlp, images=False))._.image is None


@pytest.mark.data
def test_real_mvsa_single_reads_text_only():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mvsa-single"
    if not root.exists():
        pytest.skip("../shared/data/mvsa-single is absent")
    stats = ReadStats()
    docs = list(read_mvsa(root / "dev.json", spacy.blank("en"), stats=stats))
    assert len(docs) == 450 and stats.skipped == 0 and all(d._.image is None for d in docs)


def test_jsonl_reader(tmp_path):
    nlp = spacy.blank("en")
    (tmp_path / "p.jpg").write_bytes(make_image())
    lines = [
        {
            "text": "Loving the new iPhone , battery is awful",
            "image": "p.jpg",
            "aspects": [
                {"start": 15, "end": 21, "polarity": "positive"},
                {"text": "battery", "polarity": "NEG", "reasoning": '"Prediction": negative'},
            ],
            "label": "NEU",
            "reasoning": '"Prediction": neutral',
        },
        {"text": "just text"},
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    docs = list(read_jsonl(path, nlp))
    spans = docs[0].spans[ASPECTS_KEY]
    assert [(s.text, s.label_) for s in spans] == [("iPhone", "POS"), ("battery", "NEG")]
    assert spans[1]._.rationale_label == "NEG" and docs[0]._.rationale_label == "NEU"
    assert docs[0]._.image.path == str(tmp_path / "p.jpg")
    assert docs[1]._.image is None and docs[0].cats["NEU"] == 1.0
    path.write_text(path.read_text() + '{"text": "x", "aspects": ["nope"]}\n{"text": 3}\nnot json\n')
    with pytest.raises(RowError, match=r"line 4: Aspect 'nope' is not in the text"):
        list(read_jsonl(path, nlp))
    stats = ReadStats()
    assert len(list(read_jsonl(path, nlp, on_error="skip", stats=stats))) == 2
    assert stats.skipped == 3 and "line 6" in stats.problems[-1]


def test_convert_cli_and_corpus_reader_keep_inputs(tiny_tsv, tmp_path):
    chains = [
        {
            "text": "RT @ fan : Chuck Bass is everything # MCM",
            "aspect": "Chuck Bass",
            "image_path": "1.jpg",
            "label": "positive",
            "cot": '"Text_analysis": "love"\n"Prediction": "positive"',
        }
    ]
    (tiny_tsv.parent / "reasoning").mkdir()
    (tiny_tsv.parent / "reasoning" / "train.json").write_text(json.dumps(chains))
    out = tmp_path / "corpus"
    result = CliRunner().invoke(app, ["convert", "twitter", str(tiny_tsv.parent), str(out)])
    assert result.exit_code == 0, result.output
    assert "2 docs from 3 records" in result.output and "chains attached 1/1" in result.output
    nlp = spacy.blank("en")
    egs = list(MulcotCorpus(out / "aspect" / "train.spacy", given_aspects=True)(nlp))
    assert len(egs) == 3
    pred, ref = egs[0].predicted, egs[0].reference
    assert pred._.image == ref._.image
    assert [s.text for s in pred.spans[ASPECTS_KEY]] == ["Chuck Bass"] and pred.spans[ASPECTS_KEY][0].label_ == ""
    assert pred.spans[ASPECTS_KEY][0]._.rationale_label == "POS"
    egs = list(MulcotCorpus(out / "sentence", given_aspects=False, image_dir="/elsewhere")(nlp))
    assert len(egs) == 2  # the folder holds train.spacy only: two tweets
    assert ASPECTS_KEY not in egs[0].predicted.spans
    assert egs[0].predicted._.image.path == "/elsewhere/1.jpg"
    result = CliRunner().invoke(app, ["stats", str(out / "sentence" / "train.spacy")])
    assert "aspect_rationales 1" in result.output and "aspects 3" in result.output


def test_readers_resolve_from_a_config(tiny_tsv):
    from spacy.util import registry

    reader = registry.resolve({"r": {"@readers": "mulcot.TwitterReader.v1", "path": str(tiny_tsv), "view": "aspect"}})[
        "r"
    ]
    egs = list(reader(spacy.blank("en")))
    assert len(egs) == 3 and all(len(eg.predicted.spans[ASPECTS_KEY]) == 1 for eg in egs)


def test_entry_points_work_without_importing_the_package(tmp_path):
    code = (
        "import sys, spacy\n"
        "nlp = spacy.blank('en'); nlp.add_pipe('mulcot_image')\n"
        "from spacy.util import registry\n"
        "registry.readers.get('mulcot.Corpus.v1')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_convert_jsonl_and_mvsa_cli(tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps({"text": "Great #coffee here", "aspects": ["#coffee"], "label": "positive"}) + "\n{broken\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["convert", "jsonl", str(posts), str(tmp_path / "p.spacy")])
    # A malformed record is one line naming file and line, not a traceback; nothing written.
    assert result.exit_code == 1 and "error: " in result.output and "line 2" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "p.spacy").exists()
    result = runner.invoke(app, ["convert", "jsonl", str(posts), str(tmp_path / "p.spacy"), "--on-error", "skip"])
    assert result.exit_code == 0 and "1 docs from 2 records, 1 malformed records skipped" in result.output
    doc = next(DocBin(store_user_data=True).from_disk(tmp_path / "p.spacy").get_docs(spacy.blank("en").vocab))
    assert doc.spans[ASPECTS_KEY][0].text == "#coffee" and doc.cats["POS"] == 1.0
    mvsa = tmp_path / "mvsa.json"
    mvsa.write_text(json.dumps([{"id": 1, "text": "sunny", "emotion_label": 0}]))
    result = runner.invoke(app, ["convert", "mvsa", str(mvsa), str(tmp_path / "m.spacy"), "--model", "en"])
    assert result.exit_code == 0 and "1 docs from 1 records" in result.output


def test_make_example_re_roots_the_image_without_editing_the_callers_doc(tmp_path):
    from spacy_mulcot.doc_model import make_doc
    from spacy_mulcot.readers.corpus import make_example

    gold = make_doc(spacy.blank("en"), "Loving the new Tesla", image="old/place/1.jpg")
    eg = make_example(gold, image_dir=tmp_path)
    assert eg.predicted._.image.path == str(tmp_path / "1.jpg")
    assert gold._.image.path == "old/place/1.jpg" and eg.reference is gold
