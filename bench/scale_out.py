"""Scale-out of batch prediction over Ray actors on this machine.

Writes a JSONL of ``--n`` posts (text + image, from a .spacy corpus; repeated if the
corpus is smaller), then predicts it: one process (``--engine local``: the reference
output), Ray with one 1-CPU actor, Ray with two, and Ray with two where one worker is
SIGKILLed mid-run. Reports seconds, docs/s, the 2-vs-1 worker ratio and whether each
output is identical to the one-process output (record for record).

    python bench/scale_out.py training/mulcot_cpu/model-best corpus/twitter2015/sentence/train.spacy \\
        --n 2000 --output metrics/scale_out.json
"""

import json
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Optional

import spacy
import typer
from _report import machine

from spacy_mulcot.atomic import write_json
from spacy_mulcot.engines.ray_engine import run_shards
from spacy_mulcot.engines.shards import Settings, load_pipeline, predict_in_shards
from spacy_mulcot.predict import RecordWriter, predict, read_posts
from spacy_mulcot.readers import read_docbin


def write_posts(corpus: Path, n: int, path: Path) -> Path:
    docs = list(read_docbin(corpus, spacy.blank("en")))
    image_dirs = {str(Path(d._.image.path).parent) for d in docs if d._.image is not None}
    if len(image_dirs) > 1:
        raise ValueError(f"images in several folders: {sorted(image_dirs)[:3]}")
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            doc = docs[i % len(docs)]
            record = {"text": doc.text}
            if doc._.image is not None:
                record["image"] = Path(doc._.image.path).name
            f.write(json.dumps(record) + "\n")
    return Path(image_dirs.pop())


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder"),
    corpus: Path = typer.Argument(..., help=".spacy corpus the posts come from"),
    n: int = typer.Option(2000, help="Posts to predict"),
    batch_size: int = typer.Option(32, help="nlp.pipe batch size"),
    shard_size: int = typer.Option(128, help="Posts per shard"),
    kill_after: float = typer.Option(20.0, help="Seconds into the killed run when one worker is killed"),
    work_dir: Path = typer.Option(Path("metrics/scale_out"), help="Where inputs and outputs go"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    work_dir.mkdir(parents=True, exist_ok=True)
    posts = work_dir / "posts.jsonl"
    image_dir = write_posts(corpus, n, posts)
    settings = Settings(batch_size=batch_size, image_dir=str(image_dir))
    rows = []

    start = time.perf_counter()
    nlp = load_pipeline(str(model), "raise")
    docs = list(read_posts(posts, nlp, image_dir=image_dir))
    reference = work_dir / "local.jsonl"
    writer = RecordWriter(reference, "jsonl")
    predict(nlp, docs, writer, batch_size=batch_size, progress=False)
    writer.close()
    seconds = time.perf_counter() - start
    rows.append({"run": "one process (local engine, 2 torch threads)", "seconds": round(seconds, 1)})
    del nlp, docs
    expected = reference.read_text()

    def ray_run(name: str, workers: int, kill: bool = False):
        out = work_dir / f"ray_{workers}{'_killed' if kill else ''}.jsonl"
        killed = []
        ready = []

        def on_start(pids):
            ready.append(time.perf_counter())  # the cluster is up, every actor has loaded the pipeline
            if kill:

                def shoot():
                    try:
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
                    except ProcessLookupError:
                        pass  # the run was over: the row shows no kill

                threading.Timer(kill_after, shoot).start()

        run = partial(run_shards, str(model), settings=settings, workers=workers, on_start=on_start)
        begin = time.perf_counter()
        summary = predict_in_shards(
            posts, out, "jsonl", settings, run, model=str(model), shard_size=shard_size, progress=False
        )
        seconds = time.perf_counter() - begin
        row = {
            "run": name,
            "seconds": round(seconds, 1),
            "startup_seconds": round(ready[0] - begin, 1),
            "predict_seconds": round(seconds - (ready[0] - begin), 1),
            "identical_to_one_process": out.read_text() == expected,
            "posts": summary["posts"],
            "worker_pids": summary["workers"],
        }
        if kill:
            row["killed_pid"] = killed
        rows.append(row)
        typer.echo(json.dumps(row))

    ray_run("ray, 1 actor x 1 CPU", 1)
    ray_run("ray, 2 actors x 1 CPU", 2)
    ray_run("ray, 2 actors x 1 CPU, one SIGKILLed", 2, kill=True)
    for row in rows:
        row["docs_per_s"] = round(n / row["seconds"], 1)
    one = next(r for r in rows if r["run"].startswith("ray, 1"))
    two = next(r for r in rows if r["run"] == "ray, 2 actors x 1 CPU")
    result = {
        "n_posts": n,
        "rows": rows,
        "two_vs_one_worker": round(one["seconds"] / two["seconds"], 2),
        "two_vs_one_worker_after_startup": round(one["predict_seconds"] / two["predict_seconds"], 2),
        "note": "seconds include starting the local Ray cluster and loading the pipeline in each actor "
        "(startup_seconds); predict_seconds is the rest",
        "machine": machine(),
    }
    typer.echo(json.dumps(result, indent=2))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, result)


if __name__ == "__main__":
    typer.run(main)
