"""Users' own posts as a CSV table or a folder of text files and images.

CSV: one post per row, a header naming the columns; ``text`` is required, ``image``
(a path relative to ``image_dir``, by default the CSV's folder), ``aspects`` (a JSON
list as in the JSONL format, or aspect strings separated by ``|``), ``label`` and
``id`` are optional. Folder: every ``NAME.txt`` is a post, with the image
``NAME.jpg`` / ``.jpeg`` / ``.png`` / ``.webp`` / ``.gif`` / ``.bmp`` beside it if there is one;
a folder holding a single ``.csv`` and no ``.txt`` is read as that CSV.
"""

import codecs
import csv
import json
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..doc_model import AspectNotFoundError, make_doc
from .errors import MAX_TEXT_CHARS, ReadStats, RowError, Window, check_on_error, open_input, outside, safe_path

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
    max_text_chars: int = MAX_TEXT_CHARS,
    window: Window = None,
) -> Iterator[Doc]:
    """Docs from a CSV file; a malformed row raises (naming file and line) or is
    skipped and counted. Quoting is read strictly: a quote left open (which would
    swallow the rest of the file into one post), a field that holds whole rows, or a
    text over ``max_text_chars`` is a bad row, and reading goes on at its next line."""
    path = open_input(path, "CSV file", on_error)
    image_dir = Path(image_dir) if image_dir is not None else path.parent
    stats = stats if stats is not None else ReadStats()
    lines = decoded_lines(path, on_error, stats)
    header = next((i for i, line in enumerate(lines) if line is not None and line.strip()), None)
    fieldnames = next(csv.reader([lines[header]])) if header is not None else []
    fieldnames = [name.strip() for name in fieldnames]
    if text_column not in fieldnames:
        raise RowError(path, (header or 0) + 1, f"the header must name a {text_column!r} column, got {fieldnames}")
    rows = csv_records(lines, header + 1, path, len(fieldnames), fieldnames.index(text_column))
    for index, (line, fields) in enumerate(rows):
        where = outside(window, index)
        if where:
            if where > 0:
                break
            continue
        stats.records += 1
        try:
            if isinstance(fields, RowError):
                raise fields
            if len(fields) > len(fieldnames):
                raise RowError(path, line, f"more fields than the header's {len(fieldnames)}")
            row = dict(zip(fieldnames, fields))
            if len(row.get(text_column) or "") > max_text_chars:
                raise RowError(path, line, f"the text is over {max_text_chars} characters (max_text_chars)")
            doc = _row_to_doc(nlp, row, path, line, image_dir, text_column, image_column, aspects_column)
        except RowError as err:
            stats.failed(err, on_error)
            continue
        stats.made(index)
        yield doc


def decoded_lines(path: Path, on_error: str, stats: ReadStats) -> List[Optional[str]]:
    """The file's physical lines (ends kept), each decoded on its own: a line that is
    not UTF-8 is named (raise) or counted and left out (``None``); a BOM is dropped."""
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    lines: List[Optional[str]] = []
    for i, chunk in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as err:
            stats.records += 1
            stats.failed(RowError(path, i, f"not valid UTF-8 (byte {chunk[err.start]:#04x})"), on_error)
            lines.append(None)
    return lines


def csv_records(
    lines: List[Optional[str]], first: int, path: Path, width: int, text_index: int
) -> Iterator[Tuple[int, Union[List[str], RowError]]]:
    """``(line, fields)`` for each row from the 0-based line ``first`` on, or ``(line,
    RowError)`` for a row whose quoting is broken; after a bad row, reading starts
    again at the line after the one it began on, so one stray quote costs one row."""
    pos = first
    while pos < len(lines):
        chunk = ["\n" if line is None else line for line in lines[pos:]]
        reader = csv.reader(chunk, strict=True)
        while True:
            before = reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                start = pos + before + 1
                if "end of data" in str(err):
                    why = "a quote is opened and never closed: the field would run to the end of the file"
                else:
                    why = f"broken quoting ({err}): the field's quotes do not pair up"
                yield start, RowError(path, start, why)
                pos = start  # the next row starts on the line after the bad one
                break
            start, end = pos + before + 1, pos + reader.line_num
            if not fields:
                continue  # a blank line
            if end > start and _holds_rows(fields, width, text_index):
                yield (
                    start,
                    RowError(
                        path,
                        start,
                        f"a quoted field runs over lines {start}-{end} and holds whole rows: a quote is probably missing",
                    ),
                )
                pos = start
                break
            yield start, fields


def _holds_rows(fields: List[str], width: int, text_index: int) -> bool:
    """Whether a multi-line field holds two or more lines that each read as a full row
    of the table (as many fields as the header, a text): rows swallowed by a quote."""
    for value in fields:
        if "\n" not in value:
            continue
        rows = 0
        for line in value.splitlines()[1:]:
            parsed = next(csv.reader([line]), [])
            if len(parsed) == width and parsed[text_index].strip():
                rows += 1
        if rows >= 2:
            return True
    return False


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
    folder: Union[str, Path],
    nlp: Language,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
    window: Window = None,
    **csv_options,
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
            yield from read_csv(tables[0], nlp, on_error=on_error, stats=stats, window=window, **csv_options)
            return
        raise FileNotFoundError(f"{folder} holds no NAME.txt posts (and not exactly one .csv)")
    for index, path in enumerate(texts):
        where = outside(window, index)
        if where:
            if where > 0:
                break
            continue
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
        stats.made(index)
        yield doc
