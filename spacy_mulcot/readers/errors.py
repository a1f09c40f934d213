"""Errors and counters shared by the dataset readers."""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..errors import ON_ERROR, check_on_error  # noqa: F401  (re-exported for the readers)

#: The longest post text a user-data reader accepts (a bound, not a tweet's length:
#: a text this long is a file read wrongly, e.g. rows swallowed by a stray quote).
MAX_TEXT_CHARS = 20_000


class RowError(ValueError):
    """A malformed record, named by file and line."""

    def __init__(self, path, line: int, message: str, unit: str = "line"):
        self.path, self.line, self.reason = str(path), line, message
        super().__init__(f"{path}, {unit} {line}: {message}")


@dataclass
class ReadStats:
    """What a reader did: records read, docs made, malformed records skipped."""

    records: int = 0
    docs: int = 0
    skipped: int = 0
    duplicates: int = 0  # records repeating one already read (merged, not skipped)
    problems: List[str] = field(default_factory=list)
    #: With ``track_positions()``: the record index (0-based, in the file's order) of
    #: each doc made, so a later reader can be given a window of records to read.
    positions: Optional[List[int]] = None

    def track_positions(self) -> "ReadStats":
        self.positions = []
        return self

    def made(self, index: int) -> None:
        """A doc was made from record ``index``."""
        self.docs += 1
        if self.positions is not None:
            self.positions.append(index)

    def skip(self, err: RowError, count: int = 1) -> None:
        self.skipped += count
        self.problems.append(str(err))

    def failed(self, err: RowError, on_error: str, count: int = 1) -> None:
        """Raise ``err`` or count it as skipped (``count`` records lost), as ``on_error`` says."""
        if on_error == "raise":
            raise err
        self.skip(err, count)


def open_input(path: Union[str, Path], what: str, on_error: str) -> Path:
    """Check a reader's arguments: the policy is known and the input file exists."""
    check_on_error(on_error)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def safe_path(base: Union[str, Path], name: str, path, line: int, unit: str = "line") -> Path:
    """``base / name`` for a file named in the data, refusing names that leave ``base``
    (absolute paths, ``..``): data must not point a reader at arbitrary files."""
    base = Path(base)
    candidate = base / str(name)
    if Path(str(name)).is_absolute() or not _inside(candidate, base):
        raise RowError(path, line, f"the file name {name!r} leaves the folder {base}", unit)
    return candidate


def _inside(candidate: Path, base: Path) -> bool:
    """Lexically inside (``..`` resolved, symlinks not followed: a linked image folder is fine)."""
    root = Path(os.path.normpath(os.path.abspath(base)))
    target = Path(os.path.normpath(os.path.abspath(candidate)))
    return target != root and root in target.parents


#: Records ``[first, stop)`` (0-based, in the file's order) a reader reads; the others
#: are passed over before they are parsed (a worker reads only its shard's posts).
Window = Optional[Tuple[int, int]]


def outside(window: Window, index: int) -> int:
    """-1: record ``index`` comes before ``window`` (pass over it), 1: after it (stop),
    0: read it."""
    if window is None:
        return 0
    return -1 if index < window[0] else (1 if index >= window[1] else 0)
