"""K folds for out-of-fold soft labels, and joining the labelled parts again."""

import json

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.doc_model import ASPECTS_KEY, make_doc, set_aspects

from ..helpers import cli, read


def _corpus(path, n):
    nlp = spacy.blank("en")
    db = DocBin(store_user_data=True)
    for i in range(n):
        doc = make_doc(nlp, f"post {i} about Tesla today")
        set_aspects(doc, [{"text": "Tesla", "label": ("POS", "NEG", "NEU")[i % 3]}])
        doc.spans[ASPECTS_KEY][0]._.soft_labels = [float(i), 0.0, -1.0]
        db.add(doc)
    db.to_disk(path)


@pytest.mark.parametrize("k", [2, 3])
def test_each_post_is_held_out_once_and_never_trained_on_by_its_fold(tmp_path, k):
    _corpus(tmp_path / "train.spacy", 10)
    cli("folds", tmp_path / "train.spacy", tmp_path / "folds", "--k", k, "--seed", 1)
    held, trained = [], []
    for i in range(k):
        fold_train = {d.text for d in read(tmp_path / "folds" / f"fold-{i}" / "train.spacy")}
        fold_held = {d.text for d in read(tmp_path / "folds" / f"fold-{i}" / "heldout.spacy")}
        assert not fold_train & fold_held and len(fold_train) + len(fold_held) == 10
        held += fold_held
        trained.append(fold_train)
    assert sorted(held) == sorted(f"post {i} about Tesla today" for i in range(10))
    record = json.loads((tmp_path / "folds" / "folds.json").read_text())
    assert record["k"] == k and sorted(j for fold in record["heldout"] for j in fold) == list(range(10))


def test_concat_keeps_order_spans_and_soft_labels(tmp_path):
    _corpus(tmp_path / "a.spacy", 3)
    _corpus(tmp_path / "b.spacy", 2)
    cli("concat", tmp_path / "ab.spacy", tmp_path / "b.spacy", tmp_path / "a.spacy")
    docs = read(tmp_path / "ab.spacy")
    assert [d.text.split()[1] for d in docs] == ["0", "1", "0", "1", "2"]
    assert [d.spans[ASPECTS_KEY][0]._.soft_labels[0] for d in docs] == [0.0, 1.0, 0.0, 1.0, 2.0]
    assert [d.spans[ASPECTS_KEY][0].label_ for d in docs] == ["POS", "NEG", "POS", "NEG", "NEU"]


def test_concat_leaves_out_the_posts_of_excluded_files(tmp_path):
    _corpus(tmp_path / "a.spacy", 5)
    _corpus(tmp_path / "b.spacy", 2)  # posts 0 and 1, as in a.spacy
    printed = cli("concat", tmp_path / "rest.spacy", tmp_path / "a.spacy", "--exclude", tmp_path / "b.spacy")
    assert "3 docs" in printed
    assert [d.text.split()[1] for d in read(tmp_path / "rest.spacy")] == ["2", "3", "4"]


def test_bad_input_is_refused_in_words(tmp_path):
    _corpus(tmp_path / "a.spacy", 3)
    runner = CliRunner(env={"COLUMNS": "400"})  # the error box unwrapped
    few = runner.invoke(app, ["folds", str(tmp_path / "a.spacy"), str(tmp_path / "f"), "--k", "5"])
    assert few.exit_code != 0 and "fewer than --k 5" in few.output
    missing = runner.invoke(app, ["concat", str(tmp_path / "o.spacy"), str(tmp_path / "nope.spacy")])
    assert missing.exit_code != 0 and "nope.spacy" in missing.output
    same = runner.invoke(app, ["concat", str(tmp_path / "a.spacy"), str(tmp_path / "a.spacy")])
    assert same.exit_code != 0 and "also an input" in same.output
