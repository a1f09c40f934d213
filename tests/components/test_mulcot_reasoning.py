"""``mulcot`` with a reasoning generator: joint training, chains per aspect and post,
the label guarantee, generation on/off, save → load. The generator is a tiny random
Llama built here (SmolLM2's real tokenizer); the encoders are the real defaults."""

import pytest
import spacy

from spacy_mulcot.chains import parse_chain
from spacy_mulcot.readers.corpus import make_example

from ..helpers import CHAINS, POST_CHAIN, fresh, train
from ..helpers import build_reasoning_nlp as build_nlp
from ..helpers import reasoning_gold_docs as gold_docs


@pytest.fixture(scope="module")
def trained(tiny_lm_path, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mulcot_reasoning")
    nlp = build_nlp(tiny_lm_path)
    gold = gold_docs(nlp, tmp_path)
    # Chains are targets: the inputs carry none (as in the training configs).
    examples = [make_example(d, rationales=False) for d in gold]
    reasoning = []
    history = train(
        nlp,
        examples,
        steps=80,
        seed=0,
        learn_rate=3e-3,
        on_step=lambda losses: reasoning.append(losses["mulcot_reasoning"]),
    )
    return nlp, gold, history, reasoning


def test_joint_training_lowers_both_losses(trained):
    _, _, history, reasoning = trained
    assert len(reasoning) == len(history)
    assert reasoning[-1] < 0.1 * reasoning[0], reasoning[::10]
    assert history[-1] < 0.2 * history[0], history[::10]


def test_chains_for_each_aspect_and_the_post(trained):
    nlp, gold, _, _ = trained
    docs = list(nlp.pipe(fresh(nlp, gold)))
    for doc in docs:
        assert len(doc.spans["aspects"]) == 1
        for span in doc.spans["aspects"]:
            assert span._.reasoning == CHAINS[span.text]
            parsed = parse_chain(span._.reasoning)
            assert "Image_analysis" in parsed.sections
            assert parsed.prediction == span.label_
        assert isinstance(doc._.reasoning, str) and doc._.reasoning
    assert docs[0]._.reasoning == POST_CHAIN


def test_generation_off_skips_the_generator(trained, monkeypatch):
    nlp, gold, _, _ = trained
    from spacy_mulcot.model import generator_of

    generator = generator_of(nlp.get_pipe("mulcot").model)

    def fail(*args, **kwargs):
        raise AssertionError("the generator ran")

    monkeypatch.setattr(generator, "write_chains", fail)
    docs = list(nlp.pipe(fresh(nlp, gold), component_cfg={"mulcot": {"generate_reasoning": False}}))
    assert all(s._.reasoning is None for d in docs for s in d.spans["aspects"])
    assert all(d._.reasoning is None for d in docs)
    # the classification is unchanged by turning generation off
    assert [s.label_ for d in docs for s in d.spans["aspects"]] == ["POS", "NEG"]
    with pytest.raises(AssertionError, match="the generator ran"):
        nlp(fresh(nlp, gold)[0].text)


def test_guarantee_rewrites_the_prediction_to_the_classifier_label(trained, monkeypatch):
    nlp, gold, _, _ = trained
    from spacy_mulcot.model import generator_of

    generator = generator_of(nlp.get_pipe("mulcot").model)
    # A generator that always disagrees with the classifier (which says POS, NEG).
    monkeypatch.setattr(generator, "write_chains", lambda prompts, *a, **k: ['"Prediction": neutral'] * len(prompts))
    free = list(nlp.pipe(fresh(nlp, gold)))
    assert [parse_chain(s._.reasoning).prediction for d in free for s in d.spans["aspects"]] == ["NEU", "NEU"]
    forced = list(nlp.pipe(fresh(nlp, gold), component_cfg={"mulcot": {"guarantee_label": True}}))
    spans = [s for d in forced for s in d.spans["aspects"]]
    assert [parse_chain(s._.reasoning).prediction for s in spans] == [s.label_ for s in spans] == ["POS", "NEG"]
    assert [parse_chain(d._.reasoning).prediction for d in forced] == [max(d.cats, key=d.cats.get) for d in forced]


def test_save_load_reproduces_chains(trained, tmp_path):
    nlp, gold, _, _ = trained
    before = [(s._.reasoning, d._.reasoning) for d in nlp.pipe(fresh(nlp, gold)) for s in d.spans["aspects"]]
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    after = [(s._.reasoning, d._.reasoning) for d in loaded.pipe(fresh(loaded, gold)) for s in d.spans["aspects"]]
    assert after == before
    # The LM folder it was built from is gone (another machine): the pipeline's own copy serves.
    moved = spacy.load(
        tmp_path / "model",
        config={"components": {"mulcot": {"model": {"generator": {"name": str(tmp_path / "gone")}}}}},
    )
    assert [
        (s._.reasoning, d._.reasoning) for d in moved.pipe(fresh(moved, gold)) for s in d.spans["aspects"]
    ] == before
    # A name that now means a different LM (a relative path, another folder) is not used either.
    other = spacy.load(
        tmp_path / "model",
        config={"components": {"mulcot": {"model": {"generator": {"name": "SmolLM2-135M-Instruct", "n_layers": 1}}}}},
    )
    assert [
        (s._.reasoning, d._.reasoning) for d in other.pipe(fresh(other, gold)) for s in d.spans["aspects"]
    ] == before
    # Bytes carry the generator as the disk does: a pipeline whose generator name means
    # another LM (one layer here) rebuilds the saved one from the bytes alone.
    data = nlp.to_bytes()
    blank = spacy.util.load_model_from_config(other.config, auto_fill=False)
    blank.from_bytes(data)
    assert [
        (s._.reasoning, d._.reasoning) for d in blank.pipe(fresh(blank, gold)) for s in d.spans["aspects"]
    ] == before
    # Without that copy, using the generator says what is missing.
    with pytest.raises(RuntimeError, match="could not be loaded"):
        build_nlp(tmp_path / "gone").initialize(lambda: [make_example(d, rationales=False) for d in gold])
    # inference settings come from the config, so a load-time override wins over the saved cfg
    off = {"components": {"mulcot": {"generation": {"generate_reasoning": False}}}}
    quiet = spacy.load(tmp_path / "model", config=off)
    assert quiet.get_pipe("mulcot").generation.generate_reasoning is False
    assert "generate_reasoning" not in quiet.get_pipe("mulcot").cfg  # cfg: trained state only
    assert all(s._.reasoning is None for d in quiet.pipe(fresh(quiet, gold)) for s in d.spans["aspects"])


def test_label_in_prompt_names_the_decision_to_explain(trained, monkeypatch):
    """With ``label_in_prompt`` the generator is asked to explain a label: in training
    the chain's own Prediction, at inference the classifier's decision (how the CPU
    reasoning config keeps chain and classifier in agreement without rewriting)."""
    from spacy_mulcot.generation import GenerationSettings
    from spacy_mulcot.model import ModelInput, ReasoningItem, generator_of, write_chains

    nlp, gold, _, _ = trained
    pipe = nlp.get_pipe("mulcot")
    generator = generator_of(pipe.model)
    monkeypatch.setattr(generator, "label_in_prompt", True)
    seen = []
    real_loss = generator.loss

    def loss(prompts, chains, *args, **kwargs):
        seen.extend(zip(prompts, chains))
        return real_loss(prompts, chains, *args, **kwargs)

    monkeypatch.setattr(generator, "loss", loss)
    nlp.update([make_example(d, rationales=False) for d in gold], sgd=None, annotates=["mulcot_image"])
    for prompt, chain in seen:
        word = {"POS": "positive", "NEG": "negative"}[parse_chain(chain).prediction]
        assert prompt.count("The sentiment is ") == 1 and f"The sentiment is {word}: explain why." in prompt
    assert len(seen) == 3  # two aspects and the post

    asked = []
    monkeypatch.setattr(
        generator, "write_chains", lambda prompts, *a, **k: asked.extend(prompts) or ["x"] * len(prompts)
    )
    docs = list(nlp.pipe(fresh(nlp, gold)))
    decisions = [s.label_ for d in docs for s in d.spans["aspects"]] + [max(d.cats, key=d.cats.get) for d in docs]
    words = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}
    assert sorted(f"The sentiment is {words[y]}" for y in decisions) == sorted(
        p[p.index("The sentiment is ") :].split(":")[0] for p in asked
    )
    spans = [[(s.start, s.end) for s in d.spans["aspects"]] for d in docs]
    with pytest.raises(ValueError, match="unknown label 'GOOD'"):
        write_chains(pipe.model, ModelInput(docs, spans, [ReasoningItem(0, 0, label="GOOD")]), GenerationSettings())
    with pytest.raises(ValueError, match="reasoning item for span 9 of doc 0"):
        ModelInput(docs, spans, [ReasoningItem(0, 9, label="POS")])


def test_bad_settings_are_refused(tiny_lm_path):
    with pytest.raises(ValueError, match="generation targets must be one of"):
        build_nlp(tiny_lm_path, generation={"targets": "sentences"})


@pytest.mark.parametrize("student,layers,hidden,lam", [(False, 30, 384, 0.0), (True, 10, 128, 0.5)])
def test_reasoning_config_builds_the_assistant_and_with_the_workflows_overrides_the_student(
    student, layers, hidden, lam, tiny_lm_path
):
    from pathlib import Path

    from spacy_mulcot.model import generator_of, net_shim

    from ..conftest import workflow_overrides

    # The student as project.yml's distill-student builds it (the real SmolLM2 stands in
    # for the exported assistant LM).
    overrides = workflow_overrides("distill-student", student_generator="SmolLM2-135M-Instruct") if student else {}
    config = spacy.util.load_config(Path(__file__).parents[2] / "configs" / "assistant_cpu.cfg", overrides=overrides)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    pipe = nlp.get_pipe("mulcot")
    assert nlp.pipe_names == ["transformer", "mulcot_image", "mulcot"]
    assert len(generator_of(pipe.model).lm.model.layers) == layers
    assert net_shim(pipe.model).net.tagger.in_features == hidden
    assert pipe.cfg["distill_weight"] == lam
    assert pipe.generation.generate_reasoning is False  # off while training; on per call


def test_both_decoders_write_the_trained_chains_and_a_bad_one_is_refused(trained):
    nlp, gold, _, _ = trained

    def chains(decoder):
        cfg = {"mulcot": {"decoder": decoder, "chain_batch_size": 1, "dtype": None}}
        docs = list(nlp.pipe(fresh(nlp, gold), component_cfg=cfg))
        return [s._.reasoning for d in docs for s in d.spans["aspects"]] + [d._.reasoning for d in docs]

    fast = chains("auto")
    assert fast[:2] == [CHAINS["Tesla"], CHAINS["Boston"]]
    assert fast == chains("generate")
    with pytest.raises(ValueError, match="generation decoder must be one of"):
        chains("fast")


def test_a_saved_pipeline_keeps_the_prompt_it_was_trained_with(trained, tmp_path, monkeypatch):
    """Before: the prompt's words lived only in the code, so editing them silently
    changed every saved pipeline's chains."""
    import spacy_mulcot.reasoning.loading as generator_module
    from spacy_mulcot.model import generator_of

    nlp, gold, *_ = trained
    nlp.to_disk(tmp_path / "model")
    as_saved = spacy.load(tmp_path / "model")
    trained_with = generator_of(as_saved.get_pipe("mulcot").model).prompt
    before = [s._.reasoning for d in as_saved.pipe(fresh(as_saved, gold)) for s in d.spans["aspects"]]
    edited = {"system": "Be brief.", "user": "{text} / {target}?", "explain": " It is {label}."}
    monkeypatch.setattr(generator_module, "DEFAULT_PROMPT", edited)
    loaded = spacy.load(tmp_path / "model")
    assert generator_of(loaded.get_pipe("mulcot").model).prompt == trained_with != edited
    after = [s._.reasoning for d in loaded.pipe(fresh(loaded, gold)) for s in d.spans["aspects"]]
    assert after == before


def test_a_lora_generator_saved_without_its_base_loads_it_again_by_name(tiny_lm_path, tmp_path):
    """save_base = false: the pipeline keeps the adapters (and the projections), not the
    frozen LM; loading defers the LM until a chain is asked for, then takes the base by
    name again and refuses one with other weights; a missing base fails at load."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from spacy_mulcot.model import net_shim
    from spacy_mulcot.reasoning.loading import DeferredGenerator

    pytest.importorskip("peft")
    base = tmp_path / "base"
    shutil.copytree(tiny_lm_path, base)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    whole = build_nlp(base, generator={"lora": lora})
    nlp = build_nlp(base, generator={"lora": lora, "save_base": False})
    gold = gold_docs(nlp, tmp_path)
    examples = [make_example(d, rationales=False) for d in gold]
    for pipeline in (whole, nlp):
        train(pipeline, examples, steps=20, seed=0, learn_rate=3e-3)

    def chains(pipeline, **settings):
        docs = pipeline.pipe(fresh(pipeline, gold), component_cfg={"mulcot": settings})
        return [(s.label_, s._.reasoning, d._.reasoning) for d in docs for s in d.spans["aspects"]]

    before = chains(nlp)
    assert all(chain for _, chain, _ in before)
    whole.to_disk(tmp_path / "whole")
    nlp.to_disk(tmp_path / "model")
    size = (tmp_path / "model" / "mulcot" / "model").stat().st_size
    assert size < 0.5 * (tmp_path / "whole" / "mulcot" / "model").stat().st_size
    loaded = spacy.load(tmp_path / "model")
    shim = net_shim(loaded.get_pipe("mulcot").model)
    assert isinstance(shim.generator, DeferredGenerator)  # classifying alone never loads the LM
    assert [label for label, _, _ in chains(loaded, generate_reasoning=False)] == [label for label, _, _ in before]
    assert isinstance(shim.generator, DeferredGenerator)
    loaded.to_disk(tmp_path / "again")  # saved again before use: the same bytes of the generator
    assert chains(loaded) == before and not isinstance(shim.generator, DeferredGenerator)
    assert chains(spacy.load(tmp_path / "again")) == before
    # The same name now holds other weights: refused at the first chain, not silently combined.
    lm = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        lm.model.layers[0].mlp.up_proj.weight.add_(0.01)
    lm.save_pretrained(base)
    changed = spacy.load(tmp_path / "model")
    with pytest.raises(ValueError, match="other weights than the one"):
        chains(changed)
    # No base at all: the load says which LM it needs.
    shutil.rmtree(base)
    with pytest.raises(OSError, match="keeps only its generator's LoRA adapters"):
        spacy.load(tmp_path / "model")
    with pytest.raises(ValueError, match="save_base = false keeps LoRA adapters only"):
        build_nlp(tiny_lm_path, generator={"save_base": False})
