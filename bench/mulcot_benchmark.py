"""Accuracy and speed of a trained ``mulcot`` pipeline on a test corpus.

Accuracy: ``spacy_mulcot.evaluation.systems`` (the ``evaluate`` CLI): one pass over the
corpus in both modes (aspects extracted: MATE, JMASA; gold aspects given: MASC),
without the teacher chains (they were written knowing the gold label). Speed: ``nlp.pipe`` over the same posts built from text and image only,
image encoder included (its cache cleared before every run), median of ``--runs``.
Peak memory is the process's maximum RSS. Run one process per model.

    python bench/mulcot_benchmark.py training/cpu/model-best corpus/twitter2015/sentence/test.spacy \
        --name "mulcot (text+image)" --output metrics/cpu_test.json
"""

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer
from _report import machine, write_report

from spacy_mulcot.evaluation.systems import count_parameters, evaluate_pipeline, peak_rss_mb, throughput
from spacy_mulcot.readers import read_docbin


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
    quiet = {"mulcot": {"generate_reasoning": False}} if "mulcot" in nlp.pipe_names else None
    start = time.perf_counter()
    evaluation = evaluate_pipeline(nlp, corpus, image_dir=image_dir, batch_size=batch_size, component_cfg=quiet)
    eval_s = time.perf_counter() - start
    posts = list(read_docbin(corpus, nlp))
    rates = throughput(nlp, posts, runs=runs, batch_size=batch_size, image_dir=image_dir, component_cfg=quiet)
    params = count_parameters(nlp)
    result = {
        "name": name or str(model),
        "model": str(model),
        "corpus": str(corpus),
        "n_posts": evaluation["n_posts"],
        "n_gold_aspects": evaluation["n_gold_aspects"],
        "scores": evaluation["scores"],
        "params": params,
        "params_m": round(params / 1e6, 2),
        "docs_per_s": round(statistics.median(rates), 2),
        "docs_per_s_runs": [round(r, 2) for r in rates],
        "eval_seconds": round(eval_s, 1),
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
        "torch": torch.__version__,
    }
    typer.echo(json.dumps(result, indent=2))
    write_report(result, output)


if __name__ == "__main__":
    typer.run(main)
