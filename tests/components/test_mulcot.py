"""The ``mulcot`` component end to end with the real default encoders
(all-MiniLM-L6-v2 + EfficientNet-Lite0) on a few handwritten posts."""

import numpy
import pytest
import spacy

from spacy_mulcot.components.mulcot_loss import class_weights
from spacy_mulcot.doc_model import set_aspects
from spacy_mulcot.readers.corpus import make_example

from ..helpers import POSTS, TRANSFORMER, build_nlp, fresh, gold_docs, make_image, train  # noqa: F401


def outputs(docs):
    return [
        (
            [(s.start, s.end, s.label_) for s in d.spans["aspects"]],
            [tuple(round(v, 5) for v in s._.sentiment_scores.values()) for s in d.spans["aspects"]],
            {k: round(v, 5) for k, v in d.cats.items()},
        )
        for d in docs
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mulcot")
    nlp = build_nlp()
    gold = gold_docs(nlp, tmp_path)
    examples = [make_example(d) for d in gold]
    history = train(nlp, examples)
    return nlp, gold, history


def test_overfits_a_handful_of_posts(trained):
    nlp, gold, history = trained
    assert history[-1] < 0.2 * history[0], history
    docs = list(nlp.pipe(fresh(nlp, gold)))
    for doc, ref in zip(docs, gold):
        got = {(s.start, s.end, s.label_) for s in doc.spans["aspects"]}
        assert got == {(s.start, s.end, s.label_) for s in ref.spans["aspects"]}
        assert doc.spans["aspects"].attrs["source"] == "predicted"
        for span in doc.spans["aspects"]:
            assert set(span._.sentiment_scores) == {"POS", "NEU", "NEG"}
            assert sum(span._.sentiment_scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_given_aspects_are_kept_and_labelled(trained):
    nlp, gold, _ = trained
    docs = fresh(nlp, gold, given=True)
    docs[2].spans["aspects"][0]._.rationale = "Text_analysis: neutral news."
    docs = list(nlp.pipe(docs))
    for doc, ref in zip(docs, gold):
        assert doc.spans["aspects"].attrs["source"] == "given"
        assert [(s.start, s.end) for s in doc.spans["aspects"]] == [(s.start, s.end) for s in ref.spans["aspects"]]
        assert [s.label_ for s in doc.spans["aspects"]] == [s.label_ for s in ref.spans["aspects"]]
    # the span keeps its rationale through relabelling
    assert docs[2].spans["aspects"][0]._.rationale == "Text_analysis: neutral news."


def test_given_span_that_is_not_an_aspect_is_still_classified(trained):
    nlp, _, _ = trained
    doc = nlp.make_doc("Obama speaks with Merkel in Berlin")
    doc.spans["aspects"] = [doc[4:6]]  # "in Berlin": not a gold aspect, must be kept as given
    doc = nlp(doc)
    assert [(s.start, s.end) for s in doc.spans["aspects"]] == [(4, 6)]
    assert doc.spans["aspects"][0].label_ in ("POS", "NEU", "NEG")


def test_doc_without_image_and_empty_doc(trained):
    nlp, _, _ = trained
    doc = nlp("Loving the new Tesla , what a car !")
    assert doc._.image is None and doc._.image_features is None
    assert [s.text for s in doc.spans["aspects"]] == ["Tesla"]
    empty = nlp("")
    assert len(empty.spans["aspects"]) == 0 and set(empty.cats) == {"POS", "NEU", "NEG"}


def test_batched_pipe_equals_one_by_one(trained):
    nlp, gold, _ = trained
    batched = outputs(nlp.pipe(fresh(nlp, gold), batch_size=4))
    single = [outputs([nlp(d)])[0] for d in fresh(nlp, gold)]
    assert batched == single


def test_save_load_gives_identical_outputs(trained, tmp_path):
    nlp, gold, _ = trained
    before = outputs(nlp.pipe(fresh(nlp, gold)))
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["transformer", "mulcot_image", "mulcot"]
    assert outputs(loaded.pipe(fresh(loaded, gold))) == before
    from_bytes = build_nlp().from_bytes(nlp.to_bytes())
    assert outputs(from_bytes.pipe(fresh(from_bytes, gold))) == before


def test_weights_are_saved_as_safetensors_and_old_or_foreign_saves_are_handled(trained):
    """The shim writes safetensors (no pickle); a save from before (torch.save) still
    loads; a tensor this model lacks is ignored with a warning; a missing one is refused."""
    import io

    import srsly
    import torch
    from safetensors.torch import load as load_safetensors

    from spacy_mulcot.model import net_shim
    from spacy_mulcot.model.shim import state_from_safetensors, state_to_safetensors

    nlp, gold, _ = trained
    before = outputs(nlp.pipe(fresh(nlp, gold)))
    shim = net_shim(nlp.get_pipe("mulcot").model)
    msg = srsly.msgpack_loads(shim.to_bytes())
    assert msg["format"] == "safetensors" and set(load_safetensors(msg["state"])) <= set(shim.net.state_dict())

    def reload(msg):
        copy = build_nlp().from_bytes(nlp.to_bytes())
        net_shim(copy.get_pipe("mulcot").model).from_bytes(srsly.msgpack_dumps(msg))
        return outputs(copy.pipe(fresh(copy, gold)))

    state = {k: v for k, v in shim.net.state_dict().items()}
    old = io.BytesIO()
    torch.save(state, old)
    with pytest.warns(UserWarning, match="saved by an older spacy-mulcot"):
        assert reload({**msg, "format": None, "state": old.getvalue(), "aliases": {}}) == before
    extra, aliases = state_to_safetensors({**state, "from_the_future.weight": torch.ones(2)})
    with pytest.warns(UserWarning, match="ignored 1 saved tensors"):
        assert reload({**msg, "state": extra, "aliases": aliases}) == before
    first = next(iter(state))
    lacking, _ = state_to_safetensors({k: v for k, v in state.items() if k != first})
    with pytest.raises(ValueError, match="lack 1 of this model's tensors"):
        reload({**msg, "state": lacking, "aliases": {}})
    # tied tensors are stored once and come back tied in value
    tied = torch.arange(6.0).reshape(2, 3)
    data, aliases = state_to_safetensors({"a": tied, "b": tied, "c": tied.clone()})
    assert aliases == {"b": "a"} and set(load_safetensors(data)) == {"a", "c"}
    back = state_from_safetensors(data, aliases, "cpu")
    assert torch.equal(back["b"], tied) and torch.equal(back["c"], tied)


def test_evaluate_reports_all_metrics(trained):
    nlp, gold, _ = trained
    examples = [make_example(d, given_aspects=g) for d in gold for g in (False, True)]
    scores = nlp.evaluate(examples)
    assert scores["mulcot_mate_f"] == pytest.approx(1.0)
    assert scores["mulcot_jmasa_f"] == pytest.approx(1.0)
    assert scores["mulcot_masc_acc"] == pytest.approx(1.0)
    assert scores["mulcot_msc_acc"] is None  # no post labels in these posts


def test_rationale_is_read_and_modality_dropout_keeps_it_optional(tmp_path):
    nlp = build_nlp(rationale_dropout=0.5)
    gold = gold_docs(nlp, tmp_path)
    for doc in gold:
        for span in doc.spans["aspects"]:
            span._.rationale = f'"Text_analysis": "sentiment toward {span.text}"\n"Prediction": "{span.label_}"'
    examples = [make_example(d, given_aspects=True) for d in gold]
    history = train(nlp, examples, steps=15)
    assert history[-1] < history[0]
    with_chain = nlp(fresh(nlp, gold, given=True)[0])
    bare = fresh(nlp, gold, given=True)[0]
    for span in bare.spans["aspects"]:
        span._.rationale = None
    without = nlp(bare)
    a = with_chain.spans["aspects"][0]._.sentiment_scores
    b = without.spans["aspects"][0]._.sentiment_scores
    assert a != b  # the rationale changes the prediction
    assert without.spans["aspects"][0].label_ in ("POS", "NEU", "NEG")


def test_untrained_component_says_what_to_do():
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot")
    with pytest.raises(ValueError, match="not initialized.*spacy train"):
        nlp("Loving the new Tesla")


def test_pipeline_without_transformer_says_what_to_do(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot")
    doc = nlp.make_doc("Loving the new Tesla")
    set_aspects(doc, [{"text": "Tesla", "label": "POS"}])
    with pytest.raises(ValueError, match="(?i)add one before it"):
        nlp.initialize(lambda: [make_example(doc)])


def test_bad_gold_label_is_refused(tmp_path):
    nlp = build_nlp()
    doc = nlp.make_doc("Loving the new Tesla")
    with pytest.raises(ValueError, match="Unknown polarity"):
        set_aspects(doc, [{"text": "Tesla", "label": "happy"}])
    doc.spans["aspects"] = [doc.char_span(15, 20, label="happy")]  # built by hand, unchecked
    nlp.initialize(lambda: [make_example(doc)])
    with pytest.raises(ValueError, match="expected one of"):
        nlp.update([make_example(doc)])


def test_cpu_config_builds_a_pipeline():
    from pathlib import Path

    config = spacy.util.load_config(Path(__file__).parents[2] / "configs" / "mulcot_cpu.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["transformer", "mulcot_image", "mulcot"]


def test_evaluate_cli_reads_images_and_reports_every_metric(trained, tmp_path):
    import json

    from spacy.tokens import DocBin
    from typer.testing import CliRunner

    from spacy_mulcot.cli import app

    nlp, gold, _ = trained
    nlp.to_disk(tmp_path / "pipeline")
    DocBin(store_user_data=True, docs=gold).to_disk(tmp_path / "test.spacy")
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "test.spacy"), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["n_posts"] == len(gold) and metrics["n_gold_aspects"] == 7
    assert metrics["scores"]["mulcot_mate_f"] == 100.0 and metrics["scores"]["mulcot_masc_acc"] == 100.0
    assert "mulcot_jmasa_f" in result.output


def test_balance_aspects_weights_rare_polarities_up(tmp_path):
    nlp = build_nlp()
    mulcot = nlp.get_pipe("mulcot")
    gold = gold_docs(nlp, tmp_path)  # POSTS: POS 3, NEU 3, NEG 1
    mulcot.cfg["balance_aspects"] = 0.5
    nlp.initialize(lambda: [make_example(d) for d in gold])
    weights = dict(zip(mulcot.labels, mulcot.cfg["aspect_class_weights"]))
    assert weights["NEG"] > weights["POS"] == pytest.approx(weights["NEU"])
    assert sum(weights.values()) / 3 == pytest.approx(1.0)
    assert class_weights([make_example(d) for d in gold], "aspects", mulcot.labels, 0.0) == pytest.approx([1.0] * 3)


def test_whitespace_tokens_are_never_aspects(trained):
    """A double space is a token of its own in spaCy; a tagger that says B everywhere
    (forced here through its bias) must still give no whitespace aspect."""
    import torch

    from spacy_mulcot.model import net_shim

    nlp, _, _ = trained
    tagger = net_shim(nlp.get_pipe("mulcot").model).net.tagger
    saved = tagger.bias.detach().clone()
    try:
        with torch.no_grad():
            tagger.bias.copy_(torch.tensor([-50.0, 50.0, -50.0]))
        doc = nlp("Loving  the new Tesla , what a car !")
        assert any(t.is_space for t in doc)
        aspects = [s.text for s in doc.spans["aspects"]]
        assert "Tesla" in aspects and all(s.text.strip() for s in doc.spans["aspects"]), aspects
        assert list(nlp("   ").spans["aspects"]) == []
    finally:
        with torch.no_grad():
            tagger.bias.copy_(saved)


def test_bio_decode_keeps_outside_tokens_out():
    from spacy_mulcot import bio

    log_probs = numpy.log(numpy.array([[0.1, 0.8, 0.1]] * 3, dtype="float32"))
    assert bio.decode(log_probs) == [(0, 1), (1, 2), (2, 3)]
    assert bio.decode(log_probs, outside=[False, True, False]) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="2 'outside' flags for 3 tokens"):
        bio.decode(log_probs, outside=[False, True])


def test_unknown_per_call_setting_is_refused(trained):
    nlp, gold, _ = trained
    with pytest.raises(
        TypeError, match=r"unknown generation setting\(s\) \[.generate_chains.\]; the settings are .*generate_reasoning"
    ):
        list(nlp.pipe(fresh(nlp, gold), component_cfg={"mulcot": {"generate_chains": True}}))
