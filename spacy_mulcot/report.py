"""The distillation report: records of several systems (see
:mod:`spacy_mulcot.evaluation.systems`) as a Markdown table and PNG plots."""

import json
from pathlib import Path
from typing import Any, Dict, Sequence, Union

import numpy

from .evaluation.tables import get as _get
from .evaluation.tables import markdown_table
from .labels import POLARITIES


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
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "confusion": out / "confusion.png",
        "size": out / "size_vs_accuracy.png",
    }
    paths["json"].write_text(json.dumps(list(records), indent=2))

    fig, axes = plt.subplots(1, len(records), figsize=(3.6 * len(records), 3.4), squeeze=False)
    for ax, r in zip(axes[0], records):
        matrix = numpy.asarray(r["confusion"])
        ax.imshow(matrix, cmap="Blues")
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    color="black" if matrix[i, j] <= matrix.max() / 2 else "white",
                )
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
        + (
            f" ({r['unreadable_predictions']} replies without a readable Prediction)"
            if r.get("unreadable_predictions")
            else ""
        )
        + (
            f"; reasoning on {r['reasoning_posts']} random posts ({_get(r, 'reasoning.n_chains')} chains)"
            if r.get("reasoning")
            else ""
        )
        for r in records
    ]
    paths["markdown"].write_text(
        "# Distillation report\n\n" + markdown_table(records) + "\n\n"
        "METEOR* without WordNet synonyms (offline). Reasoning metrics compare generated chains "
        "with the teacher's; chain = gold is the share of chains whose Prediction is the gold label.\n\n"
        + "\n".join(notes)
        + "\n\n![MASC confusion](confusion.png)\n\n![Size vs accuracy](size_vs_accuracy.png)\n"
    )
    return paths
