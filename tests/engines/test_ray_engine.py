"""``predict --engine ray``: shards over Ray actors give the single-process output,
a worker killed mid-shard is recovered (its shard redone, nothing duplicated), and a
rerun resumes from the committed shards."""

import json

import pytest
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.engines.shards import Settings, ShardWorker, plan_shards, predict_in_shards
from spacy_mulcot.readers import ReadStats

from ..helpers import make_image

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
    # What a killed worker leaves: removed on the rerun (each file once).
    (tmp_path / "out.jsonl.shards" / ".00002.jsonl.999.tmp").write_text("half")
    calls.clear()
    stop_after[0] = -1
    summary = predict_in_shards(posts_csv, out, "jsonl", settings, run, shard_size=2, progress=False)
    assert not list((tmp_path / "out.jsonl.shards").glob("*.tmp"))
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


def _in_process(model, settings, calls=None):
    def run(shards, out_dir, on_result):
        worker = ShardWorker(str(model), settings.__dict__)
        for shard in shards:
            if calls is not None:
                calls.append(shard.index)
            on_result(worker.run(shard, str(out_dir)))

    return run


def test_a_rerun_after_the_input_changed_starts_afresh(trained_model_dir, posts_csv, tmp_path):
    """Before: stale shards were merged (128 of 200 records carried the old texts)."""
    settings = Settings(batch_size=2)
    out = tmp_path / "out.jsonl"
    calls = []
    run = _in_process(trained_model_dir, settings, calls)

    def interrupted(shards, out_dir, on_result):
        run(shards[:2], out_dir, on_result)
        raise Interrupted

    with pytest.raises(Interrupted):
        predict_in_shards(
            posts_csv, out, "jsonl", settings, interrupted, model=str(trained_model_dir), shard_size=2, progress=False
        )
    posts_csv.write_text(posts_csv.read_text().replace("Messi", "Ronaldo"))
    calls.clear()
    summary = predict_in_shards(
        posts_csv, out, "jsonl", settings, run, model=str(trained_model_dir), shard_size=2, progress=False
    )
    assert summary["restarted"] and summary["resumed"] == 0 and calls == [0, 1, 2, 3]
    assert [r["text"] for r in _records(out)] == [t.replace("Messi", "Ronaldo") for t in POSTS]
    # Other settings are stale too; the same ones resume.
    assert (
        predict_in_shards(
            posts_csv,
            out,
            "jsonl",
            settings,
            run,
            model=str(trained_model_dir),
            shard_size=2,
            keep_shards=True,
            progress=False,
        )["restarted"]
        is False
    )


def test_each_shard_parses_only_its_own_records_and_bad_rows_keep_their_place(trained_model_dir, tmp_path):
    from spacy_mulcot.engines.shards import count_posts
    from spacy_mulcot.predict import read_posts

    rows = ["text"] + [f'"{t}"' for t in POSTS[:3]] + ['""'] + [f'"{t}"' for t in POSTS[3:]]
    source = tmp_path / "posts.csv"
    source.write_text("\n".join(rows) + "\n")
    stats = count_posts(source, "skip")
    assert stats.docs == 8 and stats.skipped == 1 and stats.positions == [0, 1, 2, 4, 5, 6, 7, 8]
    shards = plan_shards(source, stats.docs, 3, stats.positions)
    # The bad record 3 lies between two windows: no worker parses it again.
    assert [(s.first_record, s.stop_record) for s in shards] == [(0, 3), (4, 7), (7, 9)]
    import spacy

    seen = ReadStats()
    docs = list(read_posts(source, spacy.blank("en"), on_error="skip", stats=seen, window=(4, 7)))
    assert [d.text for d in docs] == POSTS[3:6] and seen.records == 3  # nothing before the window parsed
    settings = Settings(batch_size=3, on_error="skip")
    out, local = tmp_path / "sharded.jsonl", tmp_path / "local.jsonl"
    predict_in_shards(
        source,
        out,
        "jsonl",
        settings,
        _in_process(trained_model_dir, settings),
        model=str(trained_model_dir),
        shard_size=3,
        progress=False,
    )
    _run(trained_model_dir, source, local, "--batch-size", "3", "--on-error", "skip")
    assert _records(out) == _records(local)


FAIL_CODE = """
from spacy.language import Language

@Language.component("fail_on_boom")
def fail_on_boom(doc):
    if "BOOM" in doc.text:
        raise ValueError("this post cannot be handled")
    return doc
"""


def test_a_failing_worker_leaves_no_temporary_file_and_is_one_line(trained_model_dir, tmp_path):
    import spacy

    from spacy_mulcot.engines.shards import import_code

    code = tmp_path / "fail.py"
    code.write_text(FAIL_CODE)
    import_code(str(code))
    nlp = spacy.load(trained_model_dir)
    nlp.add_pipe("fail_on_boom", first=True)
    nlp.to_disk(tmp_path / "failing")
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in POSTS[:3] + ["BOOM goes the post"]))
    settings = Settings(batch_size=2)
    shards = plan_shards(source, 4, 2, [0, 1, 2, 3])
    worker = ShardWorker(str(tmp_path / "failing"), settings.__dict__)
    (tmp_path / "shards").mkdir()
    worker.run(shards[0], str(tmp_path / "shards"))
    with pytest.raises(ValueError, match="cannot be handled"):
        worker.run(shards[1], str(tmp_path / "shards"))
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["00000.done", "00000.jsonl"]
    # Through Ray and the CLI: one line, and where the traceback went.
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "failing"), str(source), str(out), "--engine", "ray", "--code", str(code),
         "--workers", "1", "--shard-size", "2", "--batch-size", "2", "--max-retries", "0"],
    )  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines[-1].startswith(
        "error: a worker failed: ValueError: this post cannot be handled"
    )
    log = tmp_path / "out.jsonl.error.log"
    assert f"full traceback: {log}" in lines[-1] and "Traceback" in log.read_text()
    assert not out.exists() and not list((tmp_path / "out.jsonl.shards").glob("*.tmp"))
