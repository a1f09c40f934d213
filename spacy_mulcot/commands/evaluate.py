"""Scoring commands: task scores of a pipeline (evaluate), the distillation report's
records (benchmark, zero-shot) and report itself, and an HTML page of posts (render)."""

import json
from pathlib import Path
from typing import List, Optional

import spacy
import typer

from ..atomic import write_json, write_text
from ..readers import read_docbin
from .common import fail, load_or_exit, one_line


def render(
    corpus: Path = typer.Argument(..., help="A .spacy file (gold aspects, images, teacher chains)"),
    output: Path = typer.Argument(..., help="HTML file to write"),
    model: Optional[str] = typer.Option(
        None, help="A trained pipeline: its predictions (text + image) beside the gold"
    ),
    chains: bool = typer.Option(False, "--chains", help="With --model: generate its chains too (slow on CPU)"),
    limit: int = typer.Option(20, help="How many posts"),
    title: str = typer.Option("", help="Page title (default: the corpus file)"),
    image_dir: Optional[Path] = typer.Option(
        None, help="Re-root image paths (file names kept): the corpus's paths are relative to where it was made"
    ),
):
    """An HTML page: each post's image, its aspects in polarity colours (gold, and the
    model's predictions with --model), the post sentiment, and the chains, collapsible.
    An image that cannot be read is named on the page and reported here."""
    from itertools import islice

    from ..engines.shards import load_pipeline
    from ..readers.corpus import make_example, rerooted
    from ..render import render_page, summary

    # The model predicts posts whose image is unreadable from their text (and says so).
    nlp = load_or_exit(lambda: load_pipeline(model, "skip"), model) if model else spacy.blank("en")
    gold = list(islice(read_docbin(corpus, nlp), limit))
    for doc in gold:
        moved = rerooted(doc, image_dir)
        if moved is not None:
            doc._.image = moved
    predicted = None
    if model:
        inputs = [make_example(d, given_aspects=False, rationales=False).predicted for d in gold]
        cfg = {"mulcot": {"generate_reasoning": chains}} if "mulcot" in nlp.pipe_names else {}
        predicted = list(nlp.pipe(inputs, component_cfg=cfg))
    output.parent.mkdir(parents=True, exist_ok=True)
    problems: List[str] = []  # filled as the page is made: each image is read once
    write_text(output, render_page(gold, predicted, title=title or str(corpus), problems=problems))
    counts = summary(gold, predicted)
    if problems:
        counts["unreadable_images"] = len(problems)
        hint = "" if image_dir else "; --image-dir FOLDER re-roots the paths if the images moved"
        typer.echo(f"warning: {len(problems)} of {len(gold)} images could not be read{hint}", err=True)
        for problem in problems[:5]:
            typer.echo(f"  {problem}", err=True)
    typer.echo(f"{output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


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
    from ..engines.shards import load_pipeline
    from ..evaluation.systems import evaluate_pipeline
    from ..images import ImageError

    # on_error raise: a missing image stops the run (scores without it would differ).
    nlp = load_or_exit(lambda: load_pipeline(model, "raise"), model)
    try:
        result = evaluate_pipeline(nlp, corpus, image_dir=image_dir, rationales=rationales, batch_size=batch_size)
    except ImageError as err:
        hint = "" if image_dir else "; --image-dir FOLDER re-roots the corpus's image paths if the images moved"
        fail(f"{one_line(err)}{hint}")
    typer.echo(f"{corpus}: {result['n_posts']} posts, {result['n_gold_aspects']} gold aspects")
    for key, value in result["scores"].items():
        typer.echo(f"{key:<22} {'-' if value is None else f'{value:.2f}'}")
    if output is not None:
        write_json(output, {"model": model, "corpus": str(corpus), **result})


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
    from ..evaluation.systems import evaluate_system

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
    write_json(output, record)
    typer.echo(
        json.dumps(
            {k: record.get(k) for k in ("name", "scores", "reasoning", "params_m", "docs_per_s", "peak_rss_mb")},
            indent=2,
        )
    )


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
    from ..teacher.zero_shot import zero_shot_system

    record = zero_shot_system(model, corpus, name=name or None, sample=sample, seed=seed, max_new_tokens=max_new_tokens)
    write_json(output, record)
    typer.echo(
        json.dumps({k: record.get(k) for k in ("name", "scores", "reasoning", "params_m", "docs_per_s")}, indent=2)
    )


def report(
    records: List[Path] = typer.Argument(..., help="JSON records from `benchmark` / `zero-shot`, in table order"),
    output_dir: Path = typer.Option(..., help="Writes report.md, report.json, confusion.png, size_vs_accuracy.png"),
):
    """The distillation report: a Markdown table and plots comparing the systems."""
    from ..report import write_report

    missing = [str(p) for p in records if not p.exists()]
    if missing:
        raise typer.BadParameter(f"missing records: {', '.join(missing)}")
    paths = write_report([json.loads(p.read_text()) for p in records], output_dir)
    typer.echo(paths["markdown"].read_text().split("\n\n")[1])
    typer.echo(f"{output_dir}: " + ", ".join(p.name for p in paths.values()))


#: The commands this module adds to the app, by name.
COMMANDS = {"render": render, "evaluate": evaluate, "benchmark": benchmark, "zero-shot": zero_shot, "report": report}
