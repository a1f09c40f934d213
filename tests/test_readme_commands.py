"""README's two commands are what CI runs: `.ci/run` must hold each of them verbatim,
so a command edited in one place and not the other fails here, not on a user's machine."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_commands_verbatim():
    commands = readme_commands()
    assert len(commands) == 2, "README's 'The two commands' section should hold two bash blocks"
    assert "spacy project run all" in commands[0] and "pytest" in commands[1]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    for command in commands:
        assert command in ci, f".ci/run does not run README's command: {command[:80]}…"


def test_every_var_command_1_sets_is_a_project_var():
    from weasel.util import load_project_config

    variables = load_project_config(ROOT)["vars"]
    passed = re.findall(r"--vars\.(\w+)", readme_commands()[0])
    assert passed and [v for v in passed if v not in variables] == []
