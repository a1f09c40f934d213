"""The README's Python code blocks, run as written (with a picture made here)."""

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_every_readme_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "the README lost its quickstart"
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (300, 200), (10, 120, 30)).save("post_123.jpg")
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    doc = namespace["doc"]
    assert doc._.image_features["regions"].shape == (49, 1280)
    assert [(s.text, s.label_) for s in doc.spans["aspects"]] == [("#iPhone", ""), ("battery life", "NEG")]
    assert capsys.readouterr().out.splitlines()[-2:] == ["Sunset over the bay tonight True", "No picture here False"]
