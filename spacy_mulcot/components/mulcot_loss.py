"""What ``mulcot`` learns from a batch: gold targets read off the reference docs, and
the weighted joint loss (BIO tags, aspect polarity with optional distillation, post
sentiment, chains) with its gradient."""

import random
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Span
from spacy.training import Example
from thinc.api import Ops

from .. import bio
from ..data_classes import JointScores, ReasoningItem
from ..losses import Distillation, cross_entropy, distill_rows, soft_cross_entropy

#: One example's gold: its aspects ``(start, end, label)`` on the predicted doc's tokens
#: (None: no aspect annotation) and its post target distribution (None: none).
Gold = Tuple[Optional[List[Tuple[int, int, str]]], Optional[numpy.ndarray]]


def gold_of(example: Example, spans_key: str, labels: Sequence[str], owner: str = "mulcot") -> Gold:
    """Gold aspects (on the predicted doc's tokens) and the post's target distribution:
    the reference's cats when it has polarity cats, else the mean of its aspects'
    one-hot polarities (Twitter-2015 has no post labels), else None."""
    ref = example.reference
    aspects = None
    if spans_key in ref.spans:
        aligned = example.get_aligned_spans_y2x(list(ref.spans[spans_key]), allow_overlap=True)
        aspects = []
        for span in aligned:
            if span.label_ not in labels:
                raise ValueError(
                    f"[{owner}] Aspect {span.text!r} in {ref.text[:60]!r} has label {span.label_!r}; "
                    f"expected one of {tuple(labels)}"
                )
            aspects.append((span.start, span.end, span.label_))
    target = None
    if all(label in ref.cats for label in labels):
        target = numpy.array([ref.cats[label] for label in labels], dtype="float32")
    elif aspects:
        target = numpy.zeros((len(labels),), dtype="float32")
        for *_, label in aspects:
            target[list(labels).index(label)] += 1.0
    if target is not None:
        total = target.sum()
        target = target / total if total > 0 else None
    return aspects, target


def reference_spans(example: Example, spans_key: str, aspects) -> List[Optional[Span]]:
    """The reference span behind each gold aspect (matched by character offsets; None
    where there is none): where its chain and soft targets live, since spaCy keys span
    extension data on the reference doc."""
    ref, pred = example.reference, example.predicted
    if spans_key not in ref.spans:
        return [None] * len(aspects)
    by_offsets = {(s.start_char, s.end_char): s for s in ref.spans[spans_key]}
    return [by_offsets.get((pred[start:end].start_char, pred[start:end].end_char)) for start, end, _ in aspects]


def chain_items(
    examples: Sequence[Example],
    golds: Sequence[Gold],
    spans_key: str,
    labels: Sequence[str],
    targets: str,
    limit: int,
    rng: random.Random,
) -> List[ReasoningItem]:
    """The reference chains to learn in this batch: each gold aspect's
    ``span._.rationale`` and the post's ``doc._.rationale`` for ``targets`` ("aspects",
    "post", "both"); a random subset of at most ``limit`` (0: all), drawn from ``rng``."""
    items = []
    for i, (eg, (aspects, target)) in enumerate(zip(examples, golds)):
        ref = eg.reference
        if aspects and targets in ("aspects", "both"):
            for j, span in enumerate(reference_spans(eg, spans_key, aspects)):
                if span is not None and span._.rationale:
                    # Gold: what a label_in_prompt generator explains if the chain names no label.
                    items.append(ReasoningItem(i, j, span._.rationale, span._.chain_topk, aspects[j][2]))
        if ref._.rationale and targets in ("post", "both"):
            gold = labels[int(target.argmax())] if target is not None else None
            items.append(ReasoningItem(i, None, ref._.rationale, ref._.chain_topk, gold))
    if limit and len(items) > limit:
        items = [items[k] for k in sorted(rng.sample(range(len(items)), limit))]
    return items


def class_weights(examples: Iterable[Example], spans_key: str, labels: Sequence[str], power: float) -> List[float]:
    """(count_c / mean count)^-power over the gold aspects, normalised to mean 1."""
    counts = numpy.ones((len(labels),), dtype="float64")  # add-one: no division by zero
    for eg in examples:
        if spans_key in eg.reference.spans:
            for span in eg.reference.spans[spans_key]:
                if span.label_ in labels:
                    counts[list(labels).index(span.label_)] += 1
    weights = (counts / counts.mean()) ** -float(power)
    return [float(w) for w in weights / weights.mean()]


def joint_loss(
    ops: Ops,
    examples: Sequence[Example],
    scores: JointScores,
    golds: Sequence[Gold],
    cfg: Dict,
    distillation: Distillation,
) -> Tuple[float, JointScores]:
    """``tag_weight·L_tags + aspect_weight·L_aspects + doc_weight·L_post +
    reasoning_weight·L_reasoning`` (weights from ``cfg``) and its gradient w.r.t. the
    scores; ``scores`` must come from the gold aspects."""
    labels = list(cfg["labels"])
    spans_key = cfg["spans_key"]
    # Tags: mean over the tokens of docs with aspect annotation.
    n_tokens = sum(len(eg.predicted) for eg, (aspects, _) in zip(examples, golds) if aspects is not None)
    d_tags, tag_loss = [], 0.0
    for eg, (aspects, _), logits in zip(examples, golds, scores.tags):
        logits = ops.to_numpy(logits)
        if aspects is None or not len(logits):
            d_tags.append(ops.alloc2f(*logits.shape))
            continue
        target = bio.encode(len(eg.predicted), [(s, e) for s, e, _ in aspects])
        loss, grad = cross_entropy(logits, target)
        if distillation.active:
            loss, grad = distill_tags(eg, logits, loss, grad, distillation)
        tag_loss += loss / n_tokens
        d_tags.append(ops.asarray2f(grad * (cfg["tag_weight"] / n_tokens)))
    # Aspect sentiment: class-weighted mean over the spans (plain mean when all weights are 1).
    span_targets = numpy.array(
        [labels.index(label) for aspects, _ in golds for *_, label in (aspects or [])], dtype="int64"
    )
    span_logits = ops.to_numpy(scores.spans)
    if len(span_targets) != len(span_logits):
        raise ValueError(f"{len(span_logits)} span scores for {len(span_targets)} gold aspects")
    span_loss, d_spans = 0.0, numpy.zeros_like(span_logits)
    if len(span_targets):
        weights = numpy.asarray(cfg["aspect_class_weights"], dtype="float32")[span_targets]
        span_loss, d_spans = cross_entropy(span_logits, span_targets, weights)
        span_loss /= weights.sum()
        d_spans /= weights.sum()
        if distillation.active:
            span_loss, d_spans = distill_spans(
                examples, golds, spans_key, span_logits, span_loss, d_spans, distillation
            )
        d_spans *= cfg["aspect_weight"]
    # Post sentiment: soft-target cross-entropy over docs that have a target.
    doc_logits = ops.to_numpy(scores.docs)
    d_docs = numpy.zeros_like(doc_logits)
    doc_loss = 0.0
    rows = [i for i, (_, target) in enumerate(golds) if target is not None]
    if rows:
        doc_loss, d_rows = soft_cross_entropy(doc_logits[rows], numpy.stack([golds[i][1] for i in rows]))
        d_docs[rows] = d_rows * cfg["doc_weight"]
    w = cfg["reasoning_weight"]
    total = (
        cfg["tag_weight"] * tag_loss
        + cfg["aspect_weight"] * span_loss
        + cfg["doc_weight"] * doc_loss
        + w * scores.reasoning_loss
    )
    d_scores = JointScores(tags=d_tags, spans=ops.asarray2f(d_spans), docs=ops.asarray2f(d_docs), d_reasoning=w)
    return float(total), d_scores


def distill_tags(example: Example, logits, hard_loss: float, d_hard, distillation: Distillation):
    """Mix in KL to the assistant's stored BIO tag logits (``doc._.tag_soft_labels`` of
    the reference, one row per token): ``(1 − λ)·CE + λ·T²·KL`` per token, summed like
    the hard loss; docs without them (or tokenised differently) keep the hard loss."""
    soft = example.reference._.tag_soft_labels
    n = len(logits)
    if soft is None or not n or len(example.reference) != n:
        return hard_loss, d_hard
    teacher = numpy.asarray(soft, dtype="float32")
    if teacher.shape != logits.shape:
        return hard_loss, d_hard
    loss, grad = distill_rows(logits, list(range(n)), teacher, hard_loss / n, d_hard / n, distillation)
    return loss * n, grad * n


def distill_spans(examples, golds, spans_key, span_logits, hard_loss, d_hard, distillation: Distillation):
    """Mix in KL to the assistant's stored aspect logits (``span._.soft_labels``):
    ``(1 − λ)·CE + λ·T²·KL``; spans without soft labels keep the hard loss only."""
    soft = [
        span._.soft_labels if span is not None else None
        for eg, (aspects, _) in zip(examples, golds)
        if aspects
        for span in reference_spans(eg, spans_key, aspects)
    ]
    rows = [k for k, v in enumerate(soft) if v is not None]
    if not rows:
        return hard_loss, d_hard
    teacher = numpy.asarray([soft[k] for k in rows], dtype="float32")
    return distill_rows(span_logits, rows, teacher, hard_loss, d_hard, distillation)
