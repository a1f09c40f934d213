"""Encoding a reasoning chain into a few vectors the text can attend to.

A chain is split into its sections (``Text_analysis``, ``Image_analysis``, …); each
section becomes one unit, embedded with a frozen sentence encoder (mean pooled,
all-MiniLM-L6-v2 by default). Sentence embeddings are what that model was trained
for, and five vectors per chain keep the cross-attention cheap.
"""

from collections import OrderedDict
from typing import List, Optional, Sequence

import numpy

from .chains import SECTIONS, parse_chain
from .hub import resolve_model_path


def chain_units(chain: str, max_units: int = 8) -> List[str]:
    """The sections of a chain as ``"Name: text"`` strings; an unsectioned chain is one unit."""
    parsed = parse_chain(chain)
    units = [f"{name.replace('_', ' ')}: {parsed.sections[name]}" for name in SECTIONS if parsed.sections.get(name)]
    if not units and chain.strip():
        units = [chain.strip()]
    return units[:max_units]


class RationaleEncoder:
    """Frozen sentence encoder for rationale units, with an LRU cache over unit texts
    (training sees the same chains every epoch)."""

    def __init__(
        self, name: str = "all-MiniLM-L6-v2", max_units: int = 8, max_length: int = 256, cache_size: int = 50000
    ):
        self.name = name
        self.max_units = max_units
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: "OrderedDict[str, numpy.ndarray]" = OrderedDict()
        self._model = None
        self._tokenizer = None
        self._width: Optional[int] = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(self.name)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()
        self._width = int(self._model.config.hidden_size)

    @property
    def width(self) -> int:
        self._load()
        return self._width  # type: ignore[return-value]

    def encode(self, chains: Sequence[Sequence[str]]) -> List[numpy.ndarray]:
        """For each doc, a list of chains → one (units × width) float32 array."""
        per_doc = [[u for chain in doc_chains for u in chain_units(chain, self.max_units)] for doc_chains in chains]
        missing = list(OrderedDict.fromkeys(u for units in per_doc for u in units if u not in self._cache))
        if missing:
            for text, vec in zip(missing, self._embed(missing)):
                self._cache[text] = vec
        out = []
        for units in per_doc:
            for u in units:
                self._cache.move_to_end(u)
            out.append(
                numpy.stack([self._cache[u] for u in units]) if units else numpy.zeros((0, self.width), dtype="float32")
            )
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _embed(self, texts: List[str], batch_size: int = 64) -> numpy.ndarray:
        import torch

        self._load()
        vecs = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = self._tokenizer(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                states = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                vecs.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return numpy.concatenate(vecs).astype("float32")
