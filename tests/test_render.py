"""``python -m spacy_mulcot render``: gold and predicted aspects in polarity colours,
the image, the chains."""

import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.render import COLORS

from .components.test_mulcot import gold_docs


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
