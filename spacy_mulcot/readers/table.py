"""Users' own posts as a CSV table or a folder of text files and images.

CSV: one post per row, a header naming the columns; ``text`` is required, ``image``
(a path relative to ``image_dir``, by default the CSV's folder), ``aspects`` (a JSON
list as in the JSONL format, or aspect strings separated by ``|``), ``label`` and
``id`` are optional. Folder: every ``NAME.txt`` is a post, with the image
``NAME.jpg`` / ``.jpeg`` / ``.png`` / ``.webp`` / ``.gif`` / ``.bmp`` beside it if there is one;
a folder holding a single ``.csv`` and no ``.txt`` is read as that CSV.
"""

import csv
import io
import json
from pathlib import Path
from typing import Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..doc_model import AspectNotFoundError, make_doc
from .errors import ReadStats, RowError, check_on_error, open_input, safe_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
#: ``doc.user_data`` key of the record's id (the ``id`` column, the file name, or the line).
ID_KEY = "mulcot_id"


def read_csv(
    path: Union[str, Path],
    nlp: Language,
    image_dir: Optional[Union[str, Path]] = None,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
    text_column: str = "text",
    image_column: str = "image",
    aspects_column: str = "aspects",
) -> Iterator[Doc]:
    """Docs from a CSV file; a malformed row raises (naming file and line) or is
    skipped and counted."""
    path = open_input(path, "CSV file", on_error)
    image_dir = Path(image_dir) if image_dir is not None else path.parent
    stats = stats if stats is not None else ReadStats()
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise RowError(path, line, f"not valid UTF-8 (byte {err.object[err.start]:#04x})") from None
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if not reader.fieldnames or text_column not in reader.fieldnames:
        raise RowError(path, 1, f"the header must name a {text_column!r} column, got {reader.fieldnames}")
    line = 1
    for row in reader:
        start, line = line + 1, reader.line_num
        stats.records += 1
        try:
            if None in row:
                raise RowError(path, start, f"more fields than the header's {len(reader.fieldnames)}")
            doc = _row_to_doc(nlp, row, path, start, image_dir, text_column, image_column, aspects_column)
        except RowError as err:
            stats.failed(err, on_error)
            continue
        stats.docs += 1
        yield doc


def _row_to_doc(nlp, row, path, line, image_dir, text_column, image_column, aspects_column) -> Doc:
    text = (row.get(text_column) or "").strip()
    if not text:
        raise RowError(path, line, f"empty {text_column!r}")
    image = (row.get(image_column) or "").strip() or None
    if image is not None:
        image = str(safe_path(image_dir, image, path, line))
    aspects = _aspects(row.get(aspects_column), path, line)
    try:
        doc = make_doc(nlp, text, image, aspects, label=(row.get("label") or "").strip() or None)
    except (AspectNotFoundError, ValueError, TypeError) as err:
        raise RowError(path, line, str(err)) from None
    doc.user_data[ID_KEY] = (row.get("id") or "").strip() or line
    return doc


def _aspects(cell: Optional[str], path, line):
    """A JSON list (as in the JSONL format) or ``a|b|c``; empty: none given."""
    cell = (cell or "").strip()
    if not cell:
        return None
    if cell.startswith("["):
        try:
            aspects = json.loads(cell)
        except json.JSONDecodeError as err:
            raise RowError(path, line, f"aspects: not a valid JSON list ({err.msg})") from None
        if not isinstance(aspects, list):
            raise RowError(path, line, "aspects must be a JSON list")
        return aspects
    return [a.strip() for a in cell.split("|") if a.strip()]


def read_folder(
    folder: Union[str, Path], nlp: Language, on_error: str = "raise", stats: Optional[ReadStats] = None, **csv_options
) -> Iterator[Doc]:
    """Docs from a folder of ``NAME.txt`` posts (and ``NAME.<image>`` pictures), or
    from the single CSV in it."""
    check_on_error(on_error)
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"Not a folder: {folder}")
    stats = stats if stats is not None else ReadStats()
    texts = sorted(folder.glob("*.txt"))
    tables = sorted(folder.glob("*.csv"))
    if not texts:
        if len(tables) == 1:
            yield from read_csv(tables[0], nlp, on_error=on_error, stats=stats, **csv_options)
            return
        raise FileNotFoundError(f"{folder} holds no NAME.txt posts (and not exactly one .csv)")
    for path in texts:
        stats.records += 1
        try:
            try:
                text = path.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError as err:
                raise RowError(path, 1, f"not valid UTF-8 (byte {err.object[err.start]:#04x})", "file") from None
            if not text:
                raise RowError(path, 1, "empty post", "file")
        except RowError as err:
            stats.failed(err, on_error)
            continue
        image = next((path.with_suffix(s) for s in IMAGE_SUFFIXES if path.with_suffix(s).exists()), None)
        doc = make_doc(nlp, text, str(image) if image else None)
        doc.user_data[ID_KEY] = path.stem
        stats.docs += 1
        yield doc
