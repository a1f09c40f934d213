"""Throughput of ``mulcot_image`` over a corpus: docs/s, median of several runs,
batched vs one-by-one and fp32 vs bf16, measured side by side in one process.

    python bench/image_throughput.py corpus/twitter2015/sentence/test.spacy --output metrics/image_throughput.json --runs 5
"""

import json
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Optional

import numpy
import spacy
import torch
import typer
from _report import write_report

from spacy_mulcot.readers import read_docbin


def main(
    corpus: Path = typer.Argument(..., help=".spacy file whose docs have images"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
    limit: int = typer.Option(256, help="Docs per run"),
    runs: int = typer.Option(5, help="Runs per setting (median reported)"),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)"),
):
    if threads:
        torch.set_num_threads(threads)
    nlp0 = spacy.blank("en")
    docs = [d for _, d in zip(range(limit), read_docbin(corpus, nlp0))]
    settings = [("fp32", 1), ("fp32", 8), ("fp32", 32), ("bf16", 1), ("bf16", 8), ("bf16", 32)]
    pipelines = {}
    for dtype, batch in settings:
        nlp = spacy.blank("en")
        nlp.add_pipe(
            "mulcot_image",
            config={"encoder": {"@architectures": "mulcot.EfficientNetLite0.v1", "dtype": dtype}, "cache_size": 0},
        )
        warm = nlp.make_doc("warm up")
        warm._.image = docs[0]._.image.path
        nlp(warm)
        pipelines[(dtype, batch)] = nlp
    times = {key: [] for key in settings}
    # Round-robin over the settings, so that drift in the machine's speed hits all alike.
    for _ in range(runs):
        for (dtype, batch), nlp in pipelines.items():
            fresh = [nlp.make_doc(d.text) for d in docs]
            for f, d in zip(fresh, docs):
                f._.image = d._.image.path
            start = time.perf_counter()
            for _doc in nlp.pipe(fresh, batch_size=batch):
                pass
            times[(dtype, batch)].append(time.perf_counter() - start)
    results = {}
    for (dtype, batch), ts in times.items():
        med = statistics.median(ts)
        results[f"{dtype}_batch{batch}"] = {"docs_per_s": len(docs) / med, "median_s": med, "runs_s": ts}
        typer.echo(f"{dtype} batch={batch}: {len(docs) / med:.1f} docs/s (median of {runs})")
    # How far bf16 features are from fp32 ones (cosine of pooled vectors).
    images = [d._.image.load() for d in docs[:32]]
    fp32 = pipelines[("fp32", 8)].get_pipe("mulcot_image").encoder.encode(images)
    bf16 = pipelines[("bf16", 8)].get_pipe("mulcot_image").encoder.encode(images)
    cosines = [
        float(numpy.dot(a[1], b[1]) / (numpy.linalg.norm(a[1]) * numpy.linalg.norm(b[1]) + 1e-12))
        for a, b in zip(fp32, bf16)
    ]
    agreement = {"images": len(images), "min_cosine": min(cosines), "median_cosine": statistics.median(cosines)}
    typer.echo(f"bf16 vs fp32 pooled features: {agreement}")
    base = results["fp32_batch1"]["docs_per_s"]
    for key, value in results.items():
        value["ratio_vs_fp32_batch1"] = value["docs_per_s"] / base
    report = {
        "corpus": str(corpus),
        "docs": len(docs),
        "runs": runs,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": results,
        "bf16_vs_fp32": agreement,
    }
    typer.echo(json.dumps({k: round(v["ratio_vs_fp32_batch1"], 2) for k, v in results.items()}))
    write_report(report, output)


if __name__ == "__main__":
    typer.run(main)
