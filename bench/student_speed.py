"""Several pipelines side by side on the same posts: docs/s of ``nlp.pipe`` from text
and image files (aspects extracted, image caches cleared before every run), the
pipelines taking turns run after run so that a noisy host slows them alike; medians,
ratios to the first pipeline, parameters and size on disk.

Speed does not depend on the weights, so a pipeline trained for a few steps measures
the same as a fully trained one of that config.

    python bench/student_speed.py corpus/twitter2015/sentence/test.spacy \\
        REFERENCE_MODEL spacy_mulcot/models/twitter-fast --runs 5 --output results/bench/student_speed.json
"""

import statistics
from pathlib import Path
from typing import List, Optional

import spacy
import typer
from _report import emit

from spacy_mulcot.compute import describe_cpu
from spacy_mulcot.evaluation.systems import count_parameters, throughput
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.shipped import folder_mb


def main(
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy corpus (text, image paths)"),
    models: List[Path] = typer.Argument(..., help="Pipeline folders; ratios are to the first"),
    runs: int = typer.Option(5, help="Runs per pipeline (they alternate)"),
    limit: int = typer.Option(0, help="Only the first N posts (0: all)"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    pipelines = [spacy.load(m) for m in models]
    # Each pipeline reads the posts into its own vocab (its static vectors live there).
    posts = [list(read_docbin(corpus, nlp)) for nlp in pipelines]
    posts = [p[:limit] for p in posts] if limit else posts
    quiet = {"mulcot": {"generate_reasoning": False}}
    for nlp, own in zip(pipelines, posts):  # warm up: weights paged in, kernels chosen
        throughput(nlp, own[:64], runs=1, batch_size=batch_size, component_cfg=quiet)
    rates: List[List[float]] = [[] for _ in pipelines]
    for _ in range(runs):
        for i, (nlp, own) in enumerate(zip(pipelines, posts)):
            rates[i] += throughput(nlp, own, runs=1, batch_size=batch_size, component_cfg=quiet)
    medians = [statistics.median(r) for r in rates]
    report = {
        "corpus": str(corpus),
        "posts": len(posts[0]),
        "runs": runs,
        "cpu": describe_cpu(),
        "pipelines": [
            {
                "model": str(model),
                "docs_per_s": round(median, 1),
                "docs_per_s_runs": [round(r, 1) for r in rate],
                "ratio_to_first": round(median / medians[0], 2),
                "params_m": round(count_parameters(nlp) / 1e6, 2),
                "size_mb": folder_mb(model),
            }
            for model, nlp, rate, median in zip(models, pipelines, rates, medians)
        ],
    }
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
