"""The generic JSONL format, for users' own data. One post per line:

    {"text": "Loving the new #iPhone , battery is awful though",
     "image": "images/123.jpg",
     "aspects": [{"start": 16, "end": 23, "polarity": "positive"},
                 {"text": "battery", "polarity": "NEG", "rationale": "..."}],
     "label": "NEU",
     "reasoning": "..."}

Only ``text`` is required. ``image`` is a path relative to ``image_dir`` (by default the JSONL
file's folder); a path that leaves that folder (absolute, ``..``) is refused. An aspect gives
character offsets (``start``/``end``), token offsets (``token_start``/``token_end``)
or its ``text`` (first unused occurrence), with an optional ``polarity`` and a
chain (``rationale`` or ``reasoning``). ``label`` is the post's sentiment
(``doc.cats``); ``reasoning``/``rationale`` is the post's reference chain
(``doc._.rationale``).
"""

import codecs
import json
from pathlib import Path
from typing import Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..doc_model import AspectNotFoundError, make_doc
from .errors import MAX_TEXT_CHARS, ReadStats, RowError, Window, open_input, outside, safe_path


def read_jsonl(
    path: Union[str, Path],
    nlp: Language,
    image_dir: Optional[Union[str, Path]] = None,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
    max_text_chars: int = MAX_TEXT_CHARS,
    window: Window = None,
) -> Iterator[Doc]:
    """Docs from a JSONL file, a line decoded at a time: a bad line (not UTF-8, not
    JSON, a bad field, aspects that overlap) raises naming file and line, or is skipped
    and counted. A UTF-8 BOM before the first record is accepted."""
    # A record holds more than its text (aspects, chains): bound the line, generously.
    max_line_chars = 10 * max_text_chars
    path = open_input(path, "JSONL file", on_error)
    image_dir = Path(image_dir) if image_dir is not None else path.parent
    stats = stats if stats is not None else ReadStats()
    index = -1
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            index += 1
            where = outside(window, index)
            if where:
                if where > 0:
                    break
                continue
            stats.records += 1
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise RowError(path, line_no, f"not valid UTF-8 (byte {raw[err.start]:#04x})") from None
                if len(line) > max_line_chars:
                    raise RowError(path, line_no, f"the record is over {max_line_chars} characters")
                doc = _record_to_doc(nlp, line, image_dir, path, line_no, max_text_chars)
            except RowError as err:
                stats.failed(err, on_error)
                continue
            stats.made(index)
            yield doc


def _record_to_doc(
    nlp: Language, line: str, image_dir: Path, path: Path, line_no: int, max_text_chars: int = MAX_TEXT_CHARS
) -> Doc:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise RowError(path, line_no, f"not valid JSON: {err.msg}") from None
    if not isinstance(rec, dict):
        raise RowError(path, line_no, "each line must be a JSON object")
    text = rec.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RowError(path, line_no, "'text' must be a non-empty string")
    if len(text) > max_text_chars:
        raise RowError(path, line_no, f"the text is over {max_text_chars} characters (max_text_chars)")
    image = rec.get("image")
    if image is not None:
        if not isinstance(image, str):
            raise RowError(path, line_no, "'image' must be a path string")
        image = str(safe_path(image_dir, image, path, line_no))
    aspects = rec.get("aspects")
    if aspects is not None:
        if not isinstance(aspects, list):
            raise RowError(path, line_no, "'aspects' must be a list")
        aspects = [_aspect(a) for a in aspects]
    chain = rec.get("rationale", rec.get("reasoning"))
    try:
        doc = make_doc(nlp, text, image, aspects, label=rec.get("label"), rationale=chain)
    except (AspectNotFoundError, ValueError, TypeError) as err:
        raise RowError(path, line_no, str(err)) from None
    doc.user_data["mulcot_id"] = rec["id"] if isinstance(rec.get("id"), (str, int)) else line_no
    return doc


def _aspect(spec):
    if isinstance(spec, dict) and "reasoning" in spec and "rationale" not in spec:
        spec = dict(spec, rationale=spec["reasoning"])
    return spec
