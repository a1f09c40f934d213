"""BIO tags for aspect extraction: encoding gold spans and decoding scores into spans.

Decoding is a constrained Viterbi over the tag log-probabilities, so an ``I`` never
follows an ``O`` and every predicted span is well formed.
"""

from typing import List, Optional, Sequence, Tuple

import numpy

TAGS: Tuple[str, str, str] = ("O", "B", "I")
O, B, I = 0, 1, 2

# allowed[prev, next]; "prev" = -1 (start of the doc) is row 3.
_ALLOWED = numpy.array(
    [
        [1, 1, 0],  # after O: O, B (not I)
        [1, 1, 1],  # after B: anything
        [1, 1, 1],  # after I: anything
        [1, 1, 0],  # at the start: O, B
    ],
    dtype=bool,
)


def encode(n_tokens: int, spans: Sequence[Tuple[int, int]]) -> numpy.ndarray:
    """Tag ids for a doc of ``n_tokens`` with aspect spans ``[(start, end), ...]``.

    Overlapping spans cannot be written as BIO; the earlier-starting (then longer)
    span wins and the other is dropped.
    """
    tags = numpy.zeros((n_tokens,), dtype="int32")
    for start, end in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if start < 0 or end > n_tokens or start >= end:
            raise ValueError(f"span ({start}, {end}) out of range for {n_tokens} tokens")
        if (tags[start:end] != O).any():
            continue
        tags[start] = B
        tags[start + 1 : end] = I
    return tags


def decode(log_probs: numpy.ndarray, outside: Optional[Sequence[bool]] = None) -> List[Tuple[int, int]]:
    """Best well-formed tag sequence for ``log_probs`` (n_tokens × 3) as spans.

    outside: per token, True where the token can never be part of an aspect
    (whitespace tokens: a double space is a token of its own in spaCy); those
    tokens are forced to ``O``.
    """
    n = log_probs.shape[0]
    if n == 0:
        return []
    if outside is not None:
        if len(outside) != n:
            raise ValueError(f"{len(outside)} 'outside' flags for {n} tokens")
        log_probs = numpy.array(log_probs, dtype="float32")
        log_probs[numpy.asarray(outside, dtype=bool), B:] = -1e9
    neg = numpy.float32(-1e9)
    trans = numpy.where(_ALLOWED[:3], 0.0, neg).astype("float32")
    score = numpy.where(_ALLOWED[3], log_probs[0], neg).astype("float32")
    back = numpy.zeros((n, 3), dtype="int32")
    for t in range(1, n):
        cand = score[:, None] + trans  # prev × next
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[t]
    tags = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        tags.append(int(back[t, tags[-1]]))
    tags.reverse()
    return tags_to_spans(tags)


def tags_to_spans(tags: Sequence[int]) -> List[Tuple[int, int]]:
    """Spans from a well-formed tag sequence (a stray ``I`` starts a span)."""
    spans: List[Tuple[int, int]] = []
    start = None
    for i, tag in enumerate(list(tags) + [O]):
        if tag == B or (tag == I and start is None) or tag == O:
            if start is not None:
                spans.append((start, i))
                start = None
            if tag in (B, I):
                start = i
    return spans
