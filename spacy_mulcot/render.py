"""An HTML page of posts: the image, the text with aspects highlighted in polarity
colours (displaCy's span style), gold beside predicted where both exist, the post's
sentiment, and the chains (collapsible)."""

import base64
import html
import io
from typing import Dict, List, Optional, Sequence

from spacy import displacy
from spacy.tokens import Doc

from .doc_model import ASPECTS_KEY
from .images import ImageError
from .labels import POLARITIES

#: Polarity colours: green, grey, red (colour-blind safe enough with the labels shown).
COLORS = {"POS": "#7fd67f", "NEU": "#d0d0d0", "NEG": "#f08c8c", "": "#ffe58a"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.post { display: flex; gap: 1em; border-bottom: 1px solid #ddd; padding: 1em 0; }
.post img { max-width: 220px; max-height: 220px; border-radius: 4px; }
.post .noimage { width: 220px; color: #a00; font-size: 0.85em; overflow-wrap: anywhere; }
.post .body { flex: 1; }
.row { margin: 0.2em 0; }
.row .tag { display: inline-block; width: 6em; color: #666; font-size: 0.85em; }
.sentiment { font-size: 0.9em; color: #444; }
details { margin: 0.3em 0 0.3em 6em; font-size: 0.9em; }
details pre { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; border-radius: 4px; }
.legend span { padding: 0.1em 0.5em; border-radius: 3px; margin-right: 0.5em; }
"""


def image_data_url(doc: Doc, size: int = 220) -> Optional[str]:
    """The post's image as a small JPEG data URL (None without one); an image that
    cannot be read raises :class:`ImageError`."""
    ref = doc._.image
    if ref is None:
        return None
    image = ref.load()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_html(doc: Doc, problems: Optional[List[str]]) -> str:
    """The card's image, or a line naming why it cannot be read (also added to ``problems``)."""
    try:
        url = image_data_url(doc)
    except ImageError as err:
        if problems is not None:
            problems.append(str(err))
        return f'<div class="noimage">image not readable: {html.escape(str(err))}</div>'
    return f'<img src="{url}" alt="post image">' if url else ""


def spans_html(doc: Doc) -> str:
    """The doc's text with its aspects in polarity colours (displaCy's span style)."""
    if ASPECTS_KEY not in doc.spans:
        return html.escape(doc.text)
    options = {"spans_key": ASPECTS_KEY, "colors": COLORS}
    return displacy.render(doc, style="span", options=options, page=False)


def _sentiment(doc: Doc) -> str:
    if not all(p in doc.cats for p in POLARITIES):
        return ""
    parts = ", ".join(f"{p} {doc.cats[p]:.2f}" for p in POLARITIES)
    return f'<div class="sentiment row"><span class="tag"></span>post: {parts}</div>'


def _chains(doc: Doc, attr: str, who: str) -> str:
    out = []
    for span in doc.spans.get(ASPECTS_KEY, []):
        chain = getattr(span._, attr)
        if chain:
            summary = f"{who} chain for “{html.escape(span.text)}” ({span.label_ or '?'})"
            out.append(f"<details><summary>{summary}</summary><pre>{html.escape(chain)}</pre></details>")
    post = getattr(doc._, attr)
    if post:
        out.append(f"<details><summary>{who} chain for the post</summary><pre>{html.escape(post)}</pre></details>")
    return "".join(out)


def render_page(
    gold: Sequence[Doc],
    predicted: Optional[Sequence[Doc]] = None,
    title: str = "spacy-mulcot",
    problems: Optional[List[str]] = None,
) -> str:
    """One card per post; ``predicted`` (same order as ``gold``) adds a second row.
    ``problems`` (a list) collects ``path: reason`` for each image that cannot be read."""
    if predicted is not None and len(predicted) != len(gold):
        raise ValueError(f"{len(gold)} gold docs but {len(predicted)} predicted")
    legend = "".join(f'<span style="background:{COLORS[p]}">{p}</span>' for p in POLARITIES)
    cards: List[str] = []
    for i, doc in enumerate(gold):
        pred = predicted[i] if predicted is not None else None
        image = _image_html(doc, problems)
        rows = [
            f'<div class="row"><span class="tag">{"gold" if pred is not None else ""}</span>{spans_html(doc)}</div>'
        ]
        rows.append(_sentiment(doc))
        rows.append(_chains(doc, "rationale", "teacher"))
        if pred is not None:
            rows.append(f'<div class="row"><span class="tag">predicted</span>{spans_html(pred)}</div>')
            rows.append(_sentiment(pred))
            rows.append(_chains(pred, "reasoning", "model"))
        cards.append(f'<div class="post">{image}<div class="body">{"".join(rows)}</div></div>')
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<div class="legend">{legend}</div>{"".join(cards)}</body></html>'
    )


def summary(gold: Sequence[Doc], predicted: Optional[Sequence[Doc]]) -> Dict[str, int]:
    counts = {"posts": len(gold), "gold_aspects": sum(len(d.spans.get(ASPECTS_KEY, [])) for d in gold)}
    if predicted is not None:
        counts["predicted_aspects"] = sum(len(d.spans.get(ASPECTS_KEY, [])) for d in predicted)
    return counts
