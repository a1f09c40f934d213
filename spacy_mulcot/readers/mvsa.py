"""MVSA-Single / MVSA-Multiple in the common JSON format (post-level sentiment).

``[{"id": ..., "text": ..., "emotion_label": 0|1|2}, ...]`` with 0 positive,
1 neutral, 2 negative; the image of post ``id`` is ``{image_dir}/{id}.jpg``. Posts are
read without images when there is no image folder (``images=None``, the default) or
when asked (``images=False``): the copy of MVSA-Single most people can get is text only.
"""

import json
from pathlib import Path
from typing import Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..doc_model import make_doc
from ..labels import MVSA_LABELS, one_hot
from .errors import ReadStats, RowError, open_input, safe_path


def read_mvsa(
    path: Union[str, Path],
    nlp: Language,
    image_dir: Optional[Union[str, Path]] = None,
    on_error: str = "raise",
    stats: Optional[ReadStats] = None,
    images: Optional[bool] = None,
) -> Iterator[Doc]:
    """Docs with ``doc.cats`` set from ``emotion_label`` and, with ``images`` (None:
    when the image folder exists), the post's image."""
    path = open_input(path, "MVSA file", on_error)
    image_dir = Path(image_dir) if image_dir is not None else path.parent / "images"
    if images is None:
        images = image_dir.is_dir()
    elif images and not image_dir.is_dir():
        raise FileNotFoundError(f"MVSA image folder not found: {image_dir} (images=False reads the text only)")
    stats = stats if stats is not None else ReadStats()
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RowError(path, err.lineno, f"not valid JSON: {err.msg}") from None
    if not isinstance(records, list):
        raise RowError(path, 1, "expected a JSON list of posts")
    for i, rec in enumerate(records):
        stats.records += 1
        try:
            if not isinstance(rec, dict) or not {"id", "text", "emotion_label"} <= set(rec):
                raise RowError(path, i, "each post needs 'id', 'text' and 'emotion_label'", "record")
            if not isinstance(rec["text"], str):
                raise RowError(path, i, f"'text' must be a string, got {type(rec['text']).__name__}", "record")
            if not rec["text"].strip():
                raise RowError(path, i, "empty 'text' (the other readers refuse it too)", "record")
            label = MVSA_LABELS.get(_label_code(rec["emotion_label"]))
            if label is None:
                raise RowError(path, i, f"emotion_label must be 0, 1 or 2, got {rec['emotion_label']!r}", "record")
            post_id = rec["id"]
            if isinstance(post_id, bool) or not isinstance(post_id, (int, str)) or not str(post_id).strip():
                raise RowError(path, i, f"'id' must be a number or a name, got {post_id!r}", "record")
            image = safe_path(image_dir, f"{post_id}.jpg", path, i, "record") if images else None
        except RowError as err:
            stats.failed(err, on_error)
            continue
        doc = make_doc(nlp, rec["text"], image=str(image) if image is not None else None)
        doc.cats = one_hot(label)
        stats.docs += 1
        yield doc


def _label_code(value) -> Optional[int]:
    """0, 1 or 2 given as an integer or its digits; anything else (1.7, True, "+1") is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value.strip())
    return None
