"""Compute types by CPU capability: "auto" is bf16 only where the CPU runs it
natively, an explicit bf16 where it is emulated warns once; every setting that picks a
type follows (generator training and decoding, the decoder's prepacking, the
transformer, the image encoder, the local teacher). The capability is forced both ways."""

import warnings

import pytest
import torch

from spacy_mulcot.compute import (
    SlowDtypeWarning,
    cpu_has_fast_bf16,
    cpu_label,
    describe_cpu,
    force_fast_bf16,
    resolve_dtype,
)


@pytest.mark.parametrize("fast,expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_follows_the_capability(fast, expected):
    with force_fast_bf16(fast):
        assert cpu_has_fast_bf16() is fast
        assert resolve_dtype("auto", setting="x") == expected
        assert resolve_dtype(None, setting="x") == "float32"
        assert resolve_dtype("fp32", setting="x") == "float32"


def test_explicit_bf16_on_an_emulating_cpu_warns_once_per_setting():
    with force_fast_bf16(False):
        with pytest.warns(SlowDtypeWarning, match="7-12x slower") as record:
            assert resolve_dtype("bf16", setting="generator train_dtype") == "bfloat16"
            resolve_dtype("bfloat16", setting="generator train_dtype")
            resolve_dtype("bfloat16", setting="generation.dtype")
        assert len(record) == 2
        assert "generator train_dtype" in str(record[0].message) and "generation.dtype" in str(record[1].message)
    with force_fast_bf16(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("bfloat16", setting="generator train_dtype") == "bfloat16"


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="float64"):
        resolve_dtype("float64", setting="x")


def test_cpu_description_names_the_kind():
    d = describe_cpu()
    assert {"model", "avx2", "avx512_bf16", "amx", "fast_bf16"} <= set(d)
    assert "oneDNN bf16" in cpu_label()


@pytest.fixture
def tiny_generator(tiny_lm_path):
    from spacy_mulcot.reasoning import reasoning_generator_v1

    return reasoning_generator_v1(str(tiny_lm_path))


@pytest.mark.parametrize("fast", [True, False])
def test_generator_trains_and_decodes_in_the_capable_type(tiny_generator, fast):
    gen = tiny_generator
    assert gen.train_dtype == "auto"  # the default of mulcot.ReasoningGenerator.v1
    with force_fast_bf16(fast), warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never warns
        with gen._autocast(torch.device("cpu")):
            assert torch.is_autocast_enabled("cpu") is fast
            if fast:
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        lm = gen.lm_for_inference("auto")
        assert lm.dtype == (torch.bfloat16 if fast else torch.float32)
        assert (lm is gen.lm) is (not fast)
        decoder = gen.decoder_for(lm)
        assert decoder.packed is (fast and decoder.dtype == torch.bfloat16 and _can_pack())


def _can_pack() -> bool:
    from spacy_mulcot.reasoning.decoding import _can_pack as can

    return can(torch.bfloat16, torch.device("cpu"))


def test_generator_with_explicit_bf16_warns_on_an_emulating_cpu(tiny_generator):
    tiny_generator.train_dtype = "bfloat16"
    with force_fast_bf16(False):
        with pytest.warns(SlowDtypeWarning, match="generator train_dtype"):
            with tiny_generator._autocast(torch.device("cpu")):
                assert torch.is_autocast_enabled("cpu")  # kept: the user asked for it


def test_bad_train_dtype_is_refused_at_build(tiny_lm_path):
    from spacy_mulcot.reasoning import reasoning_generator_v1

    with pytest.raises(ValueError, match="train_dtype"):
        reasoning_generator_v1(str(tiny_lm_path), train_dtype="int8")


@pytest.mark.parametrize("fast", [True, False])
def test_image_encoder_and_transformer_follow_the_capability(fast):
    from spacy_mulcot.encoders import efficientnet_lite0_v1
    from spacy_mulcot.model.transformer import transformer_model_v1

    with force_fast_bf16(fast):
        encoder = efficientnet_lite0_v1()
        assert encoder.dtype == (torch.bfloat16 if fast else torch.float32)
        from spacy_transformers.span_getters import configure_strided_spans

        model = transformer_model_v1("all-MiniLM-L6-v2", get_spans=configure_strided_spans(128, 96))
        shim = model.layers[0].shims[0]
        assert (getattr(shim, "inference_dtype", None) == torch.bfloat16) is fast
        # The autocast shim is built as such by the architecture (no class swap on an HFShim).
        from spacy_mulcot.model.autocast_shim import CpuAutocastHFShim

        assert isinstance(shim, CpuAutocastHFShim) is fast


@pytest.mark.parametrize("fast,expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_local_teacher_dtype_follows_the_capability(fast, expected):
    from spacy_mulcot.teacher.backends.hf_local import _dtype

    with force_fast_bf16(fast):
        assert _dtype("auto", "cpu") == expected


@pytest.mark.parametrize("fast", [True, False])
def test_transformer_trains_under_autocast_only_where_bf16_is_native(fast, tmp_path):
    """The reference config's transformer settings: train_dtype "auto" (bf16 autocast
    where native) and frozen word-piece embeddings; the loss still falls."""
    import spacy
    import torch

    from spacy_mulcot.readers.corpus import make_example

    from .helpers import TRANSFORMER, gold_docs, train

    with force_fast_bf16(fast):
        nlp = spacy.blank("en")
        config = {"model": {**TRANSFORMER["model"], "train_dtype": "auto", "freeze_embeddings": True}}
        nlp.add_pipe("transformer", config=config)
        nlp.add_pipe("mulcot_image")
        nlp.add_pipe("mulcot", config={"model": {"hidden_width": 32, "attention_heads": 2}})
        examples = [make_example(d) for d in gold_docs(nlp, tmp_path)]
        seen = []

        def spy(module, args, out):
            if type(module).__name__ == "BertLayer" and torch.is_grad_enabled():  # inside training forwards
                seen.append(torch.is_autocast_enabled("cpu"))

        handle = torch.nn.modules.module.register_module_forward_hook(spy)
        try:
            history = train(nlp, examples, steps=12)
        finally:
            handle.remove()
    from transformers import AutoModel

    from spacy_mulcot.hub import resolve_model_path

    pretrained = AutoModel.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    hf = nlp.get_pipe("transformer").model.layers[0].shims[0]._model
    assert history[-1] < 0.7 * history[0], history
    assert seen and all(s is fast for s in seen)
    assert torch.equal(hf.get_input_embeddings().weight, pretrained.get_input_embeddings().weight)  # frozen
    query = pretrained.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(hf.encoder.layer[0].attention.self.query.weight, query)  # trained
