"""Where pipelines lose aspect sentiment: the MASC confusion matrix (gold aspects given)
and each label's recall, side by side on the same posts.

A student whose accuracy trails its teacher's may lose it evenly or on one label; the
matrix says which (a student that answers NEU for most negative aspects needs other
levers than one that confuses POS and NEG).

    python bench/masc_confusion.py corpus/twitter2015/sentence/test.spacy TEACHER STUDENT \\
        --output results/bench/masc_confusion.json
"""

from pathlib import Path
from typing import Dict, List, Optional

import spacy
import typer
from _report import emit

from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example

LABELS = ("POS", "NEU", "NEG")


def confusion(nlp, corpus: Path, batch_size: int = 64) -> Dict[str, Dict[str, int]]:
    """gold label → predicted label → count, over the gold aspects of ``corpus`` (the
    pipeline classifies the given spans, as MASC is scored)."""
    gold = [d for d in read_docbin(corpus, nlp) if len(d.spans.get("aspects", []))]
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold]
    counts = {g: {p: 0 for p in LABELS} for g in LABELS}
    quiet = {"mulcot": {"generate_reasoning": False}}
    for g_doc, p_doc in zip(gold, nlp.pipe(inputs, batch_size=batch_size, component_cfg=quiet)):
        predicted = {(s.start_char, s.end_char): s.label_ for s in p_doc.spans.get("aspects", [])}
        for span in g_doc.spans["aspects"]:
            label = predicted.get((span.start_char, span.end_char))
            if span.label_ not in counts:
                raise ValueError(f"{corpus}: aspect {span.text!r} has label {span.label_!r}, not one of {LABELS}")
            if label in LABELS:
                counts[span.label_][label] += 1
    return counts


def summary(counts: Dict[str, Dict[str, int]]) -> Dict[str, float]:
    """Accuracy and each label's recall, in percent."""
    total = sum(sum(row.values()) for row in counts.values())
    out = {"aspects": total, "accuracy": round(100 * sum(counts[g][g] for g in LABELS) / max(total, 1), 1)}
    for g in LABELS:
        n = sum(counts[g].values())
        out[f"recall_{g}"] = round(100 * counts[g][g] / n, 1) if n else None
    return out


def main(
    corpus: Path = typer.Argument(..., help=".spacy corpus with gold aspects"),
    models: List[Path] = typer.Argument(..., help="Pipeline folders"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    rows = []
    for model in models:
        counts = confusion(spacy.load(model), corpus)
        rows.append({"model": str(model), "confusion": counts, **summary(counts)})
        typer.echo(f"{model}: " + ", ".join(f"{k} {v}" for k, v in summary(counts).items()), err=True)
    emit({"corpus": str(corpus), "labels": list(LABELS), "pipelines": rows}, output)


if __name__ == "__main__":
    typer.run(main)
