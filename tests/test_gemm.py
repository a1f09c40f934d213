"""thinc's CPU matrix products through torch: the same numbers as BLIS, every
transpose, and a CNN student whose layers all use it, trained and predicted alike."""

import numpy
import pytest
import spacy
from thinc.api import NumpyOps

from spacy_mulcot.data_classes import ModelInput
from spacy_mulcot.doc_model import ASPECTS_KEY
from spacy_mulcot.model.gemm import TorchGemmOps, use_torch_gemm
from spacy_mulcot.readers.corpus import make_example

from .components.test_generation_settings import SMALL_TOK2VEC
from .helpers import gold_docs, train


@pytest.mark.parametrize("trans1", [False, True])
@pytest.mark.parametrize("trans2", [False, True])
def test_gemm_equals_numpy_ops_for_every_transpose(trans1, trans2):
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(7, 5) if not trans1 else (5, 7)).astype("float32")
    y = rng.normal(size=(5, 3) if not trans2 else (3, 5)).astype("float32")
    want = NumpyOps().gemm(x, y, trans1=trans1, trans2=trans2)
    got = TorchGemmOps().gemm(x, y, trans1=trans1, trans2=trans2)
    assert got.shape == (7, 3) and got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    out = numpy.zeros((7, 3), dtype="float32")
    assert TorchGemmOps().gemm(x, y, out=out, trans1=trans1, trans2=trans2) is out
    numpy.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_other_inputs_get_thincs_own_answer():
    x = numpy.arange(6, dtype="float64").reshape(2, 3)
    with pytest.raises(ValueError, match="float32"):  # as NumpyOps says it
        TorchGemmOps().gemm(x, x, trans2=True)


def test_a_cnn_student_runs_every_thinc_layer_on_torch_gemm():
    nlp = spacy.blank("en")
    model = {"use_rationale": False, "rationale_encoder": None, "use_image": False, "tok2vec": SMALL_TOK2VEC}
    nlp.add_pipe("mulcot", config={"model": model})
    embed = nlp.get_pipe("mulcot").model.layers[0]
    kinds = {type(node.ops) for node in embed.walk()}
    assert kinds == {TorchGemmOps}
    assert use_torch_gemm(embed) == 0  # nothing left to swap


def test_a_cnn_student_trains_on_it_and_predicts_as_on_blis(tmp_path):
    """A few training steps on torch gemm lower the loss; the trained model's scores on
    BLIS (thinc's own ops) are the same up to rounding."""
    nlp = spacy.blank("en")
    model = {"use_rationale": False, "rationale_encoder": None, "use_image": False, "tok2vec": SMALL_TOK2VEC}
    nlp.add_pipe("mulcot", config={"model": model})
    examples = [make_example(d) for d in gold_docs(nlp, tmp_path)]
    losses = train(nlp, examples, steps=15, learn_rate=2e-3)
    assert losses[-1] < 0.5 * losses[0]
    docs = [e.predicted for e in examples]
    spans = [[(s.start, s.end) for s in e.reference.spans[ASPECTS_KEY]] for e in examples]
    embed = nlp.get_pipe("mulcot").model.layers[0]
    on_torch = nlp.get_pipe("mulcot").model.predict(ModelInput(docs, spans))
    for node in embed.walk():
        node.ops = NumpyOps()
    on_blis = nlp.get_pipe("mulcot").model.predict(ModelInput(docs, spans))
    numpy.testing.assert_allclose(on_torch.spans, on_blis.spans, rtol=1e-4, atol=1e-4)
    for a, b in zip(on_torch.tags, on_blis.tags):
        numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
