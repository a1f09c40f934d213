"""Assistant → student pieces: exporting the generator, a student with fewer layers
initialised from it, stored soft targets, the distillation loss, and rationale
augmentation. A tiny assistant (tiny random Llama + the real encoders) is trained
here on two posts."""

import json

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_mulcot import bio
from spacy_mulcot.components.mulcot_loss import distill_spans, distill_tags
from spacy_mulcot.losses import Distillation, cross_entropy
from spacy_mulcot.model import generator_of, net_shim
from spacy_mulcot.readers.corpus import make_example

from ..helpers import CHAINS, cli, fresh, read, train
from ..helpers import build_reasoning_nlp as build_nlp
from ..helpers import reasoning_gold_docs as gold_docs


@pytest.fixture(scope="module")
def assistant(tiny_lm_path, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("assistant")
    nlp = build_nlp(tiny_lm_path)
    gold = gold_docs(nlp, tmp)
    train(nlp, [make_example(d, rationales=False) for d in gold], steps=80, learn_rate=3e-3)
    nlp.to_disk(tmp / "model")
    db = DocBin(store_user_data=True)
    for doc in gold:
        db.add(doc)
    db.to_disk(tmp / "train.spacy")
    return tmp


def test_student_starts_from_the_exported_generator_with_fewer_layers(assistant, tmp_path):
    cli("export-generator", assistant / "model", tmp_path / "lm")
    from transformers import AutoModelForCausalLM

    from spacy_mulcot.reasoning import reasoning_generator_v1

    full = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    trained = generator_of(spacy.load(assistant / "model").get_pipe("mulcot").model).lm
    assert torch.equal(full.model.layers[1].mlp.up_proj.weight, trained.model.layers[1].mlp.up_proj.weight)
    student = reasoning_generator_v1(str(tmp_path / "lm"), n_layers=1, train_dtype=None)
    assert len(student.lm.model.layers) == 1 and student.lm.config.num_hidden_layers == 1
    assert torch.equal(student.lm.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight)
    # the truncated model still generates with its KV cache
    prompt = student.tokenizer("hello", return_tensors="pt")
    out = student.lm.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 4
    with pytest.raises(ValueError, match="n_layers"):
        reasoning_generator_v1(str(tmp_path / "lm"), n_layers=5)


def test_soft_targets_are_stored_with_the_training_docs(assistant, tmp_path):
    out = tmp_path / "soft.spacy"
    cli("soft-targets", assistant / "model", assistant / "train.spacy", out, "--top-k", "4")
    nlp = spacy.load(assistant / "model")
    tokenizer = generator_of(nlp.get_pipe("mulcot").model).tokenizer
    docs = read(out)
    predicted = list(
        nlp.pipe(
            fresh(nlp, read(assistant / "train.spacy"), given=True),
            component_cfg={"mulcot": {"generate_reasoning": False}},
        )
    )
    for doc, pred in zip(docs, predicted):
        for span, pspan in zip(doc.spans["aspects"], pred.spans["aspects"]):
            logits = numpy.asarray(span._.soft_labels)
            assert logits.shape == (3,)
            # the stored logits are the assistant's: same decision as the pipeline
            assert ["POS", "NEU", "NEG"][int(logits.argmax())] == pspan.label_
            topk = span._.chain_topk
            n_tokens = len(tokenizer(span._.rationale, add_special_tokens=False)["input_ids"]) + 1  # + EOS
            assert numpy.asarray(topk["ids"]).shape == (n_tokens, 4) == numpy.asarray(topk["logits"]).shape
            # the overfit assistant puts the chain's own next token first
            chain_ids = tokenizer(span._.rationale, add_special_tokens=False)["input_ids"]
            assert numpy.mean([row[0] == t for row, t in zip(topk["ids"], chain_ids)]) > 0.9
    assert docs[0]._.chain_topk is not None  # the post-level chain too
    # the BIO tag logits, one row per token; the assistant fitted these posts: the tags
    # its logits pick are the gold aspects' (B on the first token, I inside, O elsewhere)
    for doc in docs:
        tags = numpy.asarray(doc._.tag_soft_labels)
        assert tags.shape == (len(doc), 3)
        gold = bio.encode(len(doc), [(s.start, s.end) for s in doc.spans["aspects"]])
        assert numpy.mean(tags.argmax(axis=1) == gold) > 0.8
    cli("soft-targets", assistant / "model", assistant / "train.spacy", tmp_path / "no_tags.spacy", "--no-tags")
    assert all(d._.tag_soft_labels is None for d in read(tmp_path / "no_tags.spacy"))


def test_distilled_student_trains_with_the_mixed_loss(assistant, tiny_lm_path, tmp_path):  # noqa: F811
    cli("soft-targets", assistant / "model", assistant / "train.spacy", tmp_path / "soft.spacy", "--top-k", "4")
    student = build_nlp(tiny_lm_path, distill_weight=0.5, distill_temperature=2.0)
    docs = read(tmp_path / "soft.spacy")
    examples = [make_example(d, rationales=False) for d in docs]
    reasoning = []
    history = train(
        student, examples, steps=40, learn_rate=3e-3, on_step=lambda l: reasoning.append(l["mulcot_reasoning"])
    )
    assert history[-1] < 0.3 * history[0], history[::5]
    assert reasoning[-1] < 0.3 * reasoning[0], reasoning[::5]
    # λ and T were given to the model once, when the component was built
    pipe = student.get_pipe("mulcot")
    assert net_shim(pipe.model).net.distillation == Distillation(0.5, 2.0) == pipe.distillation
    # the span part of the loss is (1 - λ)·CE + λ·T²·KL and its gradient is exact
    golds = [pipe._gold(eg) for eg in examples]
    logits = numpy.random.RandomState(0).randn(2, 3).astype("float32")
    hard = numpy.zeros_like(logits)
    loss, grad = distill_spans(examples, golds, pipe.spans_key, logits, 0.0, hard, pipe.distillation)
    eps = 1e-3
    for r in range(2):
        for c in range(3):
            bumped = logits.copy()
            bumped[r, c] += eps
            up, _ = distill_spans(examples, golds, pipe.spans_key, bumped, 0.0, hard, pipe.distillation)
            assert (up - loss) / eps == pytest.approx(grad[r, c], abs=2e-3)
    # the tag part likewise, per token against doc._.tag_soft_labels
    eg = examples[0]
    n = len(eg.predicted)
    tag_logits = numpy.random.RandomState(1).randn(n, 3).astype("float32")
    target = bio.encode(n, [(s, e) for s, e, _ in golds[0][0]])

    def tag_loss(x):
        hard_loss, d_hard = cross_entropy(x, target)
        return distill_tags(eg, x, hard_loss, d_hard, pipe.distillation)

    loss, grad = tag_loss(tag_logits)
    hard_only, _ = cross_entropy(tag_logits, target)
    assert loss != pytest.approx(hard_only)  # the teacher's tags count
    for r in range(n):
        for c in range(3):
            bumped = tag_logits.copy()
            bumped[r, c] += eps
            assert (tag_loss(bumped)[0] - loss) / eps == pytest.approx(grad[r, c], abs=1e-2)  # float32 sums
    plain = make_example(spacy.blank("en")("no teacher here"), rationales=False)
    hard_loss, d_hard = cross_entropy(tag_logits[:3], bio.encode(3, []))
    assert distill_tags(plain, tag_logits[:3], hard_loss, d_hard, pipe.distillation)[0] == hard_loss
    with pytest.raises(ValueError, match="distill_weight"):
        build_nlp(tiny_lm_path, distill_weight=1.5)


def test_augment_adds_matching_assistant_chains(assistant, tmp_path):
    docs = read(assistant / "train.spacy")
    for doc in docs:
        for span in doc.spans["aspects"]:
            span._.rationale = None
    bare = tmp_path / "bare.spacy"
    db = DocBin(store_user_data=True)
    for doc in docs:
        db.add(doc)
    db.to_disk(bare)
    out = tmp_path / "augmented.spacy"
    cli("augment", assistant / "model", bare, out, "--temperature", "0", "--attempts", "1", "--max-new-tokens", "40")
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["aspects"] == 2 and report["kept"] + report["unmatched"] == 2
    kept = [s for d in read(out) for s in d.spans["aspects"] if s._.rationale]
    assert len(kept) == report["kept"] >= 1
    for span in kept:
        assert span._.rationale == CHAINS[span.text] and span._.rationale_label == span.label_
    # A second pass over the saved corpus (its augment log read back from a DocBin):
    # before, `'tuple' object has no attribute 'append'`.
    again = read(out)
    cleared = next(d for d in again if d.user_data.get("mulcot_augment"))
    for span in cleared.spans["aspects"]:
        span._.rationale = None
    DocBin(docs=again, store_user_data=True).to_disk(tmp_path / "again.spacy")
    cli("augment", assistant / "model", tmp_path / "again.spacy", tmp_path / "twice.spacy", "--temperature", "0",
        "--attempts", "1", "--max-new-tokens", "40")  # fmt: skip
    log = next(d for d in read(tmp_path / "twice.spacy") if d.text == cleared.text).user_data["mulcot_augment"]
    assert len(log) > len(cleared.user_data["mulcot_augment"])


def test_docbin_round_trip_gives_lists_back_as_lists(tmp_path):
    from spacy.tokens import Span

    from spacy_mulcot.readers import read_docbin

    nlp = spacy.blank("en")
    doc = nlp("Loving the new Tesla")
    doc.user_data["log"] = [{"span": 0, "steps": [1, 2]}]
    doc.spans["aspects"] = [Span(doc, 3, 4, label="POS")]
    doc.spans["aspects"][0]._.soft_labels = [0.5, 0.25, 0.25]
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "d.spacy")
    assert isinstance(read(tmp_path / "d.spacy")[0].user_data["log"], tuple)  # spaCy's own reading
    (back,) = read_docbin(tmp_path / "d.spacy", nlp)
    assert back.user_data["log"] == [{"span": 0, "steps": [1, 2]}]
    assert back.spans["aspects"][0]._.soft_labels == [0.5, 0.25, 0.25]


def test_augment_sampling_is_seeded_without_touching_the_callers_rngs():
    import random

    from spacy_mulcot.distill.augment import _seeded

    random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), torch.rand(1).item())
    random.seed(5)
    torch.manual_seed(5)
    with _seeded(0):
        first = torch.rand(3)
    assert (random.random(), torch.rand(1).item()) == expected  # before: reseeded to the attempt number
    with _seeded(0):
        assert torch.equal(torch.rand(3), first)
