"""An assistant's soft targets, computed once and stored with the training docs, so
a student trains with ``spacy train`` without the assistant in memory."""

from typing import Dict, List

from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm

from ..data_classes import ModelInput, ReasoningItem
from ..doc_model import ASPECTS_KEY
from ..model import chain_soft_targets, has_generator
from ..readers.corpus import make_example


def add_soft_targets(
    assistant: Language,
    docs: List[Doc],
    component: str = "mulcot",
    top_k: int = 8,
    batch_size: int = 8,
    progress: bool = True,
    tags: bool = True,
) -> Dict[str, int]:
    """Set ``span._.soft_labels`` (the assistant's aspect logits) on every gold aspect of
    ``docs``, ``doc._.tag_soft_labels`` (its BIO tag logits, one row per token; with
    ``tags``) and ``span._.chain_topk`` / ``doc._.chain_topk`` (its teacher-forced top-k
    next-token logits) on every chain; returns the counts."""
    model = assistant.get_pipe(component).model
    with_chains = has_generator(model)
    upstream = [name for name in assistant.pipe_names if name != component]
    counts = {"aspects": 0, "chains": 0, "tokens": 0}
    starts = range(0, len(docs), batch_size)
    for start in tqdm(starts, desc="soft targets", unit="batch", disable=None if progress else True):
        gold = docs[start : start + batch_size]
        inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold]
        inputs = list(assistant.pipe(inputs, disable=[component])) if upstream else inputs
        spans = [[(s.start, s.end) for s in d.spans.get(ASPECTS_KEY, [])] for d in inputs]
        items: List[ReasoningItem] = []
        if with_chains:
            for i, ref in enumerate(gold):
                for j, span in enumerate(ref.spans.get(ASPECTS_KEY, [])):
                    if span._.rationale:
                        items.append(ReasoningItem(i, j, span._.rationale))
                if ref._.rationale:
                    items.append(ReasoningItem(i, None, ref._.rationale))
        logits, tag_logits, topk = chain_soft_targets(model, ModelInput(inputs, spans, items), k=top_k)
        row = 0
        if tags:
            for ref, doc_tags in zip(gold, tag_logits):
                if len(doc_tags) != len(ref):
                    raise ValueError(f"{len(doc_tags)} tag rows for a doc of {len(ref)} tokens: {ref.text[:60]!r}")
                ref._.tag_soft_labels = [[round(float(v), 4) for v in token] for token in doc_tags]
                counts["tokens"] += len(ref)
        for ref in gold:
            for span in ref.spans.get(ASPECTS_KEY, []):
                span._.soft_labels = [round(float(v), 5) for v in logits[row]]
                row += 1
                counts["aspects"] += 1
        for item, target in zip(items, topk):
            owner = gold[item.doc] if item.is_post else gold[item.doc].spans[ASPECTS_KEY][item.span]
            owner._.chain_topk = target
            counts["chains"] += 1
    return counts
