"""Soft labels kept as a JSON file and put back on a corpus without the assistant."""

import json

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.distill.soft_label_file import FORMAT, apply_soft_labels, export_soft_labels
from spacy_mulcot.doc_model import ASPECTS_KEY, make_doc, set_aspects

from ..helpers import cli, read


def _docs(n, soft=True, image=True):
    nlp = spacy.blank("en")
    docs = []
    for i in range(n):
        doc = make_doc(nlp, f"post {i} : Tesla beats Ford today", image=f"/data/images/{i}.jpg" if image else None)
        set_aspects(doc, [{"text": "Tesla", "label": "POS"}, {"text": "Ford", "label": "NEG"}])
        if soft:
            doc.spans[ASPECTS_KEY][0]._.soft_labels = [2.0 + i, 0.5, -1.0]
            doc.spans[ASPECTS_KEY][1]._.soft_labels = [-1.0, 0.25, 1.5 + i]
            doc._.tag_soft_labels = [[0.1 * i, 0.2, 0.3] for _ in doc]
        docs.append(doc)
    return docs


def _write(docs, path):
    db = DocBin(store_user_data=True)
    for doc in docs:
        db.add(doc)
    db.to_disk(path)
    return path


def test_round_trip_puts_each_aspects_logits_back_where_they_were():
    data = json.loads(json.dumps(export_soft_labels(_docs(3), tags=True, command="make labels")))
    assert data["format"] == FORMAT and data["n_posts"] == 3 and data["n_aspects"] == 6
    assert data["posts"][1]["image"] == "1.jpg" and data["command"] == "make labels"
    hard = _docs(3, soft=False)
    counts = apply_soft_labels(data, hard)
    assert counts == {"posts": 3, "aspects": 6, "posts_missing": 0, "tags": 3}
    for i, doc in enumerate(hard):
        tesla, ford = doc.spans[ASPECTS_KEY]
        assert tesla._.soft_labels == [2.0 + i, 0.5, -1.0] and ford._.soft_labels == [-1.0, 0.25, 1.5 + i]
        assert doc._.tag_soft_labels[0] == pytest.approx([0.1 * i, 0.2, 0.3], abs=1e-3)
        assert len(doc._.tag_soft_labels) == len(doc)


def test_posts_are_matched_by_text_and_image_not_by_position():
    data = export_soft_labels(_docs(3))
    other = _docs(3, soft=False)[::-1]  # reversed order
    moved = make_doc(spacy.blank("en"), "post 0 : Tesla beats Ford today", image="/elsewhere/9.jpg")
    set_aspects(moved, [{"text": "Tesla", "label": "POS"}])
    counts = apply_soft_labels(data, [*other, moved])
    assert counts["posts"] == 3 and counts["posts_missing"] == 1
    assert other[0].spans[ASPECTS_KEY][0]._.soft_labels[0] == 4.0  # post 2
    assert moved.spans[ASPECTS_KEY][0]._.soft_labels is None


def test_bad_input_is_refused_in_words():
    with pytest.raises(ValueError, match="has no soft labels"):
        export_soft_labels(_docs(2, soft=False))
    with pytest.raises(ValueError, match="no tag logits"):
        docs = _docs(1)
        docs[0]._.tag_soft_labels = None
        export_soft_labels(docs, tags=True)
    data = export_soft_labels(_docs(2))
    with pytest.raises(ValueError, match="not a soft-label file"):
        apply_soft_labels({**data, "format": "other"}, _docs(2, soft=False))
    with pytest.raises(ValueError, match="no post of the corpus"):
        apply_soft_labels(data, _docs(2, soft=False, image=False))
    extra = _docs(1, soft=False)
    set_aspects(extra[0], [{"text": "today", "label": "NEU"}])
    with pytest.raises(ValueError, match="'today'.*not in the soft-label file"):
        apply_soft_labels(data, extra)
    assert apply_soft_labels(data, extra, strict=False)["aspects"] == len(extra[0].spans[ASPECTS_KEY]) - 1
    assert [s._.soft_labels is None for s in extra[0].spans[ASPECTS_KEY]].count(True) == 1


def test_cli_exports_with_provenance_and_applies(tmp_path):
    source = _write(_docs(4), tmp_path / "soft.spacy")
    record = tmp_path / "seed-0.json"
    record.write_text(json.dumps({"name": "teacher_fold0", "seed": 0, "config_hash": "abc123", "commit": "f00"}))
    out = tmp_path / "labels.json"
    first3 = _write(_docs(3, soft=False), tmp_path / "first3.spacy")
    cli("export-soft-labels", out, source, "--posts", first3, "--producer", record, "--command", "folds; soft-targets")
    data = json.loads(out.read_text())
    assert len(out.read_text().splitlines()) < 60  # one line per post, not one per number
    assert data["n_posts"] == 3 and "tags" not in data["posts"][0]
    assert data["producers"][0]["config_hash"] == "abc123" and data["producers"][0]["record"] == str(record)
    hard = _write(_docs(4, soft=False), tmp_path / "hard.spacy")
    printed = cli("apply-soft-labels", out, hard, tmp_path / "labelled.spacy")
    assert "6 aspects of 3 posts" in printed and "1 posts not in the file" in printed
    labelled = read(tmp_path / "labelled.spacy")
    assert [list(d.spans[ASPECTS_KEY][0]._.soft_labels) for d in labelled[:3]] == [
        [2.0 + i, 0.5, -1.0] for i in range(3)
    ]
    assert labelled[3].spans[ASPECTS_KEY][0]._.soft_labels is None


def test_cli_refuses_a_file_that_matches_nothing(tmp_path):
    out = tmp_path / "labels.json"
    cli("export-soft-labels", out, _write(_docs(2), tmp_path / "soft.spacy"))
    other = _write(_docs(2, soft=False, image=False), tmp_path / "hard.spacy")
    result = CliRunner().invoke(app, ["apply-soft-labels", str(out), str(other), str(tmp_path / "o.spacy")])
    assert result.exit_code == 1 and "no post of the corpus" in result.output
    assert not (tmp_path / "o.spacy").exists()


def test_a_trained_pipeline_can_be_named_as_producer(tmp_path):
    model = tmp_path / "model-best"
    model.mkdir()
    (model / "config.cfg").write_text("[nlp]\nlang = en\n")
    (model / "meta.json").write_text(json.dumps({"name": "fold_teacher", "version": "0.0.1"}))
    out = tmp_path / "labels.json"
    cli("export-soft-labels", out, _write(_docs(1), tmp_path / "soft.spacy"), "--producer", model)
    (made,) = json.loads(out.read_text())["producers"]
    assert made["model"] == str(model) and made["name"] == "fold_teacher" and len(made["config_hash"]) == 12
    result = CliRunner().invoke(
        app, ["export-soft-labels", str(out), str(tmp_path / "soft.spacy"), "--producer", str(tmp_path / "nope")]
    )
    assert result.exit_code != 0
