"""Where a training step's time goes, stage by stage, for a `spacy train` config.

Runs spaCy's own training loop in this process for ``--steps`` steps with timers
around each stage (no code path changed):

- data loading: the train corpus reader (reading the DocBin, making examples);
- image decode + encode: ``mulcot_image`` as an annotating component (its cache
  makes later epochs cheap: the first epoch pays for every image);
- transformer forward / backward: the HF model inside spacy-transformers' shim;
- fusion network forward / backward: the mulcot network without its generator;
- generator forward / backward: the reasoning LM (assistant configs), from the LM's
  forward hooks and gradient hooks on its output logits and input embeddings;
- rationale encoder: the frozen sentence encoder over chain sections;
- optimizer: every component's ``finish_update``;
- dev evaluation: ``nlp.evaluate`` (per evaluation, not per step);
- other: the rest of the step (losses, padding, copies, spaCy's bookkeeping).

    python bench/profile_training.py configs/mulcot_cpu.cfg corpus/twitter2015/sentence/train.spacy \\
        corpus/twitter2015/sentence/dev.spacy --steps 60 --eval-frequency 30 --output metrics/profile_mulcot_cpu.json
"""

import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit  # noqa: E402

STAGES = (
    "data loading",
    "image decode + encode",
    "transformer forward",
    "transformer backward",
    "fusion network forward",
    "fusion network backward",
    "generator forward",
    "generator backward",
    "rationale encoder",
    "optimizer",
    "other",
)


class Timers:
    """Exclusive wall time per stage: a stage timed inside another pauses the outer one."""

    def __init__(self):
        self.total: Dict[str, float] = defaultdict(float)
        self.in_eval = 0
        self.step_times: List[float] = []
        self.eval_times: List[float] = []
        self.updates = 0
        self.warmup = 0
        self.first_step = 0.0
        self._stack: List[List] = []  # [stage, time the stage last resumed]

    def add(self, stage: str, seconds: float) -> None:
        if not self.in_eval:
            self.total[stage] += seconds

    def transfer(self, source: str, target: str, seconds: float) -> None:
        """Move time measured inside ``source`` to ``target`` (gradient hooks)."""
        self.add(source, -seconds)
        self.add(target, seconds)

    @contextmanager
    def time(self, stage: str):
        now = time.perf_counter()
        if self._stack:
            outer = self._stack[-1]
            self.add(outer[0], now - outer[1])
        self._stack.append([stage, now])
        try:
            yield
        finally:
            end = time.perf_counter()
            name, resumed = self._stack.pop()
            self.add(name, end - resumed)
            if self._stack:
                self._stack[-1][1] = end


def timed_method(timers: Timers, cls: type, attr: str, stage: str) -> None:
    """Time every call of ``cls.attr`` as ``stage``."""
    method = getattr(cls, attr)

    def timed(self, *args, **kwargs):
        with timers.time(stage):
            return method(self, *args, **kwargs)

    setattr(cls, attr, timed)


def install(timers: Timers) -> None:
    """Wrap the stages' entry points (class attributes: every instance is timed)."""
    import torch
    from spacy.language import Language
    from spacy_transformers.layers.hf_shim import HFShim

    from spacy_mulcot.components.image import ImageFeaturizer
    from spacy_mulcot.model.shim import MulcotShim
    from spacy_mulcot.rationale import RationaleEncoder
    from spacy_mulcot.readers.corpus import MulcotCorpus
    from spacy_mulcot.reasoning.generator import ReasoningGenerator

    corpus_call = MulcotCorpus.__call__

    def timed_corpus(self, nlp):
        it = iter(corpus_call(self, nlp))
        while True:
            with timers.time("data loading"):
                eg = next(it, None)
            if eg is None:
                return
            yield eg

    MulcotCorpus.__call__ = timed_corpus

    image_pipe = ImageFeaturizer.pipe

    def timed_image_pipe(self, stream, **kwargs):
        it = iter(image_pipe(self, stream, **kwargs))
        while True:
            with timers.time("image decode + encode"):
                doc = next(it, None)
            if doc is None:
                return
            yield doc

    ImageFeaturizer.pipe = timed_image_pipe

    timed_method(timers, RationaleEncoder, "encode", "rationale encoder")

    # Generator: forward by hooks on its LM; backward between the gradient reaching the
    # logits and reaching the input embeddings.
    gen_state = {"bwd_start": None}
    gen_forward = ReasoningGenerator._forward_chains

    def timed_forward_chains(self, prompts, chains, prefix):
        with timers.time("generator forward"):
            logits, positions, targets = gen_forward(self, prompts, chains, prefix)
        if logits.requires_grad and prefix.requires_grad:

            def at_logits(grad):
                gen_state["bwd_start"] = time.perf_counter()

            def at_prefix(grad):
                if gen_state["bwd_start"] is not None:
                    seconds = time.perf_counter() - gen_state["bwd_start"]
                    timers.transfer("fusion network backward", "generator backward", seconds)
                    gen_state["bwd_start"] = None

            logits.register_hook(at_logits)
            prefix.register_hook(at_prefix)
        return logits, positions, targets

    ReasoningGenerator._forward_chains = timed_forward_chains

    def wrap_shim(cls, name):
        begin = cls.begin_update

        def timed_begin_update(self, inputs):
            with timers.time(f"{name} forward"):
                output, backprop = begin(self, inputs)

            def timed_backprop(grads):
                with timers.time(f"{name} backward"):
                    return backprop(grads)

            return output, timed_backprop

        cls.begin_update = timed_begin_update

    wrap_shim(HFShim, "transformer")
    wrap_shim(MulcotShim, "fusion network")

    # The optimizer: mulcot's own class (TrainablePipe is a compiled type), and the
    # transformer's model, whose step runs inside its listener's backprop.
    from spacy_transformers.layers.transformer_model import TransformerModel

    from spacy_mulcot.components.mulcot import Mulcot

    timed_method(timers, Mulcot, "finish_update", "optimizer")
    timed_method(timers, TransformerModel, "finish_update", "optimizer")

    update = Language.update

    def timed_update(self, *args, **kwargs):
        if timers.updates == timers.warmup:
            # Initialization (and the first ``warmup`` steps) read the corpus, ran the
            # pipeline on a sample and filled the caches: not what is profiled.
            timers.total.clear()
            timers.step_times.clear()
            timers.eval_times.clear()
            timers.first_step = time.perf_counter()
        timers.updates += 1
        start = time.perf_counter()
        try:
            return update(self, *args, **kwargs)
        finally:
            timers.step_times.append(time.perf_counter() - start)

    Language.update = timed_update

    evaluate = Language.evaluate

    def timed_evaluate(self, *args, **kwargs):
        timers.in_eval += 1
        start = time.perf_counter()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            timers.eval_times.append(time.perf_counter() - start)
            timers.in_eval -= 1

    Language.evaluate = timed_evaluate
    del torch


def main(
    config: Path = typer.Argument(..., help="A spacy train config (configs/mulcot_cpu.cfg, configs/assistant_cpu.cfg)"),
    train: Path = typer.Argument(..., help="Train corpus (.spacy)"),
    dev: Path = typer.Argument(..., help="Dev corpus (.spacy)"),
    steps: int = typer.Option(60, help="Training steps profiled"),
    warmup_steps: int = typer.Option(
        0, help="Steps run before the timers start (e.g. one epoch: the image cache is full)"
    ),
    eval_frequency: int = typer.Option(30, help="Dev evaluation every N steps (timed separately)"),
    full_steps: Optional[int] = typer.Option(
        None, help="Steps of the full run to extrapolate to (default: the config's)"
    ),
    full_eval_frequency: Optional[int] = typer.Option(None, help="Its eval frequency (default: the config's)"),
    override: List[str] = typer.Option([], help="Extra overrides KEY=VALUE (JSON values)"),
    output: Optional[Path] = typer.Option(None, help="JSON report"),
):
    """Profile ``steps`` training steps of ``config`` and print the per-step table."""
    import json

    from spacy import util
    from spacy.cli.train import train as spacy_train

    try:
        from spacy_mulcot.compute import cpu_label, describe_cpu
    except ImportError:  # profiling an older commit's code (PYTHONPATH=its worktree)
        from _report import machine as cpu_label

        def describe_cpu():
            return {"model": cpu_label()}

    timers = Timers()
    timers.warmup = warmup_steps
    install(timers)
    base = util.load_config(config)
    full_steps = full_steps or int(base["training"]["max_steps"])
    full_eval_frequency = full_eval_frequency or int(base["training"]["eval_frequency"])
    overrides = {
        "paths.train": str(train),
        "paths.dev": str(dev),
        "training.max_steps": steps + warmup_steps,
        "training.eval_frequency": eval_frequency,
        "training.patience": 0,
    }
    for item in override:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    start = time.perf_counter()
    spacy_train(config, output_path=None, overrides=overrides, use_gpu=-1)
    wall = time.perf_counter() - start
    n = len(timers.step_times)
    # A step: from one update's start to the next one's, evaluations left out (spaCy's
    # loop steps the optimizer and reads the next batch outside ``nlp.update``).
    end = time.perf_counter()
    step_total = (end - timers.first_step - sum(timers.eval_times)) / max(n, 1)
    per_step = {stage: timers.total.get(stage, 0.0) / max(n, 1) for stage in STAGES if stage != "other"}
    per_step["other"] = step_total - sum(per_step.values())
    eval_s = sorted(timers.eval_times)[len(timers.eval_times) // 2] if timers.eval_times else 0.0
    n_evals = full_steps // full_eval_frequency
    full = {"steps": full_steps, "eval_frequency": full_eval_frequency}
    full["train_s"] = round(full_steps * step_total, 1)
    full["eval_s"] = round(n_evals * eval_s, 1)
    full["total_s"] = round(full["train_s"] + full["eval_s"], 1)
    report = {
        "config": str(config),
        "overrides": overrides,
        "cpu": describe_cpu(),
        "steps": n,
        "warmup_steps": warmup_steps,
        "wall_s": round(wall, 1),
        "step_ms": round(1000 * step_total, 1),
        "per_step_ms": {k: round(1000 * v, 1) for k, v in per_step.items()},
        "share": {k: round(v / step_total, 3) for k, v in per_step.items()},
        "eval_s_median": round(eval_s, 1),
        "eval_s": [round(t, 1) for t in timers.eval_times],
        "extrapolated_full_run": full,
    }
    lines = [
        f"{config} — {n} steps after {warmup_steps} on {cpu_label()}",
        "| stage | ms / step | share |",
        "| --- | ---: | ---: |",
    ]
    for stage, ms in report["per_step_ms"].items():
        lines.append(f"| {stage} | {ms:.1f} | {100 * report['share'][stage]:.1f}% |")
    lines.append(f"| **step** | **{report['step_ms']:.1f}** | 100% |")
    lines.append(f"| dev evaluation (per evaluation, s) | {eval_s:.1f} | – |")
    lines.append(
        f"Full run ({full_steps} steps, eval every {full_eval_frequency}): ~{full['train_s'] / 60:.1f} min of steps "
        f"+ {full['eval_s'] / 60:.1f} min of evaluation = {full['total_s'] / 60:.1f} min"
    )
    report["table"] = "\n".join(lines)
    print(report["table"], file=sys.stderr)
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
