"""Compute types chosen by what the hardware runs natively, in one place.

bf16 is fast only where oneDNN has native kernels for it (AVX512-BF16 or AMX on x86,
or a CUDA device that supports it). On an AVX2-only CPU torch falls back to a
reference GEMM and a bf16 matrix product runs 7-12x *slower* than fp32 (measured on an
AMD EPYC without AVX-512: 5 vs 32 GFLOP/s forward). So every setting that picks a
compute type takes "auto" by default, and an explicit "bfloat16" where it is emulated
warns once per setting, naming the slowdown.
"""

import functools
import logging
import os
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional, Set

import torch

logger = logging.getLogger("spacy_mulcot")

#: Accepted names → canonical names ("auto" resolves per machine at run time).
DTYPE_NAMES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}

_forced: Optional[bool] = None
_warned: Set[str] = set()


class SlowDtypeWarning(UserWarning):
    """An explicit bf16 setting on a CPU that only emulates bf16."""


@functools.lru_cache(maxsize=1)
def _probe_cpu_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
        return False


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 natively (oneDNN's own check: AVX512-BF16 / AMX).
    :func:`force_fast_bf16` overrides it (tests), and so does the environment variable
    ``MULCOT_FAST_BF16=0|1`` (to reproduce another machine's choice, e.g. with
    ``ONEDNN_MAX_CPU_ISA=AVX2``, which makes oneDNN run like an AVX2-only CPU)."""
    if _forced is not None:
        return _forced
    env = os.environ.get("MULCOT_FAST_BF16", "").strip()
    if env in ("0", "1"):
        return env == "1"
    return _probe_cpu_bf16()


def has_fast_bf16(device: "str | torch.device" = "cpu") -> bool:
    """As :func:`cpu_has_fast_bf16`, for any device (CUDA: ``torch.cuda.is_bf16_supported``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return True  # mps / xpu: their own kernels; the user chose the device


@contextmanager
def force_fast_bf16(value: Optional[bool]) -> Iterator[None]:
    """Pretend the CPU does (True) or does not (False) run bf16 natively; None: ask it.
    Resets the once-per-setting warnings on entry and exit."""
    global _forced
    before = _forced
    _forced = value
    _warned.clear()
    try:
        yield
    finally:
        _forced = before
        _warned.clear()


def canonical_dtype(name: Optional[str], *, allow_none: bool = True) -> Optional[str]:
    """The canonical name of ``name`` ("bf16" → "bfloat16"); refuses unknown names."""
    if name is None:
        if allow_none:
            return None
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got None")
    key = str(name).lower()
    if key not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {name!r}")
    return DTYPE_NAMES[key]


def resolve_dtype(name: Optional[str], *, setting: str, device: "str | torch.device" = "cpu") -> str:
    """The compute type to use for ``name`` on ``device``: "auto" → "bfloat16" where it
    runs natively, else "float32"; None → "float32". An explicit "bfloat16" (or
    "float16") on a CPU that emulates it is kept, with one warning per ``setting``."""
    canonical = canonical_dtype(name)
    if canonical is None:
        return "float32"
    if canonical == "auto":
        return "bfloat16" if has_fast_bf16(device) else "float32"
    if canonical in ("bfloat16", "float16") and torch.device(device).type == "cpu" and not cpu_has_fast_bf16():
        warn_slow(setting, canonical)
    return canonical


def torch_dtype(name: Optional[str], *, setting: str, device: "str | torch.device" = "cpu") -> torch.dtype:
    """:func:`resolve_dtype` as a ``torch.dtype``."""
    return getattr(torch, resolve_dtype(name, setting=setting, device=device))


def warn_slow(setting: str, dtype: str = "bfloat16") -> None:
    """Warn once per setting that ``dtype`` is emulated on this CPU."""
    if setting in _warned:
        return
    _warned.add(setting)
    warnings.warn(
        f'{setting} = "{dtype}" on a CPU without native {dtype} (no AVX512-BF16 or AMX): torch emulates it '
        'here and it runs about 7-12x slower than float32. Use "auto" (bf16 only where the CPU runs it) '
        'or "float32".',
        SlowDtypeWarning,
        stacklevel=3,
    )


def describe_cpu() -> dict:
    """What a speed figure needs to say about the CPU it came from: model name, the
    bf16-relevant flags, oneDNN's verdict and the threads torch uses."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    return {
        "model": model,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": bool({"amx_bf16", "amx_tile"} & flags),
        "fast_bf16": _probe_cpu_bf16(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def cpu_label() -> str:
    """One line for tables: "AMD EPYC (AVX512-BF16, no AMX)" or "... (AVX2 only)"."""
    d = describe_cpu()
    if d["avx512_bf16"] or d["amx"]:
        kind = "AVX512-BF16" + (", AMX" if d["amx"] else ", no AMX")
    elif d["avx512"]:
        kind = "AVX-512, no bf16"
    elif d["avx2"]:
        kind = "AVX2 only"
    else:
        kind = "no AVX2"
    return f"{d['model']} ({kind}; oneDNN bf16 {'native' if d['fast_bf16'] else 'emulated'})"
