"""Atomic outputs: every file the project writes appears whole or not at all.

A writer writes to a temporary file beside its target (same folder, so the final
``os.replace`` is a rename on one file system) and renames it at the end; if the
writer fails or is interrupted (an exception, Ctrl-C), the temporary file is removed
and the previous content of the target, if any, is left as it was.
"""

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Union

PathLike = Union[str, Path]


def temp_beside(target: PathLike) -> Path:
    """A temporary path in ``target``'s folder, unique to this process."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to; on success it is
    renamed to ``target``, on any failure it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(target: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing, atomically (see the module docstring)."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes a whole file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(target) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


@contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill with ``target``'s content; on success it takes
    ``target``'s place (an existing ``target`` is replaced), on failure it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def write_text(target: PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(target, "w", encoding=encoding) as f:
        f.write(text)


def write_json(target: PathLike, data: Any, indent: int = 2) -> None:
    """Indented JSON (and a final newline) at ``target``, atomically."""
    write_text(target, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (through links too); a path that does
    not exist yet is compared by its resolved name."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
