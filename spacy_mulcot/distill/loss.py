"""MulCoT-RD's distillation loss, written once: ``(1 − λ)·CE(hard) + λ·T²·KL``.

Used for the aspect logits (``mulcot``'s span loss) and for the chain tokens (the
generator's loss over an assistant's stored top-k logits).
"""

from typing import Tuple

import numpy
import torch


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over rows
    (the T² keeps gradient sizes comparable across temperatures, as in Hinton et al.)."""
    log_q = torch.log_softmax(student.float() / temperature, dim=-1)
    p = torch.softmax(teacher.float() / temperature, dim=-1)
    kl = (p * (torch.log(p.clamp(min=1e-12)) - log_q)).sum(-1)
    return kl.mean() * temperature**2


def mix(hard, soft, weight: float):
    """``(1 − λ)·hard + λ·soft``."""
    return (1.0 - weight) * hard + weight * soft


def distill_rows(
    logits: numpy.ndarray,
    rows,
    teacher: numpy.ndarray,
    hard_loss: float,
    d_hard: numpy.ndarray,
    weight: float,
    temperature: float,
) -> Tuple[float, numpy.ndarray]:
    """The mixed loss and its gradient w.r.t. ``logits`` (numpy, as thinc heads need),
    with the KL over ``logits[rows]`` against ``teacher`` (one row each)."""
    student = torch.tensor(numpy.asarray(logits, dtype="float32")[rows], requires_grad=True)
    kl = kd_kl(student, torch.as_tensor(numpy.asarray(teacher, dtype="float32")), temperature)
    kl.backward()
    d_soft = numpy.zeros_like(d_hard)
    d_soft[rows] = student.grad.numpy()
    return float(mix(hard_loss, kl.item(), weight)), mix(d_hard, d_soft, weight)
