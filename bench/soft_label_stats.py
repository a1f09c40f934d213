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

import math
from pathlib import Path
from typing import Dict, List, Optional

import spacy
import typer
from _report import emit

from spacy_mulcot.doc_model import ASPECTS_KEY
from spacy_mulcot.labels import POLARITIES
from spacy_mulcot.readers import read_docbin


def softmax(logits: List[float], temperature: float) -> List[float]:
    scaled = [v / temperature for v in logits]
    top = max(scaled)
    exps = [math.exp(v - top) for v in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def nll(rows: List[tuple], temperature: float) -> float:
    return -sum(math.log(max(softmax(lg, temperature)[g], 1e-12)) for lg, g in rows) / len(rows)


def calibration_error(rows: List[tuple], temperature: float, bins: int = 10) -> float:
    """Expected calibration error: |confidence − accuracy| per confidence bin, weighted."""
    counts = [[0, 0.0, 0] for _ in range(bins)]
    for lg, gold in rows:
        p = softmax(lg, temperature)
        k = max(range(len(p)), key=p.__getitem__)
        cell = counts[min(int(p[k] * bins), bins - 1)]
        cell[0] += 1
        cell[1] += p[k]
        cell[2] += k == gold
    return sum(abs(conf - right) for n, conf, right in counts if n) / len(rows)


def best_temperature(rows: List[tuple]) -> float:
    grid = [1 + 0.25 * i for i in range(29)]
    return min(grid, key=lambda t: nll(rows, t))


def summarise(rows: List[tuple], temperature: float) -> Dict[str, float]:
    """rows: (logits, gold index) per aspect."""
    if not rows:
        return {"aspects": 0}
    out: Dict[str, float] = {"aspects": len(rows)}
    agree = sum(max(range(len(lg)), key=lg.__getitem__) == gold for lg, gold in rows)
    out["teacher_acc"] = round(100 * agree / len(rows), 2)
    for name, t in (("t1", 1.0), (f"t{temperature:g}", temperature)):
        probs = [softmax(lg, t) for lg, _ in rows]
        out[f"mean_top_prob_{name}"] = round(sum(max(p) for p in probs) / len(probs), 4)
        out[f"mean_entropy_bits_{name}"] = round(
            sum(-sum(q * math.log2(q) for q in p if q > 0) for p in probs) / len(probs), 4
        )
        out[f"gold_prob_{name}"] = round(sum(p[g] for p, (_, g) in zip(probs, rows)) / len(probs), 4)
    for name, t in (("t1", 1.0), (f"t{temperature:g}", temperature)):
        out[f"ece_{name}"] = round(calibration_error(rows, t), 4)
    probs = [softmax(lg, 1.0) for lg, _ in rows]
    wrong_but_close = sum(max(range(3), key=p.__getitem__) != g and p[g] >= 0.2 for p, (_, g) in zip(probs, rows))
    out["gold_not_argmax_but_ge_20pct"] = round(100 * wrong_but_close / len(rows), 2)
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
        record["nll_best_temperature_sources"] = best_temperature(groups["sources"])
    emit(record, output)


if __name__ == "__main__":
    typer.run(main)
