"""``predict --engine ray``: shards over Ray actors give the single-process output,
a worker killed mid-shard is recovered (its shard redone, nothing duplicated), and a
rerun resumes from the committed shards."""

import json

import pytest
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.engines.shards import Settings, ShardWorker, plan_shards, predict_in_shards

from ..conftest import make_image

pytest.importorskip("ray")

POSTS = [
    "Loving the new #iPhone but the battery is awful",
    "Great game by Messi tonight",
    "CRASH here : Obama speaks in Boston",
    "Rainy day in London again",
    "The pizza at Joe 's was amazing",
    "Traffic on I-95 is terrible this morning",
    "Happy birthday to Taylor Swift",
    "Apple stock falls after the event",
]

# A component that kills its worker process the first time it sees the CRASH post
# (the marker file makes the retry succeed): a worker dying mid-shard.
CRASH_CODE = """
import os
from pathlib import Path
from spacy.language import Language

MARKER = Path({marker!r})

@Language.component("crash_once")
def crash_once(doc):
    if "CRASH" in doc.text and not MARKER.exists():
        MARKER.write_text(str(os.getpid()))
        os._exit(1)
    return doc
"""


@pytest.fixture
def posts_csv(tmp_path):
    (tmp_path / "img.jpg").write_bytes(make_image((10, 200, 30), size=(300, 240)))
    lines = ["text,image"] + [f'"{t}",{"img.jpg" if i % 2 else ""}' for i, t in enumerate(POSTS)]
    path = tmp_path / "posts.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def crashing_model(trained_model_dir, tmp_path):
    """The trained pipeline with ``crash_once`` first, and the code file defining it."""
    import spacy

    code = tmp_path / "crash.py"
    code.write_text(CRASH_CODE.format(marker=str(tmp_path / "crashed")))
    from spacy_mulcot.engines.shards import import_code

    import_code(str(code))
    nlp = spacy.load(trained_model_dir)
    nlp.add_pipe("crash_once", first=True)
    nlp.to_disk(tmp_path / "crashing")
    return tmp_path / "crashing", code, tmp_path / "crashed"


def _run(*args):
    result = CliRunner().invoke(app, ["predict", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ray_matches_one_process_and_recovers_a_killed_worker(crashing_model, trained_model_dir, posts_csv, tmp_path):
    model, code, marker = crashing_model
    local = tmp_path / "local.jsonl"
    _run(trained_model_dir, posts_csv, local, "--batch-size", "2")
    out = tmp_path / "ray.jsonl"
    result = _run(
        model, posts_csv, out, "--engine", "ray", "--code", code, "--workers", "2",
        "--shard-size", "2", "--batch-size", "2",
    )  # fmt: skip
    assert marker.exists(), "the crash component never ran: the test proves nothing"
    assert "8 posts" in result.output and "4 shards" in result.output
    assert _records(out) == _records(local)  # in order, none lost, none twice
    assert not (tmp_path / "ray.jsonl.shards").exists()


class Interrupted(Exception):
    pass


def test_a_rerun_resumes_committed_shards(trained_model_dir, posts_csv, tmp_path):
    settings = Settings(batch_size=2)
    out = tmp_path / "out.jsonl"
    calls = []
    stop_after = [2]

    def run(shards, out_dir, on_result):
        worker = ShardWorker(str(trained_model_dir), settings.__dict__)
        for shard in shards:
            calls.append(shard.index)
            on_result(worker.run(shard, str(out_dir)))
            if len(calls) == stop_after[0]:
                raise Interrupted  # the run stops after two shards

    with pytest.raises(Interrupted):
        predict_in_shards(posts_csv, out, "jsonl", settings, run, shard_size=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "out.jsonl.shards").glob("*.jsonl")) == ["00000.jsonl", "00001.jsonl"]
    calls.clear()
    stop_after[0] = -1
    summary = predict_in_shards(posts_csv, out, "jsonl", settings, run, shard_size=2, progress=False)
    assert calls == [2, 3] and summary["resumed"] == 2 and summary["posts"] == 8
    assert [r["text"] for r in _records(out)] == POSTS


def test_shard_plan_and_bad_settings(posts_csv, tmp_path):
    shards = plan_shards(posts_csv, 7, 3)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="at least 1"):
        plan_shards(posts_csv, 7, 0)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        predict_in_shards(posts_csv, tmp_path / "o.jsonl", "jsonl", Settings(batch_size=4), None, shard_size=6)
    result = CliRunner().invoke(app, ["predict", "m", str(posts_csv), str(tmp_path / "o.jsonl"), "--engine", "spark"])
    assert result.exit_code != 0 and "--engine must be local or ray" in result.output
