"""The inference fast paths give what the plain paths give: one-pass extraction
equals classify → decode → classify again, and the transformer's bf16 autocast stays
close to fp32 (and survives loading)."""

import numpy
import spacy

from spacy_mulcot import bio
from spacy_mulcot.data_classes import ModelInput
from spacy_mulcot.doc_model import ASPECTS_KEY
from spacy_mulcot.model import predict_joint
from spacy_mulcot.readers.corpus import make_example

from ..helpers import gold_docs


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - numpy.log(numpy.exp(x).sum(-1, keepdims=True))


def test_one_pass_extraction_equals_two_passes(trained_model_dir, tmp_path):
    nlp = spacy.load(trained_model_dir)
    gold = gold_docs(nlp, tmp_path)
    docs = [make_example(d, given_aspects=i % 2 == 0, rationales=False).predicted for i, d in enumerate(gold)]
    for name, proc in nlp.pipeline[:-1]:
        docs = list(proc.pipe(docs))
    model = nlp.get_pipe("mulcot").model
    given = [ASPECTS_KEY in d.spans for d in docs]
    spans = [[(s.start, s.end) for s in d.spans[ASPECTS_KEY]] if g else [] for d, g in zip(docs, given)]
    first = model.predict(ModelInput(docs, spans))
    two_pass = [s if g else bio.decode(_log_softmax(first.tags[i])) for i, (s, g) in enumerate(zip(spans, given))]
    second = model.predict(ModelInput(docs, two_pass))

    def decode(i, logits):
        return bio.decode(_log_softmax(logits))

    found, one, items, chains = predict_joint(model, docs, [s if g else None for s, g in zip(spans, given)], decode)
    assert items == [] and chains == []  # no chains asked for
    assert found == two_pass and any(found[i] for i, g in enumerate(given) if not g)
    numpy.testing.assert_allclose(one.spans, second.spans, rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(one.docs, second.docs, rtol=1e-4, atol=1e-5)
    for a, b in zip(one.tags, second.tags):
        numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_transformer_bf16_inference_is_close_to_fp32_and_survives_loading(trained_model_dir, tmp_path):
    texts = [d.text for d in gold_docs(spacy.blank("en"), tmp_path)]

    def hidden(dtype):
        nlp = spacy.load(
            trained_model_dir, config={"components": {"transformer": {"model": {"inference_dtype": dtype}}}}
        )
        shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
        docs = list(nlp.pipe(texts))
        states = [d._.trf_data.model_output.last_hidden_state for d in docs]
        return str(getattr(shim, "inference_dtype", "torch.float32")), states, docs

    fp32_shim, fp32, fp32_docs = hidden("float32")
    bf16_shim, bf16, bf16_docs = hidden("bfloat16")
    assert fp32_shim == "torch.float32" and bf16_shim == "torch.bfloat16"
    for a, b in zip(fp32, bf16):
        assert b.dtype == numpy.float32
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        cos = (a * b).sum(-1) / numpy.linalg.norm(a, axis=-1) / numpy.linalg.norm(b, axis=-1)
        assert cos.min() > 0.98
    for a, b in zip(fp32_docs, bf16_docs):
        assert abs(a.cats["POS"] - b.cats["POS"]) < 0.05
