"""Accuracy and speed of a trained ``mulcot`` pipeline on a test corpus.

Accuracy: ``spacy_mulcot.evaluation`` (the ``evaluate`` CLI): one pass over the
corpus in both modes (aspects extracted: MATE, JMASA; gold aspects given: MASC),
without the teacher chains (they were written knowing the gold label). Speed: ``nlp.pipe`` over the same posts built from text and image only,
image encoder included (its cache cleared before every run), median of ``--runs``.
Peak memory is the process's maximum RSS. Run one process per model.

    python bench/mulcot_benchmark.py training/cpu/model-best corpus/twitter2015/sentence/test.spacy \
        --name "mulcot (text+image)" --output metrics/cpu_test.json
"""
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer

from _report import machine, write_report

from spacy_mulcot.evaluation import evaluate_pipeline
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder"),
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy test corpus"),
    name: str = typer.Option("", help="Row name in the results table"),
    image_dir: Optional[Path] = typer.Option(None, help="Re-root image paths"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
    runs: int = typer.Option(3, help="Throughput runs (median reported)"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
):
    nlp = spacy.load(model)
    image = nlp.get_pipe("mulcot_image") if "mulcot_image" in nlp.pipe_names else None
    start = time.perf_counter()
    evaluation = evaluate_pipeline(nlp, corpus, image_dir=image_dir, batch_size=batch_size)
    eval_s = time.perf_counter() - start
    posts = list(read_docbin(corpus, nlp))
    timings = []
    for run in range(runs):
        if image is not None:
            image.clear_cache()
        fresh = [make_example(doc, given_aspects=False, image_dir=image_dir, rationales=False).predicted for doc in posts]
        start = time.perf_counter()
        for _ in nlp.pipe(fresh, batch_size=batch_size):
            pass
        timings.append(time.perf_counter() - start)
        typer.echo(f"run {run + 1}/{runs}: {len(posts) / timings[-1]:.1f} docs/s", err=True)
    result = {
        "name": name or str(model),
        "model": str(model),
        "corpus": str(corpus),
        "n_posts": evaluation["n_posts"],
        "n_gold_aspects": evaluation["n_gold_aspects"],
        "scores": evaluation["scores"],
        "docs_per_s": round(len(posts) / statistics.median(timings), 2),
        "docs_per_s_runs": [round(len(posts) / t, 2) for t in timings],
        "eval_seconds": round(eval_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine(),
        "torch": torch.__version__,
    }
    typer.echo(json.dumps(result, indent=2))
    write_report(result, output)


if __name__ == "__main__":
    typer.run(main)
