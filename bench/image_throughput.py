"""Throughput of ``mulcot_image`` over a corpus: docs/s, median of several runs,
batched vs one-by-one and fp32 vs bf16, measured side by side in one process.

    python bench/image_throughput.py corpus/twitter2015/sentence/test.spacy --output metrics/image_throughput.json
"""
import json
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer

from spacy_mulcot.readers import read_docbin


def main(
    corpus: Path = typer.Argument(..., help=".spacy file whose docs have images"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
    limit: int = typer.Option(256, help="Docs per run"),
    runs: int = typer.Option(3, help="Runs per setting (median reported)"),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)"),
):
    if threads:
        torch.set_num_threads(threads)
    nlp0 = spacy.blank("en")
    docs = [d for _, d in zip(range(limit), read_docbin(corpus, nlp0))]
    settings = [("fp32", 32), ("fp32", 1), ("bf16", 32), ("bf16", 1)]
    results = {}
    for dtype, batch in settings:
        nlp = spacy.blank("en")
        comp = nlp.add_pipe("mulcot_image", config={"encoder": {"@architectures": "mulcot.EfficientNetLite0.v1", "dtype": dtype}, "cache_size": 0})
        list(nlp.pipe([nlp.make_doc("warm up")], batch_size=1))
        times = []
        for _ in range(runs):
            fresh = [nlp.make_doc(d.text) for d in docs]
            for f, d in zip(fresh, docs):
                f._.image = d._.image.path
            start = time.perf_counter()
            for _doc in nlp.pipe(fresh, batch_size=batch):
                pass
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        results[f"{dtype}_batch{batch}"] = {"docs_per_s": len(docs) / med, "median_s": med, "runs_s": times, "encoded": comp.n_encoded // runs}
        typer.echo(f"{dtype} batch={batch}: {len(docs) / med:.1f} docs/s (median of {runs})")
    base = results["fp32_batch1"]["docs_per_s"]
    for key, value in results.items():
        value["ratio_vs_fp32_batch1"] = value["docs_per_s"] / base
    report = {
        "corpus": str(corpus), "docs": len(docs), "runs": runs, "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "results": results,
    }
    typer.echo(json.dumps({k: round(v["ratio_vs_fp32_batch1"], 2) for k, v in results.items()}))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
