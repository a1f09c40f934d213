"""The typed boundary between spaCy and PyTorch: what the ``mulcot`` model takes in,
what its network reads, and what comes back.

spaCy side: :class:`ModelInput` (docs, their aspect spans, the reasoning items to
learn or write). PyTorch side: :class:`NetBatch` (padded arrays/tensors) and
:class:`ReasoningBatch` (one row per chain). Out: :class:`JointScores` (logits, or
their gradients going back) and, at inference, :class:`ClassifierOutput`.
"""

from dataclasses import dataclass, field, fields, replace
from typing import Any, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from thinc.types import Floats2d

#: Token offsets ``(start, end)`` of a doc's aspects.
SpanList = List[Tuple[int, int]]


@dataclass
class ReasoningItem:
    """One chain to learn (``chain`` set) or to write (``chain`` None).

    doc: index of the doc in the batch.
    span: index of the aspect among the doc's spans; None for the post itself.
    soft: an assistant's top-k token logits along ``chain`` (``span._.chain_topk``),
        for distillation.
    label: the decision a ``label_in_prompt`` generator explains when the chain names
        none (at inference: the classifier's; in training the chain's own Prediction
        comes first).
    """

    doc: int
    span: Optional[int] = None
    chain: Optional[str] = None
    soft: Optional[dict] = None
    label: Optional[str] = None

    @property
    def is_post(self) -> bool:
        return self.span is None


@dataclass
class ModelInput:
    """What ``mulcot.JointSentimentModel.v1`` takes: docs, the aspect spans to
    classify per doc, and (training) the chains to learn with the distillation
    settings of the chain loss."""

    docs: List[Doc]
    spans: List[SpanList]
    items: List[ReasoningItem] = field(default_factory=list)

    def __post_init__(self):
        if len(self.docs) != len(self.spans):
            raise ValueError(f"{len(self.docs)} docs but {len(self.spans)} span lists")
        for item in self.items:
            if not 0 <= item.doc < len(self.docs):
                raise ValueError(f"reasoning item for doc {item.doc} of a batch of {len(self.docs)}")
            if item.span is not None and not 0 <= item.span < len(self.spans[item.doc]):
                raise ValueError(
                    f"reasoning item for span {item.span} of doc {item.doc}, which has {len(self.spans[item.doc])} spans"
                )


@dataclass
class NetBatch:
    """The network's non-differentiable inputs (the token vectors travel beside it,
    since thinc returns gradients only for tensors it can see).

    token_mask (B, T); image (B, R, Di) with image_mask (B, R) — regions plus the
    pooled vector as the last key; rationale (B, K, Dr) with rationale_mask (B, K);
    spans (S, 3) rows ``(doc, start, end)``.
    """

    token_mask: Any
    image: Any
    image_mask: Any
    rationale: Any
    rationale_mask: Any
    spans: Any

    def map(self, fn) -> "NetBatch":
        """The same batch with ``fn`` applied to every array (e.g. numpy → torch)."""
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)})


@dataclass
class ReasoningBatch:
    """The chain items as the network reads them.

    rows: index into the batch's spans per item (-1: the post of ``docs``);
    docs: the item's doc; prompts: chat prompts (post, aspect, label);
    chains: the chains to learn (None entries when generating);
    soft: per item, the assistant's top-k token logits or None.
    """

    rows: Any
    docs: Any
    prompts: List[str]
    chains: List[Optional[str]]
    soft: List[Optional[dict]]

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class JointScores:
    """Logits (or, going backwards, their gradients) for one batch."""

    tags: List[Floats2d]  # per doc: n_tokens × 3 (O, B, I)
    spans: Floats2d  # all spans of the batch, in doc order: S × 3 (POS, NEU, NEG)
    docs: Floats2d  # B × 3
    reasoning_loss: float = 0.0  # the chains' loss (CE, or CE mixed with KD)
    d_reasoning: float = 0.0  # going backwards: the gradient of the total w.r.t. reasoning_loss (its weight)


@dataclass
class ClassifierOutput:
    """The classifier's logits and the hidden vectors a generator is conditioned on
    (torch tensors)."""

    tags: Any  # (B, T, 3)
    spans: Any  # (S, 3)
    docs: Any  # (B, 3)
    span_hidden: Any  # (S, H)
    doc_hidden: Any  # (B, H)


def span_offsets(spans: Sequence[SpanList]) -> numpy.ndarray:
    """Where each doc's spans start in the batch's flat span list."""
    return numpy.cumsum([0] + [len(s) for s in spans])
