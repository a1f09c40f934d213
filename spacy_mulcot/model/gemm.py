"""Matrix products of thinc's CPU layers through PyTorch.

thinc's ``NumpyOps.gemm`` calls BLIS on one thread; the fast student's CNN text
encoder (spaCy's ``MaxoutWindowEncoder``) is almost all such products. PyTorch's CPU
matmul uses every torch thread, so the same layers run ~3x faster on 2 cores (the
4-block encoder timed alone: 0.85 → 0.27 ms a post, max difference 6e-6; the student
end to end 1.21x with the same aspects and labels, ``bench/gemm_speed.py``; AMD EPYC). Weights, configs and
saved models are unchanged: only the ops object of each layer is swapped.
"""

from typing import Optional

import numpy
import torch
from thinc.api import Model, NumpyOps


class TorchGemmOps(NumpyOps):
    """``NumpyOps`` whose ``gemm`` runs as a PyTorch matmul (float32, torch's threads)."""

    name = "torch_gemm"

    def gemm(
        self,
        x: numpy.ndarray,
        y: numpy.ndarray,
        out: Optional[numpy.ndarray] = None,
        trans1: bool = False,
        trans2: bool = False,
    ) -> numpy.ndarray:
        if x.dtype != numpy.float32 or y.dtype != numpy.float32 or x.ndim != 2 or y.ndim != 2:
            return super().gemm(x, y, out=out, trans1=trans1, trans2=trans2)
        a = torch.from_numpy(numpy.ascontiguousarray(x))
        b = torch.from_numpy(numpy.ascontiguousarray(y))
        with torch.no_grad():
            result = torch.matmul(a.T if trans1 else a, b.T if trans2 else b).numpy()
        if out is None:
            return result
        out[...] = result
        return out


_OPS = TorchGemmOps()


def use_torch_gemm(model: Model) -> int:
    """Give every layer of ``model`` that runs on plain ``NumpyOps`` the torch-backed
    ops (GPU ops and other backends are left alone); returns how many were swapped."""
    swapped = 0
    for node in model.walk():
        if type(node.ops) is NumpyOps:
            node.ops = _OPS
            swapped += 1
    return swapped
