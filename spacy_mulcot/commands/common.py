"""What every command shares: one-line errors (``--debug`` for the traceback), atomic
corpus writing and read reports."""

import functools
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, NoReturn, Optional

import spacy
import typer
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from ..atomic import atomic_path
from ..errors import NoGeneratorError
from ..images import ImageError
from ..readers import ReadStats, RowError

SPLITS = ("train", "dev", "test")

#: Set by the app's callback on every invocation (the process may run several).
STATE = {"debug": False}

#: What a user's input or setup can cause (a missing or malformed file, a bad image, a
#: pipeline that cannot do what was asked): one line, not a traceback.
USER_ERRORS = (RowError, ImageError, NoGeneratorError, OSError, ValueError)


def debug() -> bool:
    return STATE["debug"] or os.environ.get("MULCOT_DEBUG", "").lower() in ("1", "true", "yes")


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and the exit code; inside an ``except`` block, ``--debug`` /
    ``MULCOT_DEBUG=1`` re-raise instead, so the traceback shows."""
    if debug() and sys.exc_info()[0] is not None:
        raise
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code) from None


def one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def left_as_was(output: Path) -> str:
    return f"{output} was left as it was" if output.exists() else f"{output} was not written"


def user_errors(func: Callable) -> Callable:
    """A command whose user errors (``USER_ERRORS``) end in ``error: …`` and exit 1;
    Ctrl-C in ``interrupted`` and exit 130."""

    @functools.wraps(func)
    def command(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            fail(one_line(err))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return command


def load_or_exit(load: Callable, model: str):
    """``load()`` a pipeline; a missing or broken one is a one-line error."""
    try:
        return load()
    except (OSError, ValueError, ImportError, KeyError) as e:
        fail(f"could not load the pipeline {model!r}: {one_line(e)}")


def write_docs(docs: Iterable[Doc], output: Path, desc: str) -> int:
    """Stream ``docs`` into a DocBin at ``output`` (written atomically); their count."""
    output.parent.mkdir(parents=True, exist_ok=True)
    db = DocBin(attrs=["ORTH"], store_user_data=True)
    n = 0
    for doc in tqdm(docs, desc=desc, unit="doc", leave=False, disable=None):
        db.add(doc)
        n += 1
    with atomic_path(output) as tmp:
        db.to_disk(tmp)
    return n


def report_read(stats: ReadStats, output: Path, extra: Optional[dict] = None) -> None:
    """One line on what a reader made of its input, and the first problems it skipped."""
    line = f"{output}: {stats.docs} docs from {stats.records} records"
    if stats.skipped:
        line += f", {stats.skipped} malformed records skipped"
    if stats.duplicates:
        line += f", {stats.duplicates} duplicate records merged"
    if extra:
        line += ", " + ", ".join(f"{k} {v}" for k, v in extra.items())
    typer.echo(line)
    for problem in stats.problems[:10]:
        typer.echo(f"  skipped: {problem}", err=True)


def tokenizer(model: str):
    """A blank pipeline for a language code, else a pipeline's tokenizer (its slow
    components excluded)."""
    if len(model) <= 3:
        return spacy.blank(model)
    return spacy.load(model, exclude=["tagger", "parser", "ner", "lemmatizer", "attribute_ruler", "senter"])
