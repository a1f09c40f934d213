"""Batch prediction over a user's own posts: read them (CSV, JSONL, a folder, a
``.spacy`` file), run a trained pipeline, write one record per post (JSONL) or one
row per aspect (CSV).

A record: ``id``, ``text``, ``image``, ``image_error``, the post's ``sentiment`` and
``sentiment_scores``, and ``aspects`` — each with ``text``, character offsets
``start`` / ``end``, ``polarity``, ``scores``, ``given`` (the input named it) and, on
request, ``reasoning``; the post's chain is ``reasoning``.
"""

import csv
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from spacy.language import Language
from spacy.tokens import Doc

from .atomic import temp_beside
from .doc_model import ASPECTS_KEY
from .errors import NoGeneratorError
from .labels import POLARITIES
from .readers import ReadStats, read_docbin, read_jsonl
from .readers.errors import Window, outside
from .readers.table import ID_KEY, read_csv, read_folder

INPUT_KINDS = ("csv", "jsonl", "folder", "spacy")
OUTPUT_FORMATS = ("jsonl", "csv")

CSV_COLUMNS = (
    ["id", "text", "image", "image_error", "sentiment"]
    + [f"sentiment_{p}" for p in POLARITIES]
    + ["aspect", "aspect_start", "aspect_end", "polarity"]
    + [f"polarity_{p}" for p in POLARITIES]
    + ["aspect_given", "aspect_reasoning", "post_reasoning"]
)


def input_kind(path: Path) -> str:
    """What kind of input ``path`` is, from what it is (a folder) or its suffix."""
    if path.is_dir():
        return "folder"
    kind = {".csv": "csv", ".jsonl": "jsonl", ".spacy": "spacy"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: give a .csv, .jsonl or .spacy file, or a folder of NAME.txt posts")
    return kind


def count_records(path: Path) -> Optional[int]:
    """How many posts ``path`` holds, where a cheap look can tell (JSONL: its non-blank
    lines; a folder: its ``.txt`` files), for a progress bar; else None."""
    kind = input_kind(path)
    if kind == "jsonl":
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if kind == "folder":
        return len(list(path.glob("*.txt"))) or None
    return None


def read_posts(
    path: Path,
    nlp: Language,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
    image_dir: Optional[Path] = None,
    window: Window = None,
) -> Iterator[Doc]:
    """The posts of ``path`` as docs (given aspects kept, unlabelled); bad records raise
    or are skipped and counted in ``stats`` (file and line in ``stats.problems``).
    ``window``: only records ``[first, stop)`` are parsed (see ``ReadStats.positions``)."""
    stats = stats if stats is not None else ReadStats()
    kind = input_kind(path)
    if kind == "csv":
        yield from read_csv(path, nlp, image_dir=image_dir, on_error=on_error, stats=stats, window=window)
    elif kind == "jsonl":
        yield from read_jsonl(path, nlp, image_dir=image_dir, on_error=on_error, stats=stats, window=window)
    elif kind == "folder":
        yield from read_folder(path, nlp, on_error=on_error, stats=stats, window=window)
    else:
        from .readers.corpus import make_example

        for i, doc in enumerate(read_docbin(path, nlp)):
            where = outside(window, i)
            if where:
                if where > 0:
                    break
                continue
            stats.records += 1
            stats.made(i)
            given = ASPECTS_KEY in doc.spans
            post = make_example(doc, given_aspects=given, image_dir=image_dir, rationales=False).predicted
            post.user_data[ID_KEY] = i
            yield post


def record(doc: Doc, given: bool) -> Dict[str, Any]:
    """What the pipeline found for one post, as plain JSON-able values."""
    ref = doc._.image
    cats = {p: round(float(doc.cats.get(p, 0.0)), 5) for p in POLARITIES}
    return {
        "id": doc.user_data.get(ID_KEY),
        "text": doc.text,
        "image": ref.path if ref is not None else None,
        "image_error": doc._.image_error,
        "sentiment": max(cats, key=cats.get) if doc.cats else None,
        "sentiment_scores": cats,
        "aspects": [
            {
                "text": span.text,
                "start": span.start_char,
                "end": span.end_char,
                "polarity": span.label_,
                "scores": {p: round(float(v), 5) for p, v in (span._.sentiment_scores or {}).items()},
                "given": given,
                "reasoning": span._.reasoning,
            }
            for span in doc.spans.get(ASPECTS_KEY, [])
        ],
        "reasoning": doc._.reasoning,
    }


def csv_rows(rec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per aspect (the post's fields repeated); a post without aspects is one row."""
    post = {
        "id": rec["id"],
        "text": rec["text"],
        "image": rec["image"],
        "image_error": rec["image_error"],
        "sentiment": rec["sentiment"],
        "post_reasoning": rec["reasoning"],
        **{f"sentiment_{p}": v for p, v in rec["sentiment_scores"].items()},
    }
    if not rec["aspects"]:
        return [post]
    return [
        {
            **post,
            "aspect": a["text"],
            "aspect_start": a["start"],
            "aspect_end": a["end"],
            "polarity": a["polarity"],
            "aspect_given": a["given"],
            "aspect_reasoning": a["reasoning"],
            **{f"polarity_{p}": v for p, v in a["scores"].items()},
        }
        for a in rec["aspects"]
    ]


class RecordWriter:
    """Writes records as JSONL or CSV as they come, into a temporary file beside
    ``path`` that becomes ``path`` only on :meth:`close` (``commit=True``): an
    interrupted or failed run leaves the previous ``path`` as it was. A context
    manager: commits on success, discards on an exception."""

    def __init__(self, path: Path, fmt: str):
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder: give a file name for the results")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fmt = path, fmt
        self.tmp = temp_beside(path)
        self.file = self.tmp.open("w", encoding="utf-8", newline="")
        self.csv = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writeheader()
        self.posts = self.aspects = 0
        self.closed = False

    def write(self, rec: Dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerows(csv_rows(rec))
        else:
            self.file.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.posts += 1
        self.aspects += len(rec["aspects"])

    def close(self, commit: bool = True) -> None:
        """Finish: the records become ``path`` (``commit``) or are thrown away."""
        if self.closed:
            return
        self.closed = True
        self.file.close()
        if commit:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)


def predict(
    nlp: Language,
    docs: Iterable[Doc],
    writer: RecordWriter,
    *,
    chains: bool = False,
    batch_size: int = 32,
    component: str = "mulcot",
    max_new_tokens: Optional[int] = None,
    progress: bool = True,
    total: Optional[int] = None,
) -> List[str]:
    """Run ``nlp`` over ``docs`` (streamed) and write a record per post; chains only
    on request. Returns the image errors met (one per post whose image was skipped)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if chains:
        require_generator(nlp, component)
    image_errors: List[str] = []
    settings: Dict[str, Any] = {"generate_reasoning": chains}
    if max_new_tokens is not None:
        settings["max_new_tokens"] = max_new_tokens
    # Streamed: nlp.pipe holds one batch at a time, whatever the input's size.
    given: List[bool] = []

    def noted(stream: Iterable[Doc]) -> Iterator[Doc]:
        for doc in stream:
            given.append(ASPECTS_KEY in doc.spans)
            yield doc

    out = nlp.pipe(noted(docs), batch_size=batch_size, component_cfg={component: settings})
    bar = tqdm(out, total=total, desc="predict", unit="post", disable=None if progress else True)
    for i, doc in enumerate(bar):
        if doc._.image_error:
            image_errors.append(doc._.image_error)
        writer.write(record(doc, given[i]))
    return image_errors


def require_generator(nlp: Language, component: str = "mulcot") -> None:
    """Refuse to ask for chains from a pipeline that cannot write them (rather than
    write ``reasoning: null`` for every post)."""
    if component not in nlp.pipe_names:
        raise ValueError(f"the pipeline has no {component!r} component (it has {nlp.pipe_names})")
    if not getattr(nlp.get_pipe(component), "has_generator", False):
        raise NoGeneratorError(pipeline_name(nlp), component)


def pipeline_name(nlp: Language) -> str:
    """How to name a pipeline in a message: its package name, or where it was loaded from."""
    meta = nlp.meta
    path = getattr(nlp, "_path", None)
    if path is not None:
        return str(path)
    return f"{meta.get('lang', 'xx')}_{meta['name']}" if meta.get("name") else "the pipeline"
