"""The distillation report: one record per system (trained pipeline or zero-shot
prompted LM) on the same test corpus, then a Markdown table and PNG plots.

A record holds classification scores (MASC on given aspects; MATE and JMASA where the
system extracts aspects), the MASC confusion matrix, reasoning metrics against the
teacher chains on a random sample of posts, parameter count, docs/s and the process's
peak memory. Run one process per system so peak memory is that system's own.
"""
import json
import random
import resource
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from .doc_model import ASPECTS_KEY
from .evaluation import evaluate_pipeline
from .labels import POLARITIES
from .readers.corpus import make_example, read_docbin
from .reasoning.metrics import reasoning_metrics

#: Table columns: (record key path, header, format).
COLUMNS = (
    ("params_m", "Params (M)", "{:.1f}"),
    ("scores.mulcot_masc_acc", "MASC acc", "{:.2f}"),
    ("scores.mulcot_masc_macro_f", "MASC mF1", "{:.2f}"),
    ("scores.mulcot_mate_f", "MATE F1", "{:.2f}"),
    ("scores.mulcot_jmasa_f", "JMASA F1", "{:.2f}"),
    ("reasoning.bleu4", "BLEU-4", "{:.1f}"),
    ("reasoning.rouge_l", "ROUGE-L", "{:.1f}"),
    ("reasoning.meteor_no_wordnet", "METEOR*", "{:.1f}"),
    ("reasoning.cosine_minilm", "Cosine", "{:.1f}"),
    ("reasoning.distinct_2", "Distinct-2", "{:.1f}"),
    ("reasoning.chain_vs_gold", "Chain = gold %", "{:.1f}"),
    ("docs_per_s", "docs/s", "{:.2f}"),
    ("reasoning_docs_per_s", "docs/s with chains", "{:.3f}"),
    ("peak_rss_mb", "Peak MB", "{:.0f}"),
)


def masc_scores(gold: Sequence[str], predicted: Sequence[Optional[str]]) -> Dict[str, Any]:
    """Accuracy and macro-F1 (%) over POS/NEU/NEG, and the confusion matrix (rows gold,
    columns predicted; an unreadable prediction counts as wrong)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    index = {label: i for i, label in enumerate(POLARITIES)}
    confusion = numpy.zeros((len(POLARITIES), len(POLARITIES)), dtype=int)
    correct = 0
    for g, p in zip(gold, predicted):
        correct += g == p
        if p in index:
            confusion[index[g], index[p]] += 1
    f1s = []
    for i in range(len(POLARITIES)):
        tp = confusion[i, i]
        n_pred, n_gold = confusion[:, i].sum(), sum(1 for g in gold if g == POLARITIES[i])
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {
        "mulcot_masc_acc": round(100.0 * correct / len(gold), 2) if gold else None,
        "mulcot_masc_macro_f": round(100.0 * float(numpy.mean(f1s)), 2) if gold else None,
        "confusion": confusion.tolist(),
    }


def _sample(docs: List[Doc], n: int, seed: int) -> List[Doc]:
    """A random sample of ``n`` posts that have teacher chains (0: all of them)."""
    with_chains = [d for d in docs if any(s._.rationale for s in d.spans.get(ASPECTS_KEY, []))]
    return random.Random(seed).sample(with_chains, n) if n and n < len(with_chains) else with_chains


def _reasoning(gold_docs: Sequence[Doc], out_docs: Sequence[Doc], chain_of, label_of) -> Dict[str, float]:
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
                    if isinstance(getattr(shim, "_model", None), torch.nn.Module):
                        add(shim._model)
        encoder = getattr(pipe, "encoder", None)
        if isinstance(getattr(encoder, "model", None), torch.nn.Module):
            add(encoder.model)
    return total


def _peak_rss_mb() -> float:
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
    pipe.cfg["generate_reasoning"] = False
    gold_docs = list(read_docbin(corpus, nlp))
    evaluation = evaluate_pipeline(nlp, corpus, batch_size=batch_size)
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold_docs]
    start = time.perf_counter()
    out = list(nlp.pipe(inputs, batch_size=batch_size))
    seconds = time.perf_counter() - start
    gold_labels = [s.label_ for d in gold_docs for s in d.spans.get(ASPECTS_KEY, [])]
    predicted = [s.label_ for d in out for s in d.spans.get(ASPECTS_KEY, [])]
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
        sample = _sample(gold_docs, reasoning_sample, seed)
        pipe.cfg.update({"reasoning_targets": "aspects", "max_new_tokens": max_new_tokens})
        sample_inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in sample]
        start = time.perf_counter()
        with_chains = list(nlp.pipe(sample_inputs, batch_size=batch_size, component_cfg={component: {"generate_reasoning": True}}))
        seconds = time.perf_counter() - start
        record["reasoning_seconds"] = round(seconds, 1)
        record["reasoning_docs_per_s"] = round(len(sample) / seconds, 3) if seconds else None
        record["reasoning"] = _reasoning(sample, with_chains, lambda s: s._.reasoning, lambda s: s.label_)
        record["reasoning_posts"] = len(sample)
    record["params_m"] = round(record["params"] / 1e6, 2)
    record["peak_rss_mb"] = _peak_rss_mb()
    return record


def zero_shot_system(
    model: str,
    corpus: Union[str, Path],
    *,
    name: Optional[str] = None,
    sample: int = 32,
    seed: int = 0,
    max_new_tokens: int = 320,
    dtype: str = "bfloat16",
) -> Dict[str, Any]:
    """A small local LM prompted like the teacher (stage 1 only, no gold), on
    ``sample`` random posts with given aspects: MASC from the label its chain
    predicts, and the chains' reasoning metrics. Text-only models read an
    EfficientNet description of the image, as with the teacher."""
    import spacy

    from .teacher.backends.hf_local import HFLocal
    from .teacher.component import MulcotTeacher

    nlp = spacy.blank("en")
    gold_docs = _sample(list(read_docbin(corpus, nlp)), sample, seed)
    backend = HFLocal(model, max_new_tokens=max_new_tokens, dtype=dtype)
    teacher = MulcotTeacher(nlp.vocab, backend, two_stage=False, cache_path=None, keep_existing=False)
    teacher.progress = True
    # Given aspects without their labels or chains: the LM sees what a user gives.
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold_docs]
    start = time.perf_counter()
    teacher.annotate(inputs)
    seconds = time.perf_counter() - start
    gold_labels = [s.label_ for d in gold_docs for s in d.spans[ASPECTS_KEY]]
    predicted = [s._.rationale_label for d in inputs for s in d.spans[ASPECTS_KEY]]
    masc = masc_scores(gold_labels, predicted)
    lm_params = sum(p.numel() for p in backend.lm.parameters())
    return {
        "name": name or f"zero-shot {Path(model).name}",
        "kind": "zero-shot",
        "corpus": str(corpus),
        "n_posts": len(gold_docs),
        "n_aspects": len(gold_labels),
        "scores": {"mulcot_masc_acc": masc["mulcot_masc_acc"], "mulcot_masc_macro_f": masc["mulcot_masc_macro_f"]},
        "confusion": masc["confusion"],
        "unreadable_predictions": sum(p is None for p in predicted),
        "params": lm_params,
        "params_m": round(lm_params / 1e6, 2),
        "docs_per_s": round(len(inputs) / seconds, 3) if seconds else None,
        "reasoning_docs_per_s": round(len(inputs) / seconds, 3) if seconds else None,
        "reasoning": _reasoning(gold_docs, inputs, lambda s: s._.rationale, lambda s: s._.rationale_label),
        "reasoning_posts": len(gold_docs),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _get(record: Dict[str, Any], path: str):
    value: Any = record
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def markdown_table(records: Sequence[Dict[str, Any]]) -> str:
    """One row per system; "–" where a system has no such figure (a zero-shot LM
    extracts no aspects)."""
    header = "| System | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in records:
        cells = []
        for path, _, fmt in COLUMNS:
            value = _get(r, path)
            cells.append(fmt.format(value) if isinstance(value, (int, float)) else "–")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(records: Sequence[Dict[str, Any]], output_dir: Union[str, Path]) -> Dict[str, Path]:
    """report.json, report.md (table + notes + plots) and the PNG plots:
    confusion.png (MASC confusion per system) and size_vs_accuracy.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("no system records to report")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "confusion": out / "confusion.png", "size": out / "size_vs_accuracy.png"}
    paths["json"].write_text(json.dumps(list(records), indent=2))

    fig, axes = plt.subplots(1, len(records), figsize=(3.6 * len(records), 3.4), squeeze=False)
    for ax, r in zip(axes[0], records):
        matrix = numpy.asarray(r["confusion"])
        ax.imshow(matrix, cmap="Blues")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="black" if matrix[i, j] <= matrix.max() / 2 else "white")
        ax.set_xticks(range(len(POLARITIES)), POLARITIES)
        ax.set_yticks(range(len(POLARITIES)), POLARITIES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        acc = _get(r, "scores.mulcot_masc_acc")
        ax.set_title(f"{r['name']}\nMASC acc {acc:.1f}" if acc is not None else r["name"], fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["confusion"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in records:
        acc = _get(r, "scores.mulcot_masc_acc")
        if acc is None:
            continue
        ax.scatter(r["params_m"], acc, s=40)
        ax.annotate(r["name"], (r["params_m"], acc), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (M, log scale)")
    ax.set_ylabel("MASC accuracy (%)")
    ax.set_title("Size vs accuracy (Twitter-2015 test)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["size"], dpi=120)
    plt.close(fig)

    notes = [
        f"- {r['name']}: {r['n_posts']} posts / {r['n_aspects']} aspects for classification"
        + (f" ({r['unreadable_predictions']} replies without a readable Prediction)" if r.get("unreadable_predictions") else "")
        + (f"; reasoning on {r['reasoning_posts']} random posts ({_get(r, 'reasoning.n_chains')} chains)" if r.get("reasoning") else "")
        for r in records
    ]
    paths["markdown"].write_text(
        "# Distillation report\n\n" + markdown_table(records) + "\n\n"
        "METEOR* without WordNet synonyms (offline). Reasoning metrics compare generated chains "
        "with the teacher's; chain = gold is the share of chains whose Prediction is the gold label.\n\n"
        + "\n".join(notes) + "\n\n![MASC confusion](confusion.png)\n\n![Size vs accuracy](size_vs_accuracy.png)\n"
    )
    return paths
