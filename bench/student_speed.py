"""Several pipelines side by side on the same posts: docs/s of ``nlp.pipe`` from text
and image files (aspects extracted, image caches cleared before every run), the
pipelines taking turns run after run so that a noisy host slows them alike; medians,
ratios to the first pipeline, parameters, size on disk and (``--memory``) each
pipeline's peak resident memory, loaded and run over the posts alone in a fresh process.

Speed does not depend on the weights, so a pipeline trained for a few steps measures
the same as a fully trained one of that config.

    python bench/student_speed.py corpus/twitter2015/sentence/test.spacy \\
        REFERENCE_MODEL spacy_mulcot/models/twitter-fast --runs 5 --output results/bench/student_speed.json
"""

import multiprocessing
import resource
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List, Optional

import spacy
import typer
from _report import emit

from spacy_mulcot.compute import describe_cpu
from spacy_mulcot.evaluation.systems import count_parameters, throughput
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example
from spacy_mulcot.shipped import folder_mb


def load(model: str, micro_batch: int = 0):
    """The pipeline, with its image encoder's micro-batch set when ``micro_batch`` > 0."""
    if micro_batch > 0:
        return spacy.load(model, config={"components": {"mulcot_image": {"encoder": {"micro_batch": micro_batch}}}})
    return spacy.load(model)


def peak_mb(model: str, corpus: str, limit: int, batch_size: int, micro_batch: int = 0) -> float:
    """Peak resident memory (MB) of a process that loads ``model`` and runs it over the
    posts once (run in a fresh process: the pipelines must not share one peak)."""
    nlp = load(model, micro_batch)
    posts = list(read_docbin(Path(corpus), nlp))
    posts = posts[:limit] if limit else posts
    posts = [make_example(d, given_aspects=False, rationales=False).predicted for d in posts]  # as timed
    for _ in nlp.pipe(posts, batch_size=batch_size, component_cfg={"mulcot": {"generate_reasoning": False}}):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy corpus (text, image paths)"),
    models: List[Path] = typer.Argument(..., help="Pipeline folders; ratios are to the first"),
    runs: int = typer.Option(5, help="Runs per pipeline (they alternate)"),
    limit: int = typer.Option(0, help="Only the first N posts (0: all)"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
    memory: bool = typer.Option(False, help="Also each pipeline's peak memory, alone in a fresh process"),
    micro_batch: List[int] = typer.Option(
        [],
        help="Images per encoder pass for the pipelines after the first: one value for all of them, or one per "
        "pipeline, in order (0: as saved; 16 suits 96-128 px, 32 suits 64 px)",
    ),
):
    after_first = len(models) - 1
    if any(mb < 0 for mb in micro_batch):
        raise typer.BadParameter(f"micro-batches must be >= 0, got {micro_batch}", param_hint="--micro-batch")
    if len(micro_batch) > 1 and len(micro_batch) != after_first:
        raise typer.BadParameter(
            f"{len(micro_batch)} micro-batches for {after_first} pipelines after the first: give one, or one each",
            param_hint="--micro-batch",
        )
    if len(micro_batch) <= 1:  # none (0: as saved) or one for all
        micro_batch = (micro_batch or [0]) * after_first
    micro = [0, *micro_batch]  # the first pipeline (the reference) runs as saved
    # Memory first: a child's peak (ru_maxrss) starts at its parent's resident size when
    # it is forked, so it must be forked before this process holds any pipeline.
    peaks = [None] * len(models)
    if memory:
        spawn = multiprocessing.get_context("spawn")
        for i, model in enumerate(models):
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                peaks[i] = round(pool.submit(peak_mb, str(model), str(corpus), limit, batch_size, micro[i]).result())
    pipelines = [load(str(m), mb) for m, mb in zip(models, micro)]
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
        "micro_batch_after_first": [mb or "as saved" for mb in micro[1:]],
        "cpu": describe_cpu(),
        "pipelines": [
            {
                "model": str(model),
                "docs_per_s": round(median, 1),
                "docs_per_s_runs": [round(r, 1) for r in rate],
                "ratio_to_first": round(median / medians[0], 2),
                "params_m": round(count_parameters(nlp) / 1e6, 2),
                "size_mb": folder_mb(model),
                "peak_mb": peak,
            }
            for model, nlp, rate, median, peak in zip(models, pipelines, rates, medians, peaks)
        ],
    }
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
