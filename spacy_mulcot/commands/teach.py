"""Teacher commands: the two-stage chains of a large model (teach), and a trained
generator's LM exported for the student (export-generator)."""

import time
from pathlib import Path
from typing import Optional

import spacy
import typer

from ..atomic import atomic_dir, write_json
from ..doc_model import ASPECTS_KEY
from ..images import ImageError
from ..readers import read_docbin
from .common import write_docs


def teach(
    source: Path = typer.Argument(..., help=".spacy corpus (gold labels on the aspects for the two-stage check)"),
    output: Path = typer.Argument(..., help="Where to write the corpus with the teacher's chains"),
    backend: str = typer.Option(
        "openai",
        help="openai (any OpenAI-compatible server) | hf (a local transformers model) | none (keep the published chains only: a copy)",
    ),
    model: str = typer.Option("", help="Model name on the server, or an HF name/path for --backend hf"),
    base_url: Optional[str] = typer.Option(
        None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: OpenAI)"
    ),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key"),
    concurrency: int = typer.Option(4, help="Requests in flight at once (openai backend)"),
    timeout: float = typer.Option(120.0, help="Seconds per request"),
    request_retries: int = typer.Option(5, help="Retries (exponential backoff) of a request after 429/5xx/timeouts"),
    max_tokens: int = typer.Option(512, help="Reply length limit"),
    send_images: bool = typer.Option(
        True, help="Send images as data URLs (off: describe them in words for text-only models)"
    ),
    level: str = typer.Option("aspect", help="aspect (a chain per aspect, MASC) | post (MSC)"),
    two_stage: bool = typer.Option(True, help="Re-ask for the gold label where stage 1 disagrees"),
    max_retries: int = typer.Option(3, help="Stage-2 attempts per item"),
    keep_existing: bool = typer.Option(True, help="Keep chains already present (published ones)"),
    cache: Optional[Path] = typer.Option(
        None, help="Reply cache (SQLite); default $MULCOT_CACHE/teacher.sqlite (~/.cache/spacy-mulcot)"
    ),
    report: Optional[Path] = typer.Option(None, help="JSON run report (default: OUTPUT with .report.json)"),
    limit: int = typer.Option(0, help="Only the first N docs (0: all)"),
    on_error: str = typer.Option(
        "raise",
        help="raise | skip: a doc whose image cannot be read stops the run, or its items are skipped and counted as failed",
    ),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Run the teacher (two-stage CoT enhancement) over a corpus; every reply is cached
    as it arrives, so an interrupted run resumes without asking twice. Exits 1 (and
    writes no corpus) when the server was unreachable or when no item got a chain."""
    from ..teacher.component import DEFAULT_CACHE

    if backend == "none":
        docs = list(read_docbin(source, spacy.blank(lang)))
        n = write_docs(docs, output, "copy")
        have = sum(1 for d in docs for sp in d.spans.get(ASPECTS_KEY, []) if sp._.rationale)
        total = sum(len(d.spans.get(ASPECTS_KEY, [])) for d in docs)
        typer.echo(f"{output}: teacher skipped (--backend none); {n} docs, published chains for {have}/{total} aspects")
        return
    if not model:
        raise typer.BadParameter("--model is required unless --backend none")
    if on_error not in ("raise", "skip"):
        raise typer.BadParameter(f"--on-error must be raise or skip, got {on_error!r}")
    if backend == "openai":
        backend_cfg = {
            "@misc": "mulcot.OpenAICompatible.v1",
            "model": model,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "max_concurrency": concurrency,
            "timeout": timeout,
            "max_tokens": max_tokens,
            "send_images": send_images,
            "max_retries": request_retries,
        }
    elif backend == "hf":
        backend_cfg = {"@misc": "mulcot.HFLocal.v1", "model": model, "max_new_tokens": max_tokens}
    else:
        raise typer.BadParameter(f"--backend must be openai or hf, got {backend!r}")
    nlp = spacy.blank(lang)
    try:
        teacher = nlp.add_pipe(
            "mulcot_teacher",
            config={
                "backend": backend_cfg,
                "level": level,
                "two_stage": two_stage,
                "max_retries": max_retries,
                "keep_existing": keep_existing,
                "cache_path": str(cache or DEFAULT_CACHE),
                "on_error": on_error,
            },
        )
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    teacher.progress = True
    docs = list(read_docbin(source, nlp))
    if limit:
        docs = docs[:limit]
    start = time.perf_counter()
    try:
        run = teacher.annotate(docs)
    except ImageError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    result = run.to_dict()
    result.update(
        {
            "source": str(source),
            "output": str(output),
            "backend": teacher.backend.settings(),
            "wall_seconds": time.perf_counter() - start,
        }
    )
    report = report or output.with_suffix(".report.json")
    write_json(report, result)
    if run.aborted or run.transient_failures:
        why = run.aborted or f"{run.transient_failures} items failed because the server was unreachable or overloaded"
        typer.echo(
            f"error: {why}. Finished replies are cached; nothing written to {output}; "
            "run the same command again to resume.",
            err=True,
        )
        raise typer.Exit(1)
    if run.items and run.stages["failed"] == run.items:
        typer.echo(
            f"error: every one of the {run.items} items failed (first: {run.failures[0]}); "
            f"nothing written to {output}; see {report}.",
            err=True,
        )
        raise typer.Exit(1)
    if run.stages["failed"]:
        typer.echo(f"warning: {run.stages['failed']} of {run.items} items got no chain (see {report})", err=True)
    write_docs(docs, output, "write")
    stages = ", ".join(f"{k} {v}" for k, v in run.stages.items())
    typer.echo(
        f"{output}: {len(docs)} docs; items {run.items} ({stages}); requests {run.requests}, cache hits {run.cache_hits}, "
        f"tokens {run.prompt_tokens}+{run.completion_tokens}; report {report}"
    )


def export_generator(
    pipeline: Path = typer.Argument(..., help="A trained pipeline whose mulcot model has a generator"),
    output_dir: Path = typer.Argument(..., help="Folder for the HF causal LM and tokenizer"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
):
    """Save the trained generator's LM as a HF model folder, so a student's
    ``mulcot.ReasoningGenerator.v1`` can start from it (``name = OUTPUT_DIR``,
    optionally ``n_layers`` to keep fewer layers)."""
    from ..model import generator_of
    from ..reasoning.lm import merged

    nlp = spacy.load(pipeline)
    generator = generator_of(nlp.get_pipe(component).model)
    if generator is None:
        raise typer.BadParameter(f"{pipeline}: component {component!r} has no generator")
    lm = merged(generator.lm)  # LoRA adapters folded in: a plain HF model folder
    with atomic_dir(output_dir) as tmp:  # a half-written model folder is never left
        lm.save_pretrained(tmp)
        generator.tokenizer.save_pretrained(tmp)
    typer.echo(f"{output_dir}: {sum(p.numel() for p in lm.parameters()) / 1e6:.1f}M-parameter LM and tokenizer")


#: The commands this module adds to the app, by name.
COMMANDS = {"teach": teach, "export-generator": export_generator}
