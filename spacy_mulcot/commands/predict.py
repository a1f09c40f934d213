"""Prediction commands: a pipeline over your posts (predict, local or Ray shards) and
the demo page with its JSON API (serve)."""

from pathlib import Path
from typing import List, Optional

import typer

from .. import pipelines
from ..atomic import write_text
from ..images import ImageError
from ..readers import ReadStats, RowError
from ..shipped import DEFAULT_MODEL, model_path, resolve_model
from .common import fail, left_as_was, load_or_exit, one_line


def predict_command(
    paths: List[str] = typer.Argument(
        ...,
        metavar="[MODEL] SOURCE OUTPUT",
        help="MODEL: a trained pipeline (folder, package or shipped model name; default: the shipped "
        f"{DEFAULT_MODEL!r}); SOURCE: posts as .csv (text[, image, aspects, id]), .jsonl, .spacy, or a folder "
        "of NAME.txt (+ NAME.jpg); OUTPUT: .jsonl (a record per post) or .csv (a row per aspect)",
    ),
    chains: bool = typer.Option(
        False, "--chains", help="Write a reasoning chain per aspect and post (needs a generator; slow on CPU)"
    ),
    on_error: str = typer.Option(
        "raise",
        help="raise | skip: a malformed record or unreadable image stops the run, or is reported (file and line) and skipped",
    ),
    image_dir: Optional[Path] = typer.Option(
        None, help="Base folder of relative image paths (default: the input's folder)"
    ),
    batch_size: int = typer.Option(32, min=1, help="Posts per nlp.pipe batch"),
    max_new_tokens: Optional[int] = typer.Option(None, min=1, help="Chain length limit (default: the pipeline's)"),
    output_format: Optional[str] = typer.Option(None, "--format", help="jsonl | csv (default: from OUTPUT's suffix)"),
    engine: str = typer.Option("local", help="local (this process) | ray (shards over Ray actors, fault-tolerant)"),
    workers: Optional[int] = typer.Option(
        None, min=1, help="ray: actors (default: the cluster's CPUs / --cpus-per-worker)"
    ),
    cpus_per_worker: int = typer.Option(1, min=1, help="ray: CPUs (and torch threads) per actor"),
    gpus_per_worker: float = typer.Option(0.0, help="ray: GPUs per actor"),
    address: Optional[str] = typer.Option(None, help="ray: cluster address (default: start a local one)"),
    shard_size: int = typer.Option(256, min=1, help="ray: posts per shard (a multiple of --batch-size)"),
    max_retries: int = typer.Option(3, min=0, help="ray: reruns of a shard whose worker died"),
    keep_shards: bool = typer.Option(False, "--keep-shards", help="ray: keep OUTPUT.shards/ after the merge"),
    code: Optional[Path] = typer.Option(None, help="Python file with custom components, imported before loading"),
):
    """Run a trained pipeline over your own posts: aspects (given or found), their
    polarity and probabilities, the post's sentiment and, with --chains, the reasoning.
    With --engine ray, the posts are cut into shards predicted by Ray actors (local or
    a cluster); a shard whose worker dies is run again, and a rerun resumes."""
    if len(paths) not in (2, 3):
        raise typer.BadParameter(f"expected [MODEL] SOURCE OUTPUT, got {len(paths)} arguments")
    model = resolve_model(paths[0]) if len(paths) == 3 else str(model_path(DEFAULT_MODEL))
    source, output = Path(paths[-2]), Path(paths[-1])
    from ..atomic import same_file
    from ..predict import (
        OUTPUT_FORMATS,
        RecordWriter,
        count_records,
        input_kind,
        predict,
        read_posts,
        require_generator,
    )

    if on_error not in ("raise", "skip"):
        raise typer.BadParameter(f"--on-error must be raise or skip, got {on_error!r}")
    fmt = output_format or output.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise typer.BadParameter(
            f"output format must be one of {OUTPUT_FORMATS} (from --format or OUTPUT's suffix), got {fmt!r}"
        )
    try:
        input_kind(source)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if not source.exists():
        raise typer.BadParameter(f"{source} does not exist")
    if same_file(source, output) or (source.is_dir() and output.resolve().parent == source.resolve()):
        # Writing OUTPUT would destroy (or, in a folder of posts, add to) the input.
        raise typer.BadParameter(f"OUTPUT {output} is the input {source} (or inside it): write the results elsewhere")
    if output.is_dir():
        raise typer.BadParameter(f"OUTPUT {output} is a folder: give a file name (.jsonl or .csv)")
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, got {engine!r}")
    if engine == "ray":
        _predict_with_ray(
            model, source, output, fmt, chains, on_error, image_dir, batch_size, max_new_tokens, workers,
            cpus_per_worker, gpus_per_worker, address, shard_size, max_retries, keep_shards, code,
        )  # fmt: skip
        return
    from ..engines.shards import load_pipeline

    # An unreadable image: skipped with a logged warning (doc._.image_error) or an error.
    nlp = load_or_exit(lambda: load_pipeline(model, on_error, str(code) if code is not None else None), model)
    if chains:
        try:
            require_generator(nlp)
        except ValueError as e:  # NoGeneratorError, or no mulcot component
            fail(str(e))
    stats = ReadStats()
    try:
        # Counted first (a cheap pass: JSON/CSV parsing, no tokenizing) for the progress
        # bar; the posts themselves are streamed, never all in memory.
        total = count_records(source)
        docs = read_posts(source, nlp, on_error=on_error, stats=stats, image_dir=image_dir)
        with RecordWriter(output, fmt) as writer:
            image_errors = predict(
                nlp, docs, writer, chains=chains, batch_size=batch_size, max_new_tokens=max_new_tokens, total=total
            )
    except (RowError, ImageError, OSError) as e:
        fail(f"{e}; {left_as_was(output)}")
    except KeyboardInterrupt:
        fail(f"interrupted; {left_as_was(output)}", code=130)
    for problem in stats.problems:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(
        f"{output}: {writer.posts} posts, {writer.aspects} aspects"
        + (f"; {stats.skipped} malformed records skipped" if stats.skipped else "")
        + (f"; {len(image_errors)} images could not be read (see image_error)" if image_errors else "")
    )


def _predict_with_ray(
    model, source, output, fmt, chains, on_error, image_dir, batch_size, max_new_tokens, workers,
    cpus_per_worker, gpus_per_worker, address, shard_size, max_retries, keep_shards, code,
) -> None:  # fmt: skip
    from functools import partial

    from ..engines.ray_engine import run_shards
    from ..engines.shards import Settings, predict_in_shards

    settings = Settings(chains, batch_size, on_error, str(image_dir) if image_dir else None, max_new_tokens)
    run = partial(
        run_shards,
        model,
        settings=settings,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        address=address,
        code=str(code) if code else None,
        max_retries=max_retries,
    )
    try:
        summary = predict_in_shards(
            source, output, fmt, settings, run, model=model, shard_size=shard_size, keep_shards=keep_shards
        )
    except KeyboardInterrupt:
        fail(f"interrupted; committed shards are kept in {output}.shards/: the same command resumes", code=130)
    except Exception as e:
        cause = getattr(e, "cause", None)  # Ray's RayTaskError: a worker's failure, its traceback long
        if cause is None:
            if isinstance(e, (RowError, ValueError, ImportError)):
                fail(one_line(e))
            raise
        import traceback

        log = output.with_name(output.name + ".error.log")
        write_text(log, "".join(traceback.format_exception(e)))
        fail(f"a worker failed: {type(cause).__name__}: {one_line(cause)} (full traceback: {log})")
    for problem in summary["problems"]:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(
        f"{output}: {summary['posts']} posts, {summary['aspects']} aspects; {summary['shards']} shards"
        + (f" ({summary['resumed']} done before)" if summary["resumed"] else "")
        + ("; stale shards of an earlier run were discarded" if summary.get("restarted") else "")
        + (f"; {summary['skipped']} malformed records skipped" if summary["skipped"] else "")
        + (f"; {summary['image_errors']} images could not be read" if summary["image_errors"] else "")
    )


def serve(
    model: str = typer.Argument(
        DEFAULT_MODEL, help="Trained pipeline (folder, package or shipped model name; default: the shipped one)"
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="Port"),
    max_image_mb: float = typer.Option(5.0, help="Largest image upload, in MB"),
    max_batch: int = typer.Option(32, min=1, help="Most posts per /api/batch request"),
    max_request_mb: float = typer.Option(20.0, help="Largest /api/batch body, in MB (counted as it arrives)"),
):
    """A demo web page (and a JSON API) for a trained pipeline: type a post, upload an
    image, see the aspects in polarity colours, the probabilities and the chains."""
    from ..extras import require
    from ..serve import create_app

    uvicorn = require("uvicorn", "serve", "the demo server")

    nlp = load_or_exit(lambda: pipelines.load_pipeline(resolve_model(model)), model)
    app_ = create_app(
        nlp,
        max_image_bytes=int(max_image_mb * 1_000_000),
        max_batch=max_batch,
        max_request_bytes=int(max_request_mb * 1_000_000),
    )
    typer.echo(f"serving {model} on http://{host}:{port}/ (JSON: POST /api/analyze, /api/batch)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


#: The commands this module adds to the app, by name.
COMMANDS = {"predict": predict_command, "serve": serve}
