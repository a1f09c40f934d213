"""Distillation (MulCoT-RD): an assistant's soft targets and augmented chains. The
loss a student learns them with, ``(1 − λ)·CE + λ·T²·KL``, is in
:mod:`spacy_mulcot.losses` with every other loss.

- :mod:`.soft_targets` — an assistant's aspect logits and top-k chain-token logits,
  stored with the training docs;
- :mod:`.augment` — the assistant writes chains for aspects without one and keeps
  those that predict the gold label.
"""
