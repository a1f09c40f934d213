"""The command line as users meet it."""

import subprocess
import sys

import pytest

COMMANDS = (
    "convert",
    "stats",
    "render",
    "evaluate",
    "split",
    "teach",
    "export-generator",
    "soft-targets",
    "augment",
    "sample",
    "benchmark",
    "zero-shot",
    "report",
    "folds",
    "concat",
    "transfer-set",
    "export-soft-labels",
    "apply-soft-labels",
)


@pytest.mark.parametrize("module", ["spacy_mulcot", "spacy_mulcot.cli"])
def test_every_command_is_listed_however_the_cli_is_started(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    missing = [c for c in COMMANDS if c not in out.stdout]
    assert not missing, out.stdout
