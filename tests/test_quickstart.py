"""The README's Python code blocks, run as written in an empty folder: the shipped
model, a picture the block makes itself, aspects with polarity and probability, and
a chain."""

import re
from pathlib import Path

import pytest

from spacy_mulcot import POLARITIES

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_every_readme_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "the README lost its quickstart"
    monkeypatch.chdir(tmp_path)  # an empty folder: the block makes its own picture
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    doc = namespace["doc"]
    assert doc._.image_features is not None  # the picture was read and encoded
    lines = capsys.readouterr().out.splitlines()
    post = lines.index(next(line for line in lines if line.startswith("post: ")))
    aspect_lines, batch_lines = lines[:post], lines[post + 1 :]
    assert [a.text for a in doc.spans["aspects"]] and len(aspect_lines) == len(doc.spans["aspects"])
    for line, aspect in zip(aspect_lines, doc.spans["aspects"]):
        text, label, prob = line.rsplit(" ", 2)
        assert text == aspect.text and label in POLARITIES
        assert float(prob) == pytest.approx(max(aspect._.sentiment_scores.values()), abs=0.006)
    assert lines[post].split()[1] in POLARITIES
    assert all(line.startswith("[") for line in batch_lines[:2])
    # then the chain the shipped model writes for the first aspect, in the teacher's sections
    chain = "\n".join(batch_lines[2:])
    why = namespace["why"].spans["aspects"][0]
    assert chain.strip() == why._.reasoning.strip() and "Text_analysis" in chain and "Prediction" in chain
