"""What ``mulcot`` predicts for a batch and how it lands on the docs: aspects in
``doc.spans``, their polarity scores, the post's in ``doc.cats``, chains in
``_.reasoning``."""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span, SpanGroup

from ..data_classes import ReasoningItem
from ..reasoning.prompt import force_prediction

#: Extension values a span keeps when ``mulcot`` relabels it (spaCy keys span
#: extension data by offsets *and* label, so they must be copied over).
SPAN_EXTENSIONS = ("rationale", "rationale_label", "reasoning", "soft_labels", "chain_topk")


@dataclass
class MulcotPrediction:
    """What ``predict`` found for a batch."""

    spans: List[List[Tuple[int, int]]]
    given: List[bool]
    span_probs: List[numpy.ndarray]  # per doc: n_spans × n_labels
    doc_probs: numpy.ndarray  # B × n_labels
    span_chains: Optional[List[List[Optional[str]]]] = None  # per doc, per span
    doc_chains: Optional[List[Optional[str]]] = None

    @classmethod
    def empty_docs(cls, given: List[bool], n_labels: int) -> "MulcotPrediction":
        """Docs that carry no evidence: no aspects and uniform post sentiment."""
        n = len(given)
        return cls(
            spans=[[] for _ in range(n)],
            given=given,
            span_probs=[numpy.zeros((0, n_labels), dtype="float32") for _ in range(n)],
            doc_probs=numpy.full((n, n_labels), 1.0 / n_labels, dtype="float32"),
        )

    def fill(self, rows: Sequence[int], part: "MulcotPrediction") -> "MulcotPrediction":
        """Copy ``part``'s docs into rows ``rows`` of this prediction (in order)."""
        if part.span_chains is not None and self.span_chains is None:
            self.span_chains = [[] for _ in self.spans]
            self.doc_chains = [None] * len(self.spans)
        for j, i in enumerate(rows):
            self.spans[i] = part.spans[j]
            self.span_probs[i] = part.span_probs[j]
            self.doc_probs[i] = part.doc_probs[j]
            if part.span_chains is not None:
                self.span_chains[i] = part.span_chains[j]
                self.doc_chains[i] = part.doc_chains[j]
        return self

    def chain_requests(self, labels: Sequence[str], targets: str) -> List[ReasoningItem]:
        """One reasoning item per aspect and/or post (``targets``), each carrying the
        classifier's decision: the label its chain is to explain."""
        items: List[ReasoningItem] = []
        for i, doc_spans in enumerate(self.spans):
            if targets in ("aspects", "both"):
                items.extend(
                    ReasoningItem(doc=i, span=j, label=labels[int(self.span_probs[i][j].argmax())])
                    for j in range(len(doc_spans))
                )
            if targets in ("post", "both"):
                items.append(ReasoningItem(doc=i, label=labels[int(self.doc_probs[i].argmax())]))
        return items

    def set_chains(self, items: Sequence[ReasoningItem], chains: Sequence[str], guarantee_label: bool) -> None:
        """Put each item's chain in its place (its Prediction rewritten to the item's
        label with ``guarantee_label``)."""
        self.span_chains = [[None] * len(s) for s in self.spans]
        self.doc_chains = [None] * len(self.spans)
        for item, chain in zip(items, chains):
            if guarantee_label:
                chain = force_prediction(chain, item.label)
            if item.is_post:
                self.doc_chains[item.doc] = chain
            else:
                self.span_chains[item.doc][item.span] = chain


def annotate(docs: Sequence[Doc], prediction: MulcotPrediction, labels: Sequence[str], spans_key: str) -> None:
    """Write ``prediction`` onto ``docs``: a span group (source "given" or "predicted")
    whose spans carry the top label and ``_.sentiment_scores`` (given spans keep their
    extension values), chains in ``_.reasoning``, post scores in ``doc.cats``."""
    for i, doc in enumerate(docs):
        old = list(doc.spans[spans_key]) if prediction.given[i] else []
        group = SpanGroup(doc, name=spans_key, attrs={"source": "given" if prediction.given[i] else "predicted"})
        for j, (start, end) in enumerate(prediction.spans[i]):
            probs = prediction.span_probs[i][j]
            span = Span(doc, start, end, label=labels[int(probs.argmax())])
            if old:
                for ext in SPAN_EXTENSIONS:
                    value = getattr(old[j]._, ext)
                    if value is not None:
                        setattr(span._, ext, value)
            span._.sentiment_scores = {label: float(p) for label, p in zip(labels, probs)}
            if prediction.span_chains is not None:
                span._.reasoning = prediction.span_chains[i][j]
            group.append(span)
        doc.spans[spans_key] = group
        if prediction.doc_chains is not None and prediction.doc_chains[i] is not None:
            doc._.reasoning = prediction.doc_chains[i]
        doc.cats.update({label: float(p) for label, p in zip(labels, prediction.doc_probs[i])})
