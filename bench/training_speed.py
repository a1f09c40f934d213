"""End-to-end training time of a config, this checkout against another commit's code,
side by side in one run (interleaved: base, new, base, new, …), so the host's drift
between minutes hits both sides alike.

Each run is a whole ``python -m spacy train`` (initialization, ``--steps`` steps,
evaluations, saving), in a fresh process, with the config as each side ships it:

    python bench/training_speed.py --base 2f0e895 --config configs/mulcot_cpu.cfg \\
        --steps 400 --runs 1 --output metrics/training_speed.json

The base side runs from a git worktree of ``--base`` in ``$MULCOT_CACHE/worktrees``
(imported first on PYTHONPATH), with the same environment. Dev scores of short runs
are printed but are not a comparison: use the seed runner for that
(``python -m spacy_mulcot experiment``).
"""

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit  # noqa: E402


def main(
    base: str = typer.Option(..., help="Git ref of the code to compare with (e.g. main's commit before a change)"),
    config: str = typer.Option("configs/mulcot_cpu.cfg", help="Config path, as each side ships it"),
    train: Path = typer.Option(Path("corpus/twitter2015/sentence/train.spacy"), help="Train corpus"),
    dev: Path = typer.Option(Path("corpus/twitter2015/sentence/dev.spacy"), help="Dev corpus"),
    steps: int = typer.Option(200, help="Training steps per run"),
    eval_frequency: Optional[int] = typer.Option(
        None, help="Dev evaluation every N steps (default: each side's config)"
    ),
    runs: int = typer.Option(2, help="Runs per side (interleaved)"),
    override: List[str] = typer.Option([], help="Extra `spacy train` overrides for both sides, KEY=VALUE"),
    output: Optional[Path] = typer.Option(None, help="JSON report"),
):
    from spacy_mulcot.compute import cpu_label, describe_cpu
    from spacy_mulcot.experiments import ROOT, _run, code_root, git_commit, module_cmd

    sides = {"base": code_root(base), "new": ROOT}
    commits = {name: git_commit(path) for name, path in sides.items()}
    times = {name: [] for name in sides}
    scores = {name: [] for name in sides}
    extra = []
    for item in override:
        key, _, value = item.partition("=")
        extra += [f"--{key}", value]
    for run in range(runs):
        for name, code in sides.items():
            env = dict(os.environ)
            if code != ROOT:
                env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            with tempfile.TemporaryDirectory() as tmp:
                cmd = module_cmd(code, "spacy", "train", str(code / config), "--output", tmp)
                cmd += ["--paths.train", str(train.resolve()), "--paths.dev", str(dev.resolve())]
                cmd += ["--training.max_steps", str(steps), "--training.optimizer.learn_rate.total_steps", str(steps)]
                if eval_frequency:
                    cmd += ["--training.eval_frequency", str(eval_frequency)]
                cmd += extra
                timing = _run(cmd, Path.cwd(), Path(tmp) / "train.log", env)
                meta = json.loads((Path(tmp) / "model-best" / "meta.json").read_text())
            times[name].append(timing)
            scores[name].append(meta.get("performance", {}))
            typer.echo(f"run {run + 1} {name}: {timing['wall_s']:.0f} s wall, {timing['cpu_s']:.0f} s CPU", err=True)
    med = {name: statistics.median(t["wall_s"] for t in ts) for name, ts in times.items()}
    report = {
        "config": config,
        "steps": steps,
        "eval_frequency": eval_frequency,
        "overrides": override,
        "cpu": describe_cpu(),
        "cpu_label": cpu_label(),
        "commits": commits,
        "runs": times,
        "median_wall_s": med,
        "speedup": round(med["base"] / med["new"], 2),
        "pairwise_speedups": [round(b["wall_s"] / n["wall_s"], 2) for b, n in zip(times["base"], times["new"])],
        "dev_scores_short_runs": scores,
    }
    typer.echo(
        f"{config}, {steps} steps: base {med['base']:.0f} s, new {med['new']:.0f} s → {report['speedup']}x "
        f"(pairs {report['pairwise_speedups']}) on {cpu_label()}",
        err=True,
    )
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
