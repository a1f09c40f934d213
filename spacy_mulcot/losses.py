"""Every loss the project trains with, in one place.

- classification: cross-entropy of BIO tags, aspect polarities (class-weighted) and
  post sentiment (soft targets), with gradients w.r.t. the logits (numpy, as the
  thinc heads take them);
- MulCoT-RD's distillation, written once: ``(1 − λ)·CE(hard) + λ·T²·KL(teacher_T ‖ student_T)``,
  for the aspect logits (:func:`distill_rows`) and for the chain tokens against an
  assistant's stored top-k logits (:func:`chain_loss`).

λ and T are fixed per model (:class:`Distillation`), given once when the component is
built, not per batch.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from torch import nn


@dataclass(frozen=True)
class Distillation:
    """λ (weight of the KL term, 0: hard labels only) and T (softmax temperature)."""

    weight: float = 0.0
    temperature: float = 1.0

    def __post_init__(self):
        if not 0.0 <= float(self.weight) <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.weight}")
        if not float(self.temperature) > 0.0:
            raise ValueError(f"distill_temperature must be positive, got {self.temperature}")

    @property
    def active(self) -> bool:
        return self.weight > 0.0


# ---- classification (numpy) ----------------------------------------------------------


def log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    x = numpy.asarray(x, dtype="float32")
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - numpy.log(numpy.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: numpy.ndarray) -> numpy.ndarray:
    return numpy.exp(log_softmax(x))


def cross_entropy(
    logits: numpy.ndarray, targets: numpy.ndarray, weights: Optional[numpy.ndarray] = None
) -> Tuple[float, numpy.ndarray]:
    """Summed (per-row ``weights``-weighted) cross-entropy of class indices and its
    gradient w.r.t. the logits."""
    log_p = log_softmax(logits)
    rows = numpy.arange(len(targets))
    weights = numpy.ones((len(targets),), dtype="float32") if weights is None else weights
    loss = float(-(weights * log_p[rows, targets]).sum())
    grad = numpy.exp(log_p)
    grad[rows, targets] -= 1.0
    return loss, grad * weights[:, None]


def soft_cross_entropy(logits: numpy.ndarray, targets: numpy.ndarray) -> Tuple[float, numpy.ndarray]:
    """Mean cross-entropy against target distributions (rows of ``targets`` sum to 1)
    and its gradient w.r.t. the logits."""
    n = max(len(targets), 1)
    log_p = log_softmax(logits)
    return float(-(targets * log_p).sum() / n), (numpy.exp(log_p) - targets) / n


# ---- distillation ---------------------------------------------------------------------


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
    distill: Distillation,
) -> Tuple[float, numpy.ndarray]:
    """Span KD: the mixed loss and its gradient w.r.t. ``logits`` (numpy, as thinc heads
    need), with the KL over ``logits[rows]`` against ``teacher`` (one row each)."""
    student = torch.tensor(numpy.asarray(logits, dtype="float32")[rows], requires_grad=True)
    kl = kd_kl(student, torch.as_tensor(numpy.asarray(teacher, dtype="float32")), distill.temperature)
    kl.backward()
    d_soft = numpy.zeros_like(d_hard)
    d_soft[rows] = student.grad.numpy()
    return float(mix(hard_loss, kl.item(), distill.weight)), mix(d_hard, d_soft, distill.weight)


def chain_loss(
    logits: torch.Tensor,
    positions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    soft: Optional[Sequence[Optional[dict]]],
    distill: Distillation,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Chain KD: next-token CE over the chain tokens (``logits[i, positions[i]]``
    predict ``targets[i]``), mixed with ``T²·KL`` against the assistant's top-k logits
    (``soft[i] = {"ids": (L, k), "logits": (L, k)}``) over those k tokens where given.

    Returns the loss and its parts (``ce``, and ``kl`` when a soft target took part)."""
    ce_rows = torch.cat([logits[i, pos] for i, pos in enumerate(positions)]).float()
    ce = nn.functional.cross_entropy(ce_rows, torch.cat(list(targets)))
    if not distill.active or not soft or all(s is None for s in soft):
        return ce, {"ce": ce}
    students: List[torch.Tensor] = []
    teachers: List[torch.Tensor] = []
    for i, target in enumerate(soft):
        if target is None:
            continue
        ids = torch.as_tensor(target["ids"], device=logits.device).long()
        if ids.numel() and int(ids.max()) >= logits.shape[-1]:
            raise ValueError(
                f"soft target token id {int(ids.max())} is outside this LM's vocabulary ({logits.shape[-1]}): "
                "assistant and student must share a tokenizer"
            )
        n = min(len(ids), len(positions[i]))
        # The student's logits for the assistant's top-k tokens at each chain position.
        students.append(logits[i, positions[i][:n]].float().gather(-1, ids[:n]))
        teachers.append(torch.as_tensor(target["logits"], device=logits.device).float()[:n])
    kl = kd_kl(torch.cat(students), torch.cat(teachers), distill.temperature)
    return mix(ce, kl, distill.weight), {"ce": ce, "kl": kl}
