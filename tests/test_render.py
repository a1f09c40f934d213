"""``python -m spacy_mulcot render``: gold and predicted aspects in polarity colours,
the image, the chains."""

import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.render import COLORS

from .helpers import gold_docs


def corpus(tmp_path):
    docs = gold_docs(spacy.blank("en"), tmp_path)
    docs[0].spans["aspects"][0]._.rationale = 'The car <looks> great. "Prediction": positive'
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "gold.spacy")
    return tmp_path / "gold.spacy", docs


def test_corpus_alone_shows_gold_spans_images_and_teacher_chains(tmp_path):
    path, docs = corpus(tmp_path)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["render", str(path), str(out), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "posts 3" in result.output
    page = out.read_text()
    assert page.count("data:image/jpeg;base64,") == 3
    assert COLORS["POS"] in page and COLORS["NEG"] in page  # Tesla and Boston
    assert "predicted" not in page
    assert "<details><summary>teacher chain for “Tesla” (POS)</summary>" in page
    assert "&lt;looks&gt;" in page  # chains are escaped


def test_model_predictions_beside_the_gold(tmp_path, trained_model_dir):
    path, docs = corpus(tmp_path)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["render", str(path), str(out), "--model", str(trained_model_dir)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('<span class="tag">gold</span>') == page.count('<span class="tag">predicted</span>') == len(docs)
    assert "post: POS" in page  # the model's post sentiment with probabilities
    assert "predicted_aspects" in result.output


def test_moved_images_are_reported_and_image_dir_finds_them(tmp_path):
    path, docs = corpus(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    for image in tmp_path.glob("post*.jpg"):
        image.rename(moved / image.name)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["render", str(path), str(out), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 2 images could not be read" in result.output and "--image-dir" in result.output
    assert "unreadable_images 2" in result.output
    page = out.read_text()
    assert page.count("image not readable") == 2 and "data:image/jpeg" not in page
    result = CliRunner().invoke(app, ["render", str(path), str(out), "--limit", "2", "--image-dir", str(moved)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and out.read_text().count("data:image/jpeg;base64,") == 2


def test_a_missing_model_is_one_line(tmp_path):
    path, _ = corpus(tmp_path)
    result = CliRunner().invoke(app, ["render", str(path), str(tmp_path / "p.html"), "--model", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.startswith("error: could not load the pipeline") and len(result.output.splitlines()) == 1


def test_evaluate_names_a_missing_image_and_takes_image_dir(tmp_path, trained_model_dir):
    path, docs = corpus(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    for image in tmp_path.glob("post*.jpg"):
        image.rename(moved / image.name)
    result = CliRunner().invoke(app, ["evaluate", str(trained_model_dir), str(path)])
    assert result.exit_code == 1
    assert "post0.jpg" in result.output and "--image-dir" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(trained_model_dir), str(path), "--image-dir", str(moved)])
    assert result.exit_code == 0, result.output
    assert "mulcot_masc_acc" in result.output
