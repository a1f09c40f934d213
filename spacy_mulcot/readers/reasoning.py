"""MulCoT-RD reasoning JSON: teacher chains matched to aspect spans.

The files are lists of ``{text, label, aspect, image_id, id, image_path, cot}``;
a chain matches a ``.tsv`` row by (image file, aspect, restored text).
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple, Union

from spacy.tokens import Span

from ..doc_model import set_rationale

Key = Tuple[str, str, str]


def _norm(text: str) -> str:
    return " ".join(str(text).split())


class ChainIndex:
    """Chains by (image, aspect, text); counts what was attached and what was not."""

    def __init__(self, path: Union[str, Path]):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Reasoning file not found: {path}")
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of chains, got {type(records).__name__}")
        self.path = path
        self._chains: Dict[Key, List[dict]] = {}
        for i, rec in enumerate(records):
            missing = [k for k in ("text", "aspect", "cot") if k not in rec]
            if missing or not (rec.get("image_path") or rec.get("image_id")):
                raise ValueError(f"{path}: record {i} lacks {missing or ['image_path']}")
            image = Path(str(rec.get("image_path") or f"{rec['image_id']}.jpg")).name
            key = (image, _norm(rec["aspect"]), _norm(rec["text"]))
            self._chains.setdefault(key, []).append(rec)
        self._used: Dict[Key, int] = {}
        self.total = len(records)
        self.attached = 0
        self.unmatched_spans = 0

    def attach(self, span: Span, image_id: str, aspect: str, text: str) -> bool:
        """Set ``span._.rationale`` (and the chain's parsed label) if a chain matches."""
        key = (Path(image_id).name, _norm(aspect), _norm(text))
        queue = self._chains.get(key)
        if not queue:
            self.unmatched_spans += 1
            return False
        # Identical rows (same tweet, image and aspect) take their chains in turn.
        used = self._used.get(key, 0)
        self._used[key] = used + 1
        set_rationale(span, queue[used % len(queue)]["cot"])
        self.attached += 1
        return True
