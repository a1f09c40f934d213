"""Distillation (MulCoT-RD): an assistant's soft targets and augmented chains, and the
loss a student learns them with.

- :mod:`.loss` — ``(1 − λ)·CE + λ·T²·KL``, for aspect logits and chain tokens;
- :mod:`.soft_targets` — an assistant's aspect logits and top-k chain-token logits,
  stored with the training docs;
- :mod:`.augment` — the assistant writes chains for aspects without one and keeps
  those that predict the gold label.
"""

from .loss import distill_rows, kd_kl, mix

__all__ = ["distill_rows", "kd_kl", "mix"]
