"""The distillation report: records of several systems (see
:mod:`spacy_mulcot.evaluation.systems`) as a Markdown table and PNG plots."""

from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy

from .atomic import atomic_path, write_json, write_text
from .evaluation.tables import get as _get
from .evaluation.tables import markdown_table
from .extras import require
from .labels import POLARITIES


def write_report(records: Sequence[Dict[str, Any]], output_dir: Union[str, Path]) -> Dict[str, Path]:
    """report.json, report.md (table + notes + plots) and the PNG plots:
    confusion.png (MASC confusion per system) and size_vs_accuracy.png."""
    matplotlib = require("matplotlib", "report", "the report's plots")
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
    write_json(paths["json"], list(records))

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
    with atomic_path(paths["confusion"]) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

    _size_plot(plt, records, paths["size"])

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
    write_text(
        paths["markdown"],
        "# Distillation report\n\n" + markdown_table(records) + "\n\n"
        "METEOR* without WordNet synonyms (offline). Reasoning metrics compare generated chains "
        "with the teacher's; chain = gold is the share of chains whose Prediction is the gold label.\n\n"
        + "\n".join(notes)
        + "\n\n![MASC confusion](confusion.png)\n\n![Size vs accuracy](size_vs_accuracy.png)\n",
    )
    return paths


def corpus_label(records: Sequence[Dict[str, Any]]) -> str:
    """What the records were measured on, from the records themselves."""
    corpora = sorted({str(r.get("corpus", "?")) for r in records})
    aspects = sorted({r.get("n_aspects") for r in records if r.get("n_aspects") is not None})
    where = corpora[0] if len(corpora) == 1 else f"{len(corpora)} corpora"
    return where + (f", {aspects[0]} aspects" if len(aspects) == 1 else "")


def accuracy_range(values: Sequence[tuple], min_width: float = 10.0) -> tuple:
    """A y-range (in %) around ``(accuracy, std)`` pairs at least ``min_width`` points
    wide, so that a gap within run-to-run noise does not fill the plot."""
    low = min(a - s for a, s in values)
    high = max(a + s for a, s in values)
    middle, half = (low + high) / 2, max(min_width / 2, (high - low) / 2 + 2.0)
    return max(0.0, middle - half), min(100.0, middle + half)


def size_plot(records: Sequence[Dict[str, Any]], path: Union[str, Path]) -> Path:
    """Only the size-vs-accuracy plot of ``records`` (e.g. from ``results/``: mean and
    ``scores_std`` over seeds), written to ``path``."""
    matplotlib = require("matplotlib", "report", "the size-vs-accuracy plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("no system records to plot")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _size_plot(plt, records, Path(path))
    return Path(path)


def _size_plot(plt, records: Sequence[Dict[str, Any]], path: Path) -> None:
    """MASC accuracy against parameters: error bars where seeds exist (``scores_std``),
    a y-range of at least 10 points so a gap within noise does not look large, plain
    tick labels."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    points = [
        (r["name"], r["params_m"], acc, _get(r, "scores_std.mulcot_masc_acc") or 0.0)
        for r in records
        if (acc := _get(r, "scores.mulcot_masc_acc")) is not None and r.get("params_m")
    ]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    placed: List[tuple] = []
    for name, params, acc, std in points:
        ax.errorbar(params, acc, yerr=std or None, fmt="o", capsize=4, ms=6)
        # Systems of one size (a student and its control) get their labels stacked.
        clash = sum(abs(params - p) / p < 0.05 and abs(acc - a) < 1.5 for p, a in placed)
        ax.annotate(name, (params, acc), textcoords="offset points", xytext=(8, 6 - 11 * clash), fontsize=8)
        placed.append((params, acc))
    if points:
        sizes = [p for _, p, _, _ in points]
        if max(sizes) / min(sizes) > 10:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(sizes) * 0.7, max(sizes) * 1.4)
        ax.set_ylim(*accuracy_range([(a, s) for _, _, a, s in points]))
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("MASC acc (%)" + (", mean ± std" if any(s for *_, s in points) else ""))
    ax.set_title(f"Size vs accuracy\n{corpus_label(records)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
