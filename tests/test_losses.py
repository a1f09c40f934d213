"""The one loss module: classification CE, span KD and chain KD; λ = 1 gives the KL
term alone, λ = 0 the cross-entropy alone; gradients are exact; λ and T are refused
outside their range and given to the model once."""

import numpy
import pytest
import torch

from spacy_mulcot.losses import (
    Distillation,
    chain_loss,
    cross_entropy,
    distill_rows,
    kd_kl,
    soft_cross_entropy,
)


def _chain_batch(seed=0, vocab=11, k=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 7, vocab, generator=g, requires_grad=True)
    positions = [torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2, 3, 4])]
    targets = [torch.tensor([4, 5, 6]), torch.tensor([1, 2, 3, 9, 10])]
    soft = [
        {
            "ids": torch.randint(0, vocab, (3, k), generator=g).tolist(),
            "logits": torch.randn(3, k, generator=g).tolist(),
        },
        None,  # a chain without the assistant's targets: CE only
    ]
    return logits, positions, targets, soft


def _kl_alone(logits, positions, soft, temperature):
    ids = torch.tensor(soft[0]["ids"])
    student = logits[0, positions[0]].gather(-1, ids)
    return kd_kl(student, torch.tensor(soft[0]["logits"]), temperature)


def test_lambda_one_is_the_kl_term_and_lambda_zero_the_cross_entropy():
    logits, positions, targets, soft = _chain_batch()
    ce = torch.nn.functional.cross_entropy(
        torch.cat([logits[i, p] for i, p in enumerate(positions)]), torch.cat(targets)
    )
    kl = _kl_alone(logits, positions, soft, 2.0)
    only_kl, parts = chain_loss(logits, positions, targets, soft, Distillation(1.0, 2.0))
    assert torch.allclose(only_kl, kl) and torch.allclose(parts["kl"], kl)
    only_ce, parts = chain_loss(logits, positions, targets, soft, Distillation(0.0, 2.0))
    assert torch.allclose(only_ce, ce) and "kl" not in parts
    half, _ = chain_loss(logits, positions, targets, soft, Distillation(0.5, 2.0))
    assert torch.allclose(half, 0.5 * ce + 0.5 * kl)
    assert not torch.allclose(ce, kl)  # the two terms differ, so the checks above can fail
    # no soft targets at all: CE whatever λ
    plain, _ = chain_loss(logits, positions, targets, [None, None], Distillation(1.0, 2.0))
    assert torch.allclose(plain, ce)


def test_temperature_scales_the_kl_as_t_squared():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 1.0, 0.5]])
    assert kd_kl(s, s.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)
    manual = (torch.softmax(t / 3, -1) * (torch.log_softmax(t / 3, -1) - torch.log_softmax(s / 3, -1))).sum() * 9
    assert kd_kl(s, t, 3.0).item() == pytest.approx(manual.item(), rel=1e-5)


def test_chain_kd_refuses_a_token_outside_the_vocabulary():
    logits, positions, targets, soft = _chain_batch()
    soft[0]["ids"][0][0] = 50
    with pytest.raises(ValueError, match="vocabulary"):
        chain_loss(logits, positions, targets, soft, Distillation(0.5, 1.0))


def _numeric_grad(fn, x, eps=1e-3):
    grad = numpy.zeros_like(x)
    for idx in numpy.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (fn(up) - fn(down)) / (2 * eps)
    return grad


def test_classification_gradients_are_exact():
    rng = numpy.random.RandomState(0)
    logits = rng.randn(4, 3).astype("float64")
    targets = numpy.array([0, 2, 1, 2])
    weights = numpy.array([1.0, 0.5, 2.0, 1.0], dtype="float32")
    _, grad = cross_entropy(logits, targets, weights)
    numeric = _numeric_grad(lambda x: cross_entropy(x, targets, weights)[0], logits)
    assert numpy.allclose(grad, numeric, atol=2e-3)
    soft = numpy.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    _, grad = soft_cross_entropy(logits, soft)
    numeric = _numeric_grad(lambda x: soft_cross_entropy(x, soft)[0], logits)
    assert numpy.allclose(grad, numeric, atol=2e-3)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_span_kd_mixes_and_differentiates(weight):
    rng = numpy.random.RandomState(1)
    logits = rng.randn(3, 3).astype("float32")
    teacher = rng.randn(2, 3).astype("float32")
    rows = [0, 2]
    targets = numpy.array([0, 1, 2])
    distill = Distillation(weight, 2.0)

    def total(x):
        hard, d_hard = cross_entropy(x, targets)
        return distill_rows(x, rows, teacher, hard, d_hard, distill)

    loss, grad = total(logits)
    hard = cross_entropy(logits, targets)[0]
    kl = kd_kl(torch.tensor(logits[rows]), torch.tensor(teacher), 2.0).item()
    assert loss == pytest.approx((1 - weight) * hard + weight * kl, rel=1e-5)
    numeric = _numeric_grad(lambda x: total(x.astype("float32"))[0], logits.astype("float64"))
    assert numpy.allclose(grad, numeric, atol=5e-3)


@pytest.mark.parametrize("weight,temperature,match", [(1.5, 2.0, "distill_weight"), (0.5, 0.0, "distill_temperature")])
def test_bad_lambda_or_temperature_is_refused(weight, temperature, match):
    with pytest.raises(ValueError, match=match):
        Distillation(weight, temperature)
