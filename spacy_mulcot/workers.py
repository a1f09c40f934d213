"""What a worker process forked by ``nlp.pipe(docs, n_process=N)`` needs.

spaCy forks its workers (Linux's default start method), and PyTorch's OpenMP thread
pool does not survive ``fork``: a child that runs a parallel region on the parent's
pool can hang forever. Each child gets its own ``threads_per_worker`` threads instead
(1 by default: N workers on N cores), as PyTorch's own DataLoader workers do. (Docs
cross the process boundary as ``doc.to_bytes()``; in-memory images travel with them,
see :mod:`spacy_mulcot.images`.)
"""

import os
from typing import Optional

_installed = False
#: torch threads in a forked worker; None leaves torch's setting as it is.
threads_per_worker: Optional[int] = 1


def _after_fork_in_child() -> None:
    if threads_per_worker:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        torch.set_num_threads(threads_per_worker)


def install() -> None:
    """Register the fork hook once per process (idempotent)."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _installed = True
