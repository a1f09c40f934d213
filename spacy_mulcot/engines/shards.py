"""Shards: the unit of work (and of failure) of a distributed prediction run.

A shard is a slice ``[start, stop)`` of the posts a reader yields for one input file,
and the window of the file's records that holds them: a worker parses only its
window (the records before it are passed over unparsed, so N shards cost one read,
not N²/2). It writes the records to a temporary file and renames it to
``NNNNN.jsonl``: a shard is committed whole or not at all, so a worker that fails
leaves nothing behind (one that is killed leaves a temporary file, removed by the
next run), the shard is simply run again, and a rerun of the command skips the
shards already done. The shards folder carries a fingerprint of the input, the
model and the settings: a rerun after any of them changed starts afresh instead of
merging stale shards. The merge writes the shards in order, so the output is the one
a single process writes with the same batch size (``shard_size`` is a multiple of it,
so the batches are the same too); probabilities can differ in the last printed
decimal, since each worker runs PyTorch with its own thread count.
"""

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import pipelines
from ..atomic import write_json
from ..readers import ReadStats

SHARD_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Shard:
    """Posts ``[start, stop)`` of ``source`` (in the reader's order)."""

    index: int
    source: str
    start: int
    stop: int
    #: The file's records ``[first_record, stop_record)`` hold the shard's posts.
    first_record: int = 0
    stop_record: Optional[int] = None

    @property
    def name(self) -> str:
        return f"{self.index:05d}{SHARD_SUFFIX}"

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class Settings:
    """How every worker runs the pipeline (the same for all shards)."""

    chains: bool = False
    batch_size: int = 32
    on_error: str = "raise"
    image_dir: Optional[str] = None
    max_new_tokens: Optional[int] = None


@dataclass
class ShardResult:
    shard: int
    posts: int
    aspects: int
    image_errors: int
    pid: int = 0
    problems: List[str] = field(default_factory=list)


def count_posts(source: Path, on_error: str = "raise", image_dir: Optional[Path] = None) -> ReadStats:
    """Read ``source`` once with a blank English tokenizer (no model, no images) to
    count its posts and report malformed records."""
    import spacy

    from ..predict import read_posts

    stats = ReadStats().track_positions()
    for _ in read_posts(source, spacy.blank("en"), on_error=on_error, stats=stats, image_dir=image_dir):
        pass
    return stats


def plan_shards(source: Path, n_posts: int, shard_size: int, positions: Optional[Sequence[int]] = None) -> List[Shard]:
    """Shards of ``shard_size`` posts; with ``positions`` (the record index of each post,
    from ``count_posts``) each also names the window of records that holds it."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    shards = []
    for i, start in enumerate(range(0, n_posts, shard_size)):
        stop = min(start + shard_size, n_posts)
        if positions is not None:
            shards.append(Shard(i, str(source), start, stop, positions[start], positions[stop - 1] + 1))
        else:
            shards.append(Shard(i, str(source), start, stop))
    return shards


def fingerprint(source: Path, model: str, settings: "Settings", shard_size: int) -> str:
    """What the shards' records depend on: the input's bytes, the model (its files'
    names, sizes and modification times, or a package's name and version) and the
    settings. Shards written under another fingerprint are stale."""
    h = hashlib.sha256()
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(source) if source.is_dir() else f.name).encode())
            with f.open("rb") as data:
                for block in iter(lambda: data.read(1 << 20), b""):
                    h.update(block)
    h.update(_model_identity(model).encode())
    h.update(json.dumps([asdict(settings), shard_size], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _model_identity(model: str) -> str:
    path = Path(model)
    if path.is_dir():
        parts = [
            f"{f.relative_to(path)}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in sorted(path.rglob("*"))
            if f.is_file()
        ]
        return str(path.resolve()) + "|" + "|".join(parts)
    try:
        from importlib.metadata import version

        return f"{model}=={version(model)}"
    except Exception:
        return model


def import_code(path: Optional[str]) -> None:
    """Import a Python file with custom components or registered functions (like
    ``spacy train --code``), in the driver and in every worker."""
    if not path:
        return
    name = "mulcot_user_code_" + Path(path).stem
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import code file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def load_pipeline(model: str, on_error: str, code: Optional[str] = None):
    """The pipeline as ``python -m spacy_mulcot predict`` loads it: ``mulcot_image``'s
    ``on_error`` set (when the pipeline has one; an installed package is assumed to)."""
    import spacy

    import_code(code)
    config = {"components": {"mulcot_image": {"on_error": on_error}}}
    path = Path(model)
    if (path / "config.cfg").exists():
        has_image = "mulcot_image" in spacy.util.load_config(path / "config.cfg")["nlp"]["pipeline"]
        return pipelines.load_pipeline(model, config=config) if has_image else pipelines.load_pipeline(model)
    return spacy.load(model, config=config)


class ShardWorker:
    """Loads the pipeline once, then predicts shards (a Ray actor's body; also usable
    in-process)."""

    def __init__(self, model: str, settings: Dict[str, Any], code: Optional[str] = None, threads: int = 0):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.settings = Settings(**settings)
        self.nlp = load_pipeline(model, self.settings.on_error, code)

    def pid(self) -> int:
        return os.getpid()

    def run(self, shard: Shard, out_dir: str) -> ShardResult:
        """Predict one shard and commit it; a committed shard is not predicted again."""
        from ..predict import RecordWriter, predict, read_posts

        final = Path(out_dir) / shard.name
        if final.exists():
            return ShardResult(**json.loads(final.with_suffix(".done").read_text()))
        s = self.settings
        stats = ReadStats()
        image_dir = Path(s.image_dir) if s.image_dir else None
        window = (shard.first_record, shard.stop_record) if shard.stop_record is not None else None
        docs = list(
            read_posts(
                Path(shard.source), self.nlp, on_error=s.on_error, stats=stats, image_dir=image_dir, window=window
            )
        )
        if window is None:
            docs = docs[shard.start : shard.stop]
        if len(docs) != len(shard):
            raise RuntimeError(f"shard {shard.index}: expected {len(shard)} posts in {shard.source}, read {len(docs)}")
        writer = RecordWriter(final, "jsonl")
        try:
            image_errors = predict(
                self.nlp,
                docs,
                writer,
                chains=s.chains,
                batch_size=s.batch_size,
                max_new_tokens=s.max_new_tokens,
                progress=False,
            )
            result = ShardResult(
                shard=shard.index,
                posts=writer.posts,
                aspects=writer.aspects,
                image_errors=len(image_errors),
                pid=os.getpid(),
            )
            # The summary first, then the records: a shard counts as done once NNNNN.jsonl exists.
            write_json(final.with_suffix(".done"), asdict(result))
        except BaseException:
            writer.close(commit=False)  # a failed attempt leaves no temporary file
            raise
        writer.close(commit=True)
        return result


def merge_shards(out_dir: Path, shards: List[Shard], output: Path, fmt: str) -> Dict[str, int]:
    """Write the committed shards' records to ``output`` in shard order."""
    from ..predict import RecordWriter

    missing = [s.name for s in shards if not (out_dir / s.name).exists()]
    if missing:
        raise RuntimeError(f"{len(missing)} shard(s) not done in {out_dir}: {', '.join(missing[:5])}")
    with RecordWriter(output, fmt) as writer:
        for shard in shards:
            with (out_dir / shard.name).open(encoding="utf-8") as lines:
                for line in lines:
                    writer.write(json.loads(line))
    return {"posts": writer.posts, "aspects": writer.aspects}


FINGERPRINT = "fingerprint.json"


def _leftovers(out_dir: Path) -> List[Path]:
    """Temporary files of killed workers (``.NAME.PID.tmp``: pathlib's ``*`` matches
    the leading dot, so one pattern finds them all, each once)."""
    return list(out_dir.glob("*.tmp"))


def clean_shards(out_dir: Path, shards: Optional[List[Shard]] = None) -> None:
    """Remove the shards (all of them, when ``shards`` is None), their summaries, the
    temporary files of killed workers and the fingerprint; the folder too if empty."""
    if shards is None:
        done = list(out_dir.glob(f"[0-9]*{SHARD_SUFFIX}")) + list(out_dir.glob("[0-9]*.done"))
    else:
        done = [p for s in shards for p in (out_dir / s.name, (out_dir / s.name).with_suffix(".done"))]
    for path in done + _leftovers(out_dir) + [out_dir / FINGERPRINT]:
        path.unlink(missing_ok=True)
    try:
        out_dir.rmdir()
    except OSError:
        pass  # the user's own files are left alone


def predict_in_shards(
    source: Path,
    output: Path,
    fmt: str,
    settings: Settings,
    run: Callable[..., List[ShardResult]],
    *,
    model: str = "",
    shard_size: int = 256,
    keep_shards: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Count, plan, run (``run(shards, out_dir, on_result=...)``: an engine), merge.

    The shards live in ``OUTPUT.shards/`` until the merge; after a crash, the same
    command resumes (committed shards are not predicted again)."""
    from tqdm import tqdm

    if shard_size % settings.batch_size:
        raise ValueError(
            f"shard_size ({shard_size}) must be a multiple of batch_size ({settings.batch_size}), so that the "
            "batches (and so the results) are the same as in one process"
        )
    stats = count_posts(source, settings.on_error, Path(settings.image_dir) if settings.image_dir else None)
    shards = plan_shards(source, stats.docs, shard_size, stats.positions)
    out_dir = output.with_name(output.name + ".shards")
    print_ = (lambda line: tqdm.write(line)) if progress else (lambda line: None)
    stamp = fingerprint(source, model, settings, shard_size)
    restarted = False
    if out_dir.exists():
        previous = out_dir / FINGERPRINT
        known = json.loads(previous.read_text())["fingerprint"] if previous.exists() else None
        stale = known != stamp and any(out_dir.glob(f"[0-9]*{SHARD_SUFFIX}"))
        if stale:
            print_(
                f"{out_dir}: the input, the model or the settings changed since these shards were written; starting afresh"
            )
            restarted = True
        if stale:
            clean_shards(out_dir)
        else:  # what killed workers left half-written
            for tmp in _leftovers(out_dir):
                tmp.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / FINGERPRINT, {"fingerprint": stamp, "source": str(source), "model": model})
    todo = [s for s in shards if not (out_dir / s.name).exists()]
    bar = tqdm(total=stats.docs, initial=stats.docs - sum(len(s) for s in todo), unit="post", disable=not progress)
    results: List[ShardResult] = []

    def done(result: ShardResult) -> None:
        results.append(result)
        bar.update(result.posts)

    try:
        run(todo, out_dir, on_result=done)
    finally:
        bar.close()
    totals = merge_shards(out_dir, shards, output, fmt)
    if not keep_shards:
        clean_shards(out_dir, shards)
    return {
        **totals,
        "shards": len(shards),
        "resumed": len(shards) - len(todo),
        "image_errors": sum(r.image_errors for r in results),
        "problems": stats.problems,
        "skipped": stats.skipped,
        "workers": sorted({r.pid for r in results}),
        "restarted": restarted,
    }
