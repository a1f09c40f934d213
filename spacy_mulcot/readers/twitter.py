"""Twitter-2015/2017 in the TomBERT ``.tsv`` format.

Each row is ``index, label, image id, tweet with $T$, aspect``; labels are
0 negative, 1 neutral, 2 positive; the text is pre-tokenized. Two views:

* ``aspect`` — one doc per row with its single aspect (MASC);
* ``sentence`` — rows grouped by (image, restored tweet) into one doc per tweet
  with every aspect as a span (MATE / JMASA).
"""

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..doc_model import ASPECTS_KEY, make_doc
from ..labels import TWITTER_LABELS
from .errors import ReadStats, RowError, open_input, safe_path
from .reasoning import ChainIndex

VIEWS = ("aspect", "sentence")
PLACEHOLDER = "$T$"


@dataclass
class TweetRow:
    """One parsed row: tokens with the aspect restored and its token offsets."""

    path: str
    line: int
    label: str
    image_id: str
    words: List[str]
    start: int
    end: int
    aspect: str

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_row(fields: List[str], path, line: int) -> TweetRow:
    if len(fields) != 5:
        raise RowError(path, line, f"expected 5 tab-separated fields, found {len(fields)}")
    _, label, image_id, masked, aspect = fields
    if label.strip() not in ("0", "1", "2"):
        raise RowError(path, line, f"label must be 0, 1 or 2, got {label!r}")
    polarity = TWITTER_LABELS[int(label)]
    if not image_id.strip():
        raise RowError(path, line, "empty image id")
    tokens = masked.split()
    if tokens.count(PLACEHOLDER) != 1:
        raise RowError(path, line, f"the tweet must contain {PLACEHOLDER} exactly once as a token: {masked!r}")
    aspect_words = aspect.split()
    if not aspect_words:
        raise RowError(path, line, "empty aspect")
    start = tokens.index(PLACEHOLDER)
    words = tokens[:start] + aspect_words + tokens[start + 1 :]
    return TweetRow(
        str(path), line, polarity, image_id.strip(), words, start, start + len(aspect_words), " ".join(aspect_words)
    )


def read_rows(path: Union[str, Path], on_error: str = "raise", stats: Optional[ReadStats] = None) -> Iterator[TweetRow]:
    """Parse a TomBERT .tsv file; malformed rows raise (naming file and line) or are counted."""
    path = open_input(path, "Twitter .tsv file", on_error)
    stats = stats if stats is not None else ReadStats()
    with path.open("rb") as f:
        first = f.readline()
        if first.startswith(codecs.BOM_UTF8):  # as written by some editors: not part of the header
            first = first[len(codecs.BOM_UTF8) :]
        header = _decode_line(first, path, 1)
        if not header.lower().startswith("index"):
            raise RowError(path, 1, f"expected the TomBERT header line, got {header.strip()[:60]!r}")
        for line_no, raw in enumerate(f, start=2):
            try:
                line = _decode_line(raw, path, line_no).rstrip("\r\n")
                if not line.strip():
                    continue
                stats.records += 1
                yield parse_row(line.split("\t"), path, line_no)
            except RowError as err:
                stats.failed(err, on_error)


def _decode_line(raw: bytes, path, line_no: int) -> str:
    """One line as UTF-8, or a RowError naming the file, line and offending byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RowError(
            path, line_no, f"not valid UTF-8: byte {raw[err.start]:#04x} at column {err.start + 1}"
        ) from None


def read_twitter(
    path: Union[str, Path],
    vocab: Vocab,
    view: str = "sentence",
    image_dir: Optional[Union[str, Path]] = None,
    chains: Optional[ChainIndex] = None,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
) -> Iterator[Doc]:
    """Docs from a TomBERT .tsv file in the ``aspect`` or ``sentence`` view.

    image_dir: where the images are (default: ``images/`` beside the file).
    chains: teacher chains to attach to the aspect spans (``span._.rationale``).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    path = Path(path)
    image_dir = Path(image_dir) if image_dir is not None else path.parent / "images"
    stats = stats if stats is not None else ReadStats()
    rows = read_rows(path, on_error=on_error, stats=stats)
    if view == "aspect":
        for row in rows:
            try:
                doc = _doc_for(
                    vocab, row.words, safe_path(image_dir, row.image_id, path, row.line), [row], chains, stats
                )
            except RowError as err:
                stats.failed(err, on_error)
                continue
            stats.docs += 1
            yield doc
        return
    groups: Dict[Tuple[str, str], List[TweetRow]] = {}
    for row in rows:
        groups.setdefault((row.image_id, row.text), []).append(row)
    for (image_id, _), group in groups.items():
        try:
            doc = _doc_for(
                vocab, group[0].words, safe_path(image_dir, image_id, path, group[0].line), group, chains, stats
            )
        except RowError as err:
            if len(group) > 1:
                # The tweet is dropped whole: every one of its rows is lost, and counted.
                lines = ", ".join(str(r.line) for r in group)
                err = RowError(
                    err.path, err.line, f"{err.reason}; the tweet's {len(group)} rows (lines {lines}) are dropped"
                )
            stats.failed(err, on_error, count=len(group))
            continue
        stats.docs += 1
        yield doc


def _doc_for(
    vocab: Vocab, words, image_path: Path, rows: List[TweetRow], chains: Optional[ChainIndex], stats: ReadStats
) -> Doc:
    doc = make_doc(vocab, words=words, image=str(image_path))
    kept: Dict[Tuple[int, int], TweetRow] = {}
    for row in rows:
        first = kept.get((row.start, row.end))
        if first is None:
            kept[(row.start, row.end)] = row
        elif first.label != row.label:
            raise RowError(
                row.path,
                row.line,
                f"aspect {row.aspect!r} is labelled {row.label} here but {first.label} on line {first.line}",
            )
        else:
            stats.duplicates += 1  # the same mention listed twice: one span
    spans = [Span(doc, row.start, row.end, label=row.label) for row in kept.values()]
    doc.spans[ASPECTS_KEY] = spans
    if chains is not None:
        # Each span with the row it came from (a duplicate row has no span of its own).
        for span, row in zip(spans, kept.values()):
            chains.attach(span, image_id=row.image_id, aspect=row.aspect, text=row.text)
    return doc
