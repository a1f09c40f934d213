"""Experiment commands: the seed runner (experiment) and the tables it feeds (results)."""

from pathlib import Path
from typing import List, Optional

import typer

from .common import fail


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
    from ..experiments import DEFAULT_RECIPES, DEFAULT_RESULTS, run_experiment

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
    except RuntimeError as e:  # a training or scoring step failed: its command and log tail
        fail(str(e))
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


def results(
    results_dir: Optional[Path] = typer.Argument(None, help="results/ (default: the project's)"),
    names: List[str] = typer.Option([], "--name", help="Only these results names, in this order"),
    update: List[Path] = typer.Option([], help="Rewrite the <!-- results:BLOCK --> block of these files"),
    block: str = typer.Option("twitter2015", help="The dataset (twitter2015, mvsa-single): its tables and block name"),
    plot: Optional[Path] = typer.Option(
        None, help="Also draw MASC accuracy (mean ± std) against parameters as a PNG here (aspect-level data)"
    ),
    marker: Optional[str] = typer.Option(
        None, help="The <!-- results:MARKER --> block to rewrite (default: the dataset's name)"
    ),
    compare: List[str] = typer.Option([], help="A:B — add A − B paired by seed (repeat for more pairs)"),
):
    """results/ as markdown tables: mean ± std over seeds (n), test and dev, train time,
    docs/s, parameters, CPU and commits. Nothing in them is typed by hand."""
    from ..experiments import DEFAULT_RESULTS
    from ..results import render, update_block

    pairs = []
    for pair in compare:
        first, sep, second = pair.partition(":")
        if not (sep and first and second):
            raise typer.BadParameter(f"--compare takes A:B (two results names), got {pair!r}")
        pairs.append((first, second))
    try:
        text = render(results_dir or DEFAULT_RESULTS, names or None, dataset=block, compare=pairs)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(text)
    for path in update:
        try:
            changed = update_block(path, marker or block, text)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        typer.echo(f"{path}: {'updated' if changed else 'unchanged'}", err=True)
    if plot is not None:
        from ..report import size_plot
        from ..results import plot_records

        try:
            records = plot_records(results_dir or DEFAULT_RESULTS, names or None, dataset=block)
        except (FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e)) from e
        typer.echo(f"{size_plot(records, plot)}: {len(records)} systems", err=True)


def ship(
    source: Path = typer.Argument(
        ..., help="A seed's record (results/NAME/seed-N.json: its model and scores) or a trained pipeline folder"
    ),
    name: str = typer.Option("twitter-fast", help="The shipped model's name (spacy_mulcot/models/NAME)"),
):
    """Put a trained pipeline inside the package as a shipped model (replacing the one of
    that name), with its scores and provenance in meta.json: what `spacy_mulcot.load()`,
    `predict` and `serve` use when no model is named."""
    import json

    from ..shipped import ship as ship_model

    record = None
    pipeline = source
    if source.suffix == ".json":
        record = json.loads(source.read_text(encoding="utf-8"))
        pipeline = Path(record["cache"]) / "training" / "model-best"
        if not pipeline.exists():
            raise typer.BadParameter(f"{source}: its model {pipeline} is not on this machine; rerun the seed")
    path = ship_model(pipeline, name, record)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    test = (meta.get("mulcot") or {}).get("test", {}).get("scores") or {}
    shown = ("mulcot_masc_acc", "mulcot_masc_macro_f", "mulcot_mate_f", "mulcot_jmasa_f", "mulcot_msc_acc")
    scores = ", ".join(f"{k.removeprefix('mulcot_')} {test[k]:.1f}" for k in shown if test.get(k) is not None)
    typer.echo(f"{path}: {meta['size_mb']} MB" + (f"; test {scores}" if scores else ""))


#: The commands this module adds to the app, by name.
COMMANDS = {"experiment": experiment, "results": results, "ship": ship}
