"""How soft are a transfer set's soft labels? What distillation can pass on that hard labels
cannot is in the teacher's non-argmax probabilities: this reports, for the original
posts and for the variants separately, the teacher's agreement with the gold label,
its mean top probability, entropy and expected calibration error (10 bins) at T = 1 and
at the distillation temperature, how often the gold label is not the teacher's choice
but keeps ≥ 20% of its mass, and the temperature at which the teacher's probabilities
on the original posts fit their gold labels best (lowest NLL, grid 1-8 by 0.25).
"sources" are the first copy of each original post; variants that came out unchanged
count as variants.

    python bench/soft_label_stats.py corpus/twitter2015/transfer/oof-soft.spacy \\
        --sources corpus/twitter2015/sentence/train.spacy --temperature 2 \\
        --output results/bench/soft_labels_oof.json
"""

from pathlib import Path
from typing import Dict, List, Optional

import numpy
import spacy
import typer
from _report import emit

from spacy_mulcot.doc_model import ASPECTS_KEY
from spacy_mulcot.labels import POLARITIES
from spacy_mulcot.losses import log_softmax
from spacy_mulcot.readers import read_docbin


def nll(logits: numpy.ndarray, gold: numpy.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature)[numpy.arange(len(gold)), gold].mean())


def calibration_error(probs: numpy.ndarray, gold: numpy.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |confidence − accuracy| per confidence bin, weighted."""
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == gold
    cells = numpy.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(confidence[cells == b].sum() - right[cells == b].sum()) for b in range(bins)) / len(gold))


def best_temperature(logits: numpy.ndarray, gold: numpy.ndarray) -> float:
    return min((1 + 0.25 * i for i in range(29)), key=lambda t: nll(logits, gold, t))


def summarise(rows: List[tuple], temperature: float) -> Dict[str, float]:
    """rows: (logits, gold index) per aspect."""
    if not rows:
        return {"aspects": 0}
    logits = numpy.asarray([lg for lg, _ in rows], dtype="float32")
    gold = numpy.asarray([g for _, g in rows])
    out: Dict[str, float] = {"aspects": len(rows)}
    out["teacher_acc"] = round(100 * float((logits.argmax(axis=1) == gold).mean()), 2)
    for name, t in (("t1", 1.0), (f"t{temperature:g}", temperature)):
        probs = numpy.exp(log_softmax(logits / t))
        out[f"mean_top_prob_{name}"] = round(float(probs.max(axis=1).mean()), 4)
        entropy = -(probs * numpy.log2(numpy.maximum(probs, 1e-30))).sum(axis=1)
        out[f"mean_entropy_bits_{name}"] = round(float(entropy.mean()), 4)
        out[f"gold_prob_{name}"] = round(float(probs[numpy.arange(len(gold)), gold].mean()), 4)
        out[f"ece_{name}"] = round(calibration_error(probs, gold), 4)
    probs = numpy.exp(log_softmax(logits))
    close = (probs.argmax(axis=1) != gold) & (probs[numpy.arange(len(gold)), gold] >= 0.2)
    out["gold_not_argmax_but_ge_20pct"] = round(100 * float(close.mean()), 2)
    return out


def main(
    soft: Path = typer.Argument(..., help=".spacy with span._.soft_labels (soft-targets' output)"),
    sources: Optional[Path] = typer.Option(None, help="The labelled posts the transfer set was made from"),
    temperature: float = typer.Option(2.0, help="The distillation temperature"),
    output: Optional[Path] = typer.Option(None, help="Write the JSON record here"),
):
    nlp = spacy.blank("en")
    source_texts = {d.text for d in read_docbin(sources, nlp)} if sources else set()
    groups: Dict[str, List[tuple]] = {"sources": [], "variants": []}
    for doc in read_docbin(soft, nlp):
        group = "sources" if doc.text in source_texts else "variants"
        source_texts.discard(doc.text)
        for span in doc.spans.get(ASPECTS_KEY, []):
            if span._.soft_labels is None or span.label_ not in POLARITIES:
                continue
            groups[group].append((list(span._.soft_labels), POLARITIES.index(span.label_)))
    record = {
        "corpus": str(soft),
        "sources": str(sources) if sources else None,
        "temperature": temperature,
        "label_order": list(POLARITIES),
        **{name: summarise(rows, temperature) for name, rows in groups.items()},
    }
    if groups["sources"]:
        logits, gold = zip(*groups["sources"])
        record["nll_best_temperature_sources"] = best_temperature(
            numpy.asarray(logits, dtype="float32"), numpy.asarray(gold)
        )
    emit(record, output)


if __name__ == "__main__":
    typer.run(main)
