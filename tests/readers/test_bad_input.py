"""Readers given bad input, as users hand it over: each case was a bug (a crash
without file and line, a chain on the wrong aspect, a path out of the data folder)."""

import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot import ASPECTS_KEY
from spacy_mulcot.cli import app
from spacy_mulcot.readers import ChainIndex, ReadStats, RowError, read_jsonl, read_mvsa, read_twitter

from ..conftest import make_image
from .test_readers import HEADER


def chain(label: str) -> str:
    return f'"Text_analysis": "..."\n"Prediction": "{label}"'


def test_non_utf8_byte_names_file_and_line_and_can_be_skipped(tmp_path):
    rows = [
        b"1\t2\t1.jpg\t$T$ is great\tTesla",
        b"2\t0\t2.jpg\tcaf\xe9 $T$ closed\tParis",
        b"3\t1\t3.jpg\t$T$ today\tObama",
    ]
    path = tmp_path / "train.tsv"
    path.write_bytes(HEADER.encode() + b"\n".join(rows) + b"\n")
    vocab = spacy.blank("en").vocab
    with pytest.raises(RowError, match=r"train.tsv, line 3: not valid UTF-8: byte 0xe9 at column 14"):
        list(read_twitter(path, vocab, view="aspect"))
    stats = ReadStats()
    docs = list(read_twitter(path, vocab, view="aspect", on_error="skip", stats=stats))
    assert [d.spans[ASPECTS_KEY][0].text for d in docs] == ["Tesla", "Obama"]
    assert stats.skipped == 1 and "line 3" in stats.problems[0]
    result = CliRunner().invoke(app, ["convert", "twitter", str(tmp_path), str(tmp_path / "out"), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "1 malformed records skipped" in result.output


def test_duplicated_mention_rows_keep_each_chain_on_its_own_aspect(tmp_path):
    """Rows 1 and 2 are the same mention; the chain of the NEG aspect must land on it."""
    text = "$T$ and Boston fans"
    rows = [
        "1\t2\t1.jpg\t$T$ love Boston fans\tMessi",
        "2\t2\t1.jpg\t$T$ love Boston fans\tMessi",
        "3\t0\t1.jpg\tMessi love $T$ fans\tBoston",
    ]
    del text
    (tmp_path / "train.tsv").write_text(HEADER + "\n".join(rows) + "\n")
    tweet = "Messi love Boston fans"
    records = [
        {"text": tweet, "aspect": "Messi", "image_path": "1.jpg", "label": "positive", "cot": chain("positive")},
        {"text": tweet, "aspect": "Messi", "image_path": "1.jpg", "label": "positive", "cot": chain("positive")},
        {"text": tweet, "aspect": "Boston", "image_path": "1.jpg", "label": "negative", "cot": chain("negative")},
    ]
    (tmp_path / "train.json").write_text(json.dumps(records))
    stats = ReadStats()
    docs = list(
        read_twitter(
            tmp_path / "train.tsv", spacy.blank("en").vocab, chains=ChainIndex(tmp_path / "train.json"), stats=stats
        )
    )
    spans = docs[0].spans[ASPECTS_KEY]
    assert [(s.text, s.label_, s._.rationale_label) for s in spans] == [
        ("Messi", "POS", "POS"),
        ("Boston", "NEG", "NEG"),
    ]
    assert stats.duplicates == 1


def test_one_mention_with_two_labels_is_refused(tmp_path):
    rows = ["1\t2\t1.jpg\t$T$ is here\tMessi", "2\t0\t1.jpg\t$T$ is here\tMessi"]
    (tmp_path / "train.tsv").write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(RowError, match=r"line 3: aspect 'Messi' is labelled NEG here but POS on line 2"):
        list(read_twitter(tmp_path / "train.tsv", spacy.blank("en").vocab))


@pytest.mark.parametrize("label", ["+2", " 2.0", "two", ""])
def test_twitter_labels_are_strict(tmp_path, label):
    (tmp_path / "train.tsv").write_text(HEADER + f"1\t{label}\t1.jpg\t$T$ x\ty\n")
    with pytest.raises(RowError, match="label must be 0, 1 or 2"):
        list(read_twitter(tmp_path / "train.tsv", spacy.blank("en").vocab))


@pytest.mark.parametrize("label", [1.7, True, "+1", None])
def test_mvsa_labels_are_strict(tmp_path, label):
    path = tmp_path / "mvsa.json"
    path.write_text(json.dumps([{"id": 1, "text": "x", "emotion_label": label}]))
    with pytest.raises(RowError, match="record 0: emotion_label must be 0, 1 or 2"):
        list(read_mvsa(path, spacy.blank("en")))


@pytest.mark.parametrize("post_id", ["../../etc/passwd", "/etc/passwd", "a/../../b"])
def test_mvsa_id_cannot_leave_the_image_folder(tmp_path, post_id):
    path = tmp_path / "mvsa.json"
    path.write_text(
        json.dumps([{"id": post_id, "text": "x", "emotion_label": 0}, {"id": 2, "text": "y", "emotion_label": 1}])
    )
    with pytest.raises(RowError, match="leaves the folder"):
        list(read_mvsa(path, spacy.blank("en"), image_dir=tmp_path / "images"))
    stats = ReadStats()
    docs = list(read_mvsa(path, spacy.blank("en"), image_dir=tmp_path / "images", on_error="skip", stats=stats))
    assert len(docs) == 1 and stats.skipped == 1


@pytest.mark.parametrize("image", ["../secret.jpg", "/etc/hostname"])
def test_jsonl_and_twitter_image_paths_cannot_leave_their_folder(tmp_path, image):
    (tmp_path / "data").mkdir()
    jsonl = tmp_path / "data" / "posts.jsonl"
    jsonl.write_text(json.dumps({"text": "hi", "image": image}) + "\n")
    with pytest.raises(RowError, match="line 1: the file name .* leaves the folder"):
        list(read_jsonl(jsonl, spacy.blank("en")))
    tsv = tmp_path / "data" / "train.tsv"
    tsv.write_text(HEADER + f"1\t1\t{image}\t$T$ x\ty\n")
    with pytest.raises(RowError, match="line 2: the file name .* leaves the folder"):
        list(read_twitter(tsv, spacy.blank("en").vocab))


def test_image_in_a_subfolder_is_fine(tmp_path):
    (tmp_path / "img" / "a").mkdir(parents=True)
    (tmp_path / "img" / "a" / "p.jpg").write_bytes(make_image())
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(json.dumps({"text": "hi", "image": "a/./p.jpg"}) + "\n")
    doc = next(read_jsonl(jsonl, spacy.blank("en"), image_dir=tmp_path / "img"))
    assert doc._.image.load().size == (64, 48)
