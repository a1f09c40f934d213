"""``python -m spacy_mulcot predict``: a trained pipeline over users' own posts, from
every input kind to JSONL and CSV, with bad rows reported by line."""

import csv
import json

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app

from .helpers import gold_docs, make_image


@pytest.fixture
def model(trained_model_dir):
    return trained_model_dir


def run(*args):
    result = CliRunner().invoke(app, ["predict", *map(str, args)])
    return result


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_in_jsonl_out_with_given_aspects_and_bad_rows(model, tmp_path):
    (tmp_path / "tesla.jpg").write_bytes(make_image((30, 200, 30)))
    rows = [
        {"id": "a1", "text": "Loving the new Tesla , what a car !", "image": "tesla.jpg", "aspects": ""},
        {"id": "a2", "text": "Traffic in Boston is a total nightmare today", "image": "", "aspects": "Boston"},
        {"id": "a3", "text": "", "image": "", "aspects": ""},
        {"id": "a4", "text": "Obama speaks", "image": "", "aspects": "Merkel"},
    ]
    source = tmp_path / "posts.csv"
    with source.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "image", "aspects"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out.jsonl"
    result = run(model, source, out)
    assert result.exit_code == 1 and "posts.csv, line 4: empty 'text'" in result.output
    result = run(model, source, out, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "line 4: empty 'text'" in result.output and "line 5: Aspect 'Merkel' is not in the text" in result.output
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["a1", "a2"]
    tesla, boston = records
    assert tesla["image"].endswith("tesla.jpg") and tesla["image_error"] is None
    assert [a["text"] for a in tesla["aspects"]] == ["Tesla"] and tesla["aspects"][0]["given"] is False
    assert boston["aspects"][0]["given"] is True and boston["aspects"][0]["text"] == "Boston"
    assert boston["aspects"][0]["polarity"] == "NEG"
    for rec in records:
        assert sum(rec["sentiment_scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert rec["sentiment"] == max(rec["sentiment_scores"], key=rec["sentiment_scores"].get)
        for aspect in rec["aspects"]:
            assert rec["text"][aspect["start"] : aspect["end"]] == aspect["text"]
            assert aspect["polarity"] == max(aspect["scores"], key=aspect["scores"].get)
            assert aspect["reasoning"] is None  # no --chains (and no generator)


def test_folder_and_jsonl_to_csv_and_missing_images(model, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "p1.txt").write_text("Great game by Messi tonight , Barcelona fans happy")
    (folder / "p1.jpg").write_bytes(make_image((20, 40, 220)))
    (folder / "p2.txt").write_text("Obama speaks with Merkel in Berlin")
    out = tmp_path / "out.csv"
    result = run(model, folder, out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["id"] for r in rows} == {"p1", "p2"}
    assert any(r["aspect"] == "Messi" and r["polarity"] == "POS" for r in rows)
    assert all(r["image"].endswith("p1.jpg") for r in rows if r["id"] == "p1")
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(json.dumps({"id": 7, "text": "Loving the new Tesla", "image": "gone.jpg"}) + "\n")
    result = run(model, jsonl, tmp_path / "o.jsonl")
    assert result.exit_code == 1 and "gone.jpg" in result.output
    result = run(model, jsonl, tmp_path / "o.jsonl", "--on-error", "skip")
    assert result.exit_code == 0 and "1 images could not be read" in result.output
    (rec,) = read_jsonl(tmp_path / "o.jsonl")
    assert rec["id"] == 7 and "not found" in rec["image_error"] and rec["sentiment"] in ("POS", "NEU", "NEG")


def test_spacy_corpus_in_keeps_its_aspects_as_given(model, tmp_path):
    nlp = spacy.blank("en")
    docs = gold_docs(nlp, tmp_path)
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "gold.spacy")
    result = run(model, tmp_path / "gold.spacy", tmp_path / "o.jsonl", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = read_jsonl(tmp_path / "o.jsonl")
    assert [[a["text"] for a in r["aspects"]] for r in records] == [[s.text for s in d.spans["aspects"]] for d in docs]
    assert all(a["given"] for r in records for a in r["aspects"])


@pytest.mark.parametrize(
    "source,output,message",
    [("posts.txt", "o.jsonl", "give a .csv, .jsonl or .spacy file"), ("posts.csv", "o.xml", "output format")],
)
def test_bad_arguments_are_refused(model, tmp_path, source, output, message):
    (tmp_path / source).write_text("text\nhi\n")
    result = run(model, tmp_path / source, tmp_path / output)
    # typer boxes the error and wraps it where the (tmp) path makes it wrap: compare words
    words = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code != 0 and message in words, result.output


# ---- nothing lost: the output is written whole or not at all -------------------------


def _posts_jsonl(path, n):
    path.write_text("".join(json.dumps({"id": i, "text": f"Loving the new Tesla number {i}"}) + "\n" for i in range(n)))
    return path


def test_output_equal_to_input_is_refused_before_anything_is_written(model, tmp_path):
    source = _posts_jsonl(tmp_path / "posts.jsonl", 3)
    before = source.read_bytes()
    result = run(model, source, source)
    assert result.exit_code != 0 and "is the input" in " ".join(result.output.replace("│", " ").split())
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    result = run(model, source, link)
    assert result.exit_code != 0 and "is the input" in " ".join(result.output.replace("│", " ").split())
    assert source.read_bytes() == before and link.is_symlink()


@pytest.mark.parametrize("size", ["0", "-4"])
def test_batch_size_below_one_is_refused_by_the_parser(model, tmp_path, size):
    source = _posts_jsonl(tmp_path / "posts.jsonl", 3)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    result = run(model, source, out, "--batch-size", size)
    assert result.exit_code == 2 and "--batch-size" in result.output
    assert out.read_text() == "previous results\n"


def test_a_failed_run_leaves_the_previous_output_and_no_temporary_file(model, tmp_path):
    (tmp_path / "a.jpg").write_bytes(make_image())
    source = tmp_path / "posts.jsonl"
    source.write_text(
        json.dumps({"text": "Loving the new Tesla", "image": "a.jpg"})
        + "\n"
        + json.dumps({"text": "Boston again", "image": "gone.jpg"})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    result = run(model, source, out)
    assert result.exit_code == 1 and "gone.jpg" in result.output and "left as it was" in result.output
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "out.jsonl", "posts.jsonl"]


def test_chains_from_a_pipeline_without_a_generator_are_an_error(model, tmp_path):
    """Before: every chain was null, exit 0."""
    source = _posts_jsonl(tmp_path / "posts.jsonl", 2)
    result = run(model, source, tmp_path / "out.jsonl", "--chains")
    assert result.exit_code == 1 and "has no reasoning generator" in result.output
    assert "assistant" in result.output and not (tmp_path / "out.jsonl").exists()
    nlp = spacy.load(model)
    with pytest.raises(ValueError, match="has no reasoning generator"):
        list(nlp.pipe(["Loving the new Tesla"], component_cfg={"mulcot": {"generate_reasoning": True}}))
    # Off by default on a classifier: no error, no chain.
    assert nlp("Loving the new Tesla")._.reasoning is None


def test_bad_model_and_bad_files_are_one_line_errors(model, tmp_path):
    source = _posts_jsonl(tmp_path / "posts.jsonl", 1)
    for args, expected in [
        (["predict", tmp_path / "no-model", source, tmp_path / "o.jsonl"], "could not load the pipeline"),
        (["stats", tmp_path / "missing.spacy"], "not found"),
        (["stats", source], "DocBin"),
    ]:
        result = CliRunner().invoke(app, [str(a) for a in args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and lines[-1].startswith("error: ") and expected in lines[-1], result.output
        assert "Traceback" not in result.output and len(lines) <= 2
    # --debug shows where it came from.
    result = CliRunner().invoke(app, ["--debug", "stats", str(source)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_ctrl_c_leaves_the_previous_output_intact(model, tmp_path):
    """A real process, a real SIGINT, mid-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source = _posts_jsonl(tmp_path / "posts.jsonl", 20000)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_mulcot", "predict", str(model), str(source), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.jsonl.*.tmp")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # inside nlp.pipe
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # 130: the command's own exit for Ctrl-C (a KeyboardInterrupt that escaped would be -2).
    assert proc.returncode == 130, err
    assert out.read_text() == "previous results\n"
    assert not list(tmp_path.glob(".*.tmp"))
