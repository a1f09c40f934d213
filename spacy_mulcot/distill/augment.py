"""MulCoT-RD's rationale augmentation: the assistant writes chains for aspects that
have none and keeps those whose Prediction matches the gold label."""

import random
import time
from collections import Counter
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm

from ..chains import parse_chain
from ..doc_model import ASPECTS_KEY
from ..readers.corpus import make_example

USER_DATA_KEY = "mulcot_augment"


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Python's and torch's global RNGs seeded inside, restored after."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def augment_chains(
    assistant: Language,
    docs: List[Doc],
    component: str = "mulcot",
    temperature: float = 0.7,
    attempts: int = 2,
    max_new_tokens: int = 320,
    batch_size: int = 16,
    limit: int = 0,
    progress: bool = True,
) -> Dict[str, float]:
    """Fill ``span._.rationale`` (and ``rationale_label``) of the gold aspects in
    ``docs`` (the first ``limit`` docs; 0: all) that have no chain, sampling up to
    ``attempts`` chains each until one predicts the gold label; what was kept is logged
    in ``doc.user_data["mulcot_augment"]``. Teacher chains are left alone. Returns the
    counts (aspects, generated, kept, unmatched, seconds)."""
    pipe = assistant.get_pipe(component)
    if not getattr(pipe, "has_generator", False):
        raise ValueError(f"component {component!r} has no generator: it cannot write chains")
    settings = {
        "generate_reasoning": True,
        "targets": "aspects",
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
    }
    todo = [
        d for d in (docs[:limit] if limit else docs) if any(not s._.rationale for s in d.spans.get(ASPECTS_KEY, []))
    ]
    counts: Counter = Counter()
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="augment", unit="doc", disable=None if progress else True)
    for first in range(0, len(todo), batch_size):
        gold = todo[first : first + batch_size]
        pending = {(i, j) for i, d in enumerate(gold) for j, s in enumerate(d.spans[ASPECTS_KEY]) if not s._.rationale}
        counts["aspects"] += len(pending)
        for attempt in range(attempts):
            if not pending:
                break
            inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold]
            with _seeded(attempt):  # reproducible samples; the caller's RNG state is left as it was
                out = list(assistant.pipe(inputs, component_cfg={component: settings}))
            for i, doc in enumerate(out):
                for j, span in enumerate(doc.spans[ASPECTS_KEY]):
                    if (i, j) not in pending:
                        continue
                    counts["generated"] += 1
                    ref = gold[i].spans[ASPECTS_KEY][j]
                    label = parse_chain(span._.reasoning or "").prediction
                    if label == ref.label_:
                        ref._.rationale, ref._.rationale_label = span._.reasoning, label
                        # A list, or a tuple as a DocBin round trip gives it back: both extend.
                        log = list(gold[i].user_data.get(USER_DATA_KEY) or [])
                        gold[i].user_data[USER_DATA_KEY] = log + [{"span": j, "attempt": attempt + 1}]
                        pending.discard((i, j))
                        counts["kept"] += 1
        counts["unmatched"] += len(pending)
        bar.update(len(gold))
    bar.close()
    return {
        **{k: counts[k] for k in ("aspects", "generated", "kept", "unmatched")},
        "docs_augmented": len(todo),
        "seconds": time.perf_counter() - start,
    }
