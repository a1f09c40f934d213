"""Evaluating systems on a ``.spacy`` corpus with images: a trained pipeline's scores
(:func:`evaluate_pipeline`), its full record for the report (:func:`evaluate_system`:
scores, MASC confusion, chains, parameters, speed, memory), a zero-shot prompted LM's
record (the zero-shot LM's is ``teacher.zero_shot``) and classification throughput (:func:`throughput`).

``spacy evaluate`` rebuilds each doc from its text (spaCy's own corpus reader), so the
image and given aspects never reach the pipeline; this reads with
``mulcot.Corpus.v1`` in both modes instead, so every metric is reported. Run one
process per system so peak memory is that system's own.
"""

import random
import resource
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..doc_model import ASPECTS_KEY
from ..readers.corpus import MulcotCorpus, make_example, read_docbin
from .reasoning import reasoning_metrics
from .scores import METRICS, masc_scores


def evaluate_pipeline(
    nlp: Language,
    corpus: Union[str, Path],
    *,
    image_dir: Optional[Union[str, Path]] = None,
    rationales: bool = False,
    batch_size: int = 64,
    component_cfg: Optional[Dict[str, Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """All mulcot metrics (as percentages) plus the raw spaCy scores.

    rationales: let the pipeline read the corpus's teacher chains. Off by default:
        published chains were written knowing the gold label.
    """
    reader = MulcotCorpus(corpus, given_aspects="both", image_dir=image_dir, rationales=rationales)
    examples = list(reader(nlp))
    scores = nlp.evaluate(examples, batch_size=batch_size, component_cfg=component_cfg)
    percent = {k: (round(100 * scores[k], 2) if scores.get(k) is not None else None) for k in METRICS}
    n_posts = len(examples) // 2
    n_aspects = sum(len(eg.reference.spans["aspects"]) for eg in examples[::2] if "aspects" in eg.reference.spans)
    return {
        "scores": percent,
        "n_posts": n_posts,
        "n_gold_aspects": n_aspects,
        "speed_words_per_s": scores.get("speed"),
    }


def throughput(
    nlp: Language,
    posts: Sequence[Doc],
    *,
    runs: int = 3,
    batch_size: int = 64,
    image_dir: Optional[Union[str, Path]] = None,
    component_cfg: Optional[Dict[str, Dict[str, Any]]] = None,
) -> List[float]:
    """docs/s of ``nlp.pipe`` over ``posts`` rebuilt from text + image (aspects
    extracted), once per run, with the image cache cleared before each."""
    image = nlp.get_pipe("mulcot_image") if "mulcot_image" in nlp.pipe_names else None
    rates = []
    for _ in range(runs):
        if image is not None:
            image.clear_cache()
        fresh = [
            make_example(doc, given_aspects=False, image_dir=image_dir, rationales=False).predicted for doc in posts
        ]
        start = time.perf_counter()
        for _ in nlp.pipe(fresh, batch_size=batch_size, component_cfg=component_cfg):
            pass
        rates.append(len(posts) / (time.perf_counter() - start))
    return rates


def sample_with_chains(docs: List[Doc], n: int, seed: int) -> List[Doc]:
    """A random sample of ``n`` posts that have teacher chains (0: all of them)."""
    with_chains = [d for d in docs if any(s._.rationale for s in d.spans.get(ASPECTS_KEY, []))]
    return random.Random(seed).sample(with_chains, n) if n and n < len(with_chains) else with_chains


def reasoning_record(gold_docs: Sequence[Doc], out_docs: Sequence[Doc], chain_of, label_of) -> Dict[str, float]:
    generated, references, decided, gold = [], [], [], []
    for ref, out in zip(gold_docs, out_docs):
        for ref_span, span in zip(ref.spans[ASPECTS_KEY], out.spans[ASPECTS_KEY]):
            if ref_span._.rationale:
                generated.append(chain_of(span) or "")
                references.append(ref_span._.rationale)
                decided.append(label_of(span))
                gold.append(ref_span.label_)
    if not generated:
        return {}
    metrics = reasoning_metrics(generated, references, classifier=decided, gold=gold)
    metrics["n_chains"] = len(generated)
    return {k: round(v, 2) for k, v in metrics.items()}


def count_parameters(nlp: Language) -> int:
    """Parameters of every PyTorch module in the pipeline (transformer, image encoder,
    the mulcot net with its generator), each tensor counted once."""
    import torch

    seen, total = set(), 0

    def add(module) -> None:
        nonlocal total
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()

    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if hasattr(model, "walk"):
            for node in model.walk():
                for shim in node.shims:
                    # Our shim names its module; thinc's and spacy-transformers' keep it in _model.
                    module = getattr(shim, "net", None) or getattr(shim, "_model", None)
                    if isinstance(module, torch.nn.Module):
                        add(module)
        encoder = getattr(pipe, "encoder", None)
        if isinstance(getattr(encoder, "model", None), torch.nn.Module):
            add(encoder.model)
    return total


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def evaluate_system(
    nlp: Language,
    corpus: Union[str, Path],
    *,
    name: str,
    reasoning_sample: int = 32,
    seed: int = 0,
    max_new_tokens: int = 320,
    batch_size: int = 32,
    component: str = "mulcot",
) -> Dict[str, Any]:
    """A trained pipeline's record: all classification metrics on the whole corpus,
    MASC confusion, docs/s (text + image, given aspects, no chains), and reasoning
    metrics on ``reasoning_sample`` random posts (when it has a generator)."""
    pipe = nlp.get_pipe(component)
    quiet = {component: {"generate_reasoning": False}}
    gold_docs = list(read_docbin(corpus, nlp))
    evaluation = evaluate_pipeline(nlp, corpus, batch_size=batch_size, component_cfg=quiet)
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold_docs]
    if "mulcot_image" in nlp.pipe_names:  # the evaluation just encoded these images: time them afresh
        nlp.get_pipe("mulcot_image").clear_cache()
    start = time.perf_counter()
    out = list(nlp.pipe(inputs, batch_size=batch_size, component_cfg=quiet))
    seconds = time.perf_counter() - start
    # MASC over the posts with gold aspects (given, so the same spans come back); a
    # post-level corpus (MVSA) has none, and the model extracts its own there.
    with_aspects = [(g, o) for g, o in zip(gold_docs, out) if g.spans.get(ASPECTS_KEY)]
    gold_labels = [s.label_ for g, _ in with_aspects for s in g.spans[ASPECTS_KEY]]
    predicted = [s.label_ for _, o in with_aspects for s in o.spans.get(ASPECTS_KEY, [])]
    masc = masc_scores(gold_labels, predicted)
    record: Dict[str, Any] = {
        "name": name,
        "kind": "pipeline",
        "corpus": str(corpus),
        "n_posts": len(gold_docs),
        "n_aspects": len(gold_labels),
        "scores": evaluation["scores"],
        "confusion": masc["confusion"],
        "params": count_parameters(nlp),
        "docs_per_s": round(len(inputs) / seconds, 2) if seconds else None,
    }
    if getattr(pipe, "has_generator", False):
        sample = sample_with_chains(gold_docs, reasoning_sample, seed)
        sample_inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in sample]
        settings = {"generate_reasoning": True, "targets": "aspects", "max_new_tokens": max_new_tokens}
        start = time.perf_counter()
        with_chains = list(nlp.pipe(sample_inputs, batch_size=batch_size, component_cfg={component: settings}))
        seconds = time.perf_counter() - start
        record["reasoning_seconds"] = round(seconds, 1)
        record["reasoning_docs_per_s"] = round(len(sample) / seconds, 3) if seconds else None
        record["reasoning"] = reasoning_record(sample, with_chains, lambda s: s._.reasoning, lambda s: s.label_)
        record["reasoning_posts"] = len(sample)
    record["params_m"] = round(record["params"] / 1e6, 2)
    record["peak_rss_mb"] = peak_rss_mb()
    return record
