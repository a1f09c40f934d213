"""Readers given bad input, as users hand it over: each case was a bug (a crash
without file and line, a chain on the wrong aspect, a path out of the data folder)."""

import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot import ASPECTS_KEY
from spacy_mulcot.cli import app
from spacy_mulcot.readers import ChainIndex, ReadStats, RowError, read_jsonl, read_mvsa, read_twitter
from spacy_mulcot.readers.table import read_csv

from ..helpers import TWITTER_HEADER as HEADER
from ..helpers import make_image


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
    (tmp_path / "images").mkdir()  # images are read (without the folder: text only)
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


# ---- issue "Nothing lost, nothing silent": rows merged, bytes, BOMs, overlaps -------


def _csv_posts(tmp_path, rows, name="posts.csv"):
    path = tmp_path / name
    path.write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_unterminated_quote_costs_one_row_not_the_rest_of_the_file(tmp_path):
    """Before: rows 11-99 merged silently into post 10's text (exit 0, "11 posts")."""
    rows = [f'{i},"post number {i}, fine"' for i in range(1, 101)]
    rows[9] = '10,"post ten never closes its quote'
    path = _csv_posts(tmp_path, rows)
    nlp = spacy.blank("en")
    with pytest.raises(RowError, match=r"posts.csv, line 11: .*quote"):
        list(read_csv(path, nlp))
    stats = ReadStats()
    docs = list(read_csv(path, nlp, on_error="skip", stats=stats))
    assert len(docs) == 99 and stats.skipped == 1 and stats.records == 100
    assert [d.user_data["mulcot_id"] for d in docs][9:11] == ["11", "12"]
    assert all(len(d.text) < 30 for d in docs)


def test_csv_quote_closed_rows_later_is_caught_too(tmp_path):
    rows = [f"{i},post {i}" for i in range(1, 21)]
    rows[4] = '5,"opens here'
    rows[14] = '15,"closes" here'  # the quote of row 5 ends on this line
    stats = ReadStats()
    docs = list(read_csv(_csv_posts(tmp_path, rows), spacy.blank("en"), on_error="skip", stats=stats))
    assert len(docs) == 18 and stats.skipped == 2
    assert all("\n" not in d.text for d in docs)
    assert "line 6" in stats.problems[0] and "line 16" in stats.problems[1]


def test_csv_field_holding_whole_rows_and_oversized_text_are_refused(tmp_path):
    # Quotes that pair up, but the quoted field spans lines that are rows of the table.
    rows = ['1,"fine"', '2,"starts', "3,a row", "4,another row", 'end"', "5,last"]
    stats = ReadStats()
    docs = list(read_csv(_csv_posts(tmp_path, rows), spacy.blank("en"), on_error="skip", stats=stats))
    assert "holds whole rows" in stats.problems[0] and "line 3" in stats.problems[0]
    assert "1" in [d.user_data["mulcot_id"] for d in docs] and "5" in [d.user_data["mulcot_id"] for d in docs]
    # A legitimate multi-line post is kept whole.
    ok = _csv_posts(tmp_path, ['1,"two lines,\nstill one post"', "2,next"], "ok.csv")
    assert [d.text for d in read_csv(ok, spacy.blank("en"))] == ["two lines,\nstill one post", "next"]
    long = _csv_posts(tmp_path, ["1," + "word " * 50], "long.csv")
    with pytest.raises(RowError, match=r"line 2: the text is over 100 characters"):
        list(read_csv(long, spacy.blank("en"), max_text_chars=100))


def test_csv_bad_byte_is_one_named_line(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\n1,ok\n2,caf\xe9 closed\n3,fine\n")
    nlp = spacy.blank("en")
    with pytest.raises(RowError, match=r"line 3: not valid UTF-8 \(byte 0xe9\)"):
        list(read_csv(path, nlp))
    stats = ReadStats()
    assert [d.text for d in read_csv(path, nlp, on_error="skip", stats=stats)] == ["ok", "fine"]
    assert stats.skipped == 1


def test_jsonl_bad_byte_is_named_and_skipped_and_a_bom_is_accepted(tmp_path):
    """Before: a raw UnicodeDecodeError even under skip (every record lost), and a BOM
    cost the first record."""
    lines = [
        json.dumps({"text": "first post"}).encode(),
        b'{"text": "caf\xe9"}',
        json.dumps({"text": "third"}).encode(),
    ]
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    nlp = spacy.blank("en")
    with pytest.raises(RowError, match=r"posts.jsonl, line 2: not valid UTF-8 \(byte 0xe9\)"):
        list(read_jsonl(path, nlp))
    stats = ReadStats()
    assert [d.text for d in read_jsonl(path, nlp, on_error="skip", stats=stats)] == ["first post", "third"]
    assert stats.skipped == 1 and stats.records == 3


def test_tsv_with_a_bom_is_read(tmp_path):
    """Before: refused even with skip, while CSV accepted a BOM."""
    path = tmp_path / "train.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"1\t2\t1.jpg\t$T$ is great\tTesla\n")
    (doc,) = read_twitter(path, spacy.blank("en").vocab, view="aspect")
    assert doc.spans[ASPECTS_KEY][0].text == "Tesla"


def test_conflicting_duplicate_rows_count_every_row_of_the_dropped_tweet(tmp_path):
    rows = [
        "1\t2\t1.jpg\t$T$ is here with Obama\tMessi",
        "2\t1\t1.jpg\tMessi is here with $T$\tObama",
        "3\t0\t1.jpg\t$T$ is here with Obama\tMessi",
        "4\t1\t2.jpg\t$T$ rocks\tParis",
    ]
    (tmp_path / "train.tsv").write_text(HEADER + "\n".join(rows) + "\n")
    stats = ReadStats()
    docs = list(read_twitter(tmp_path / "train.tsv", spacy.blank("en").vocab, on_error="skip", stats=stats))
    assert len(docs) == 1 and stats.records == 4
    assert stats.skipped == 3 and "3 rows (lines 2, 3, 4) are dropped" in stats.problems[0]


@pytest.mark.parametrize(
    "aspects,what",
    [
        ([{"start": 0, "end": 5}, {"start": 0, "end": 5}], "repeats"),
        ([{"start": 0, "end": 11}, {"start": 6, "end": 11}], "overlaps"),
    ],
)
def test_jsonl_duplicate_or_overlapping_aspects_are_refused(tmp_path, aspects, what):
    path = tmp_path / "posts.jsonl"
    path.write_text(json.dumps({"text": "Tesla Model rocks", "aspects": aspects}) + "\n")
    with pytest.raises(RowError, match=rf"line 1: Aspect .* {what} the aspect"):
        list(read_jsonl(path, spacy.blank("en")))


def test_aspect_by_text_takes_a_mention_no_other_aspect_covers(tmp_path):
    path = tmp_path / "posts.jsonl"
    aspects = [{"start": 0, "end": 13}, {"text": "battery"}]
    path.write_text(json.dumps({"text": "battery life is bad , the battery itself ok", "aspects": aspects}) + "\n")
    (doc,) = read_jsonl(path, spacy.blank("en"))
    assert [(s.start_char, s.text) for s in doc.spans[ASPECTS_KEY]] == [(0, "battery life"), (26, "battery")]


def test_mvsa_empty_text_is_refused_like_the_other_readers(tmp_path):
    path = tmp_path / "mvsa.json"
    path.write_text(
        json.dumps([{"id": 1, "text": "  ", "emotion_label": 0}, {"id": 2, "text": "ok", "emotion_label": 1}])
    )
    stats = ReadStats()
    docs = list(read_mvsa(path, spacy.blank("en"), on_error="skip", stats=stats))
    assert [d.text for d in docs] == ["ok"] and "empty 'text'" in stats.problems[0]
