"""Where pipelines lose aspect sentiment: the MASC confusion matrix (gold aspects given)
and each label's recall, side by side on the same posts.

A student whose accuracy trails its teacher's may lose it evenly or on one label; the
matrix says which (a student that answers NEU for most negative aspects needs other
levers than one that confuses POS and NEG).

    python bench/masc_confusion.py corpus/twitter2015/sentence/test.spacy TEACHER STUDENT \\
        --output results/bench/masc_confusion.json
"""

from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
import typer
from _report import emit

from spacy_mulcot.evaluation.scores import masc_scores
from spacy_mulcot.labels import POLARITIES
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example


def confusion(nlp, corpus: Path, batch_size: int = 64) -> Dict[str, Any]:
    """Accuracy, macro-F1, each label's recall (%) and the confusion (gold label →
    predicted label → count) over the gold aspects of ``corpus``: the pipeline classifies
    the given spans, as MASC is scored; a span that comes back unlabelled counts as wrong."""
    gold = [d for d in read_docbin(corpus, nlp) if len(d.spans.get("aspects", []))]
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold]
    quiet = {"mulcot": {"generate_reasoning": False}}
    gold_labels: List[str] = []
    predicted_labels: List[Optional[str]] = []
    for g_doc, p_doc in zip(gold, nlp.pipe(inputs, batch_size=batch_size, component_cfg=quiet)):
        predicted = {(s.start_char, s.end_char): s.label_ for s in p_doc.spans.get("aspects", [])}
        for span in g_doc.spans["aspects"]:
            if span.label_ not in POLARITIES:
                raise ValueError(f"{corpus}: aspect {span.text!r} has label {span.label_!r}, not one of {POLARITIES}")
            gold_labels.append(span.label_)
            predicted_labels.append(predicted.get((span.start_char, span.end_char)))
    scores = masc_scores(gold_labels, predicted_labels)
    matrix = {g: dict(zip(POLARITIES, row)) for g, row in zip(POLARITIES, scores["confusion"])}
    out: Dict[str, Any] = {
        "aspects": len(gold_labels),
        "accuracy": scores["mulcot_masc_acc"],
        "macro_f1": scores["mulcot_masc_macro_f"],
    }
    for g in POLARITIES:
        n = gold_labels.count(g)
        out[f"recall_{g}"] = round(100 * matrix[g][g] / n, 1) if n else None
    return {**out, "confusion": matrix}


def main(
    corpus: Path = typer.Argument(..., help=".spacy corpus with gold aspects"),
    models: List[Path] = typer.Argument(..., help="Pipeline folders"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    rows = []
    for model in models:
        row = confusion(spacy.load(model), corpus)
        rows.append({"model": str(model), **row})
        typer.echo(f"{model}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "confusion"), err=True)
    emit({"corpus": str(corpus), "labels": list(POLARITIES), "pipelines": rows}, output)


if __name__ == "__main__":
    typer.run(main)
