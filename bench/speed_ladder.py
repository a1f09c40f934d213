"""Classification speed, one change at a time, with the accuracy each costs.

Rungs (each adds to the one before, all in this process, measured side by side):
fp32 everywhere, no decode threads → bf16 transformer (CPU autocast) → bf16 folded
image encoder → image decoding and resizing in worker threads (the defaults) →
``torch.compile`` on the image encoder (compiled in a warm-up pass, not timed) → a
smaller image size. Per rung:
docs/s of ``nlp.pipe`` over the posts (aspects extracted, images encoded, cache
cleared; median of ``--runs``) and the scores on ``--dev`` (accuracy changes are
judged on dev only). ``--baseline-code`` also runs an older checkout of this project
(a separate process, right after, same posts) on ``--baseline-model`` (that model with
a config the old code understands).

    python bench/speed_ladder.py training/mulcot_cpu/model-best \\
        corpus/twitter2015/sentence/test.spacy corpus/twitter2015/sentence/dev.spacy \\
        --output metrics/speed_ladder.json
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

import spacy
import typer
from _report import machine

from spacy_mulcot.atomic import write_json
from spacy_mulcot.evaluation.systems import evaluate_pipeline, throughput
from spacy_mulcot.readers import read_docbin

_FAST = {"transformer": "bfloat16", "encoder": "bfloat16", "threads": 2, "size": 224, "compile": False}
RUNGS = [
    ("fp32, inline decode", {**_FAST, "transformer": "float32", "encoder": "float32", "threads": 0}),
    ("+ bf16 transformer", {**_FAST, "encoder": "float32", "threads": 0}),
    ("+ bf16 folded image encoder", {**_FAST, "threads": 0}),
    ("+ decode/resize in 2 threads (default)", _FAST),
    ("+ compiled image encoder", {**_FAST, "compile": True}),
    ("+ 160 px images", {**_FAST, "compile": True, "size": 160}),
]
SCORES = ["masc_acc", "masc_macro_f", "mate_f", "jmasa_f"]


def load(model: Path, rung: dict):
    return spacy.load(
        model,
        config={
            "components": {
                "transformer": {"model": {"inference_dtype": rung["transformer"]}},
                "mulcot_image": {
                    "decode_threads": rung["threads"],
                    "encoder": {"dtype": rung["encoder"], "image_size": rung["size"], "compile": rung["compile"]},
                },
            }
        },
    )


def measure(nlp, posts, dev: Optional[Path], runs: int, batch_size: int) -> dict:
    quiet = {"mulcot": {"generate_reasoning": False}}
    throughput(nlp, posts[:128], runs=1, batch_size=batch_size, component_cfg=quiet)  # warm-up (and compile)
    rates = throughput(nlp, posts, runs=runs, batch_size=batch_size, component_cfg=quiet)
    row = {"docs_per_s": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates]}
    if dev is not None:
        scores = evaluate_pipeline(nlp, dev, batch_size=batch_size, component_cfg=quiet)["scores"]
        row["dev"] = {k: scores.get(f"mulcot_{k}") for k in SCORES}
    return row


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder"),
    corpus: Path = typer.Argument(..., help="Posts to time (sentence-view .spacy)"),
    dev: Optional[Path] = typer.Argument(None, help="Dev corpus for the accuracy of each rung"),
    runs: int = typer.Option(3, help="Throughput runs per rung (median)"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
    baseline_code: Optional[Path] = typer.Option(None, help="Older checkout to compare (its folder)"),
    baseline_model: Optional[Path] = typer.Option(None, help="The model with a config the old code reads"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the table"),
    only_baseline: bool = typer.Option(False, hidden=True),
):
    if only_baseline:  # the child process running the old code
        nlp = spacy.load(model)
        typer.echo(json.dumps(measure(nlp, list(read_docbin(corpus, nlp)), dev, runs, batch_size)))
        return
    rows = []
    for name, rung in RUNGS:
        nlp = load(model, rung)
        row = {"rung": name, **rung, **measure(nlp, list(read_docbin(corpus, nlp)), dev, runs, batch_size)}
        rows.append(row)
        typer.echo(json.dumps(row))
    if baseline_code is not None:
        env = {**os.environ, "PYTHONPATH": str(baseline_code.resolve())}
        args = [sys.executable, __file__, str(baseline_model or model), str(corpus)]
        args += [str(dev)] if dev else []
        args += ["--runs", str(runs), "--batch-size", str(batch_size), "--only-baseline"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        row = {"rung": f"previous code ({baseline_code.name})", **json.loads(done.stdout.strip().splitlines()[-1])}
        rows.insert(0, row)
        typer.echo(json.dumps(row))
    first = rows[0]["docs_per_s"]
    typer.echo("\n| rung | docs/s | × first | " + " | ".join(f"dev {k}" for k in SCORES) + " |")
    typer.echo("|---|---:|---:|" + "---:|" * len(SCORES))
    for row in rows:
        dev_scores = row.get("dev", {})
        cells = [f"{dev_scores.get(k, '–')}" for k in SCORES]
        typer.echo(
            f"| {row['rung']} | {row['docs_per_s']} | {row['docs_per_s'] / first:.2f} | " + " | ".join(cells) + " |"
        )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, {"rows": rows, "machine": machine(), "corpus": str(corpus)})


if __name__ == "__main__":
    typer.run(main)
