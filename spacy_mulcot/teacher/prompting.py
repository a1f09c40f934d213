"""MulCoT-RD teacher prompts as sandboxed jinja templates.

``masc.jinja`` (aspect level) and ``msc.jinja`` (post level) ship with the package;
a path overrides either. The same template serves both stages: with ``gold`` set it
asks the teacher to explain the gold label (stage 2 of the CoT enhancement).
Templates run in jinja's ``SandboxedEnvironment`` with ``StrictUndefined``, so a
user template cannot reach Python internals and a misspelt variable is an error.
"""

import hashlib
from pathlib import Path
from typing import Optional, Union

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

PROMPT_DIR = Path(__file__).parent / "prompts"
LEVELS = ("aspect", "post")
_WORDS = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}


class TeacherPrompt:
    """One level's template: ``render(text, aspect, ...)`` → the user message."""

    def __init__(self, level: str = "aspect", path: Optional[Union[str, Path]] = None):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        self.level = level
        path = Path(path) if path else PROMPT_DIR / ("masc.jinja" if level == "aspect" else "msc.jinja")
        if not path.exists():
            raise FileNotFoundError(f"Prompt template not found: {path}")
        self.path = path
        self.source = path.read_text(encoding="utf8")
        env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
        self.template = env.from_string(self.source)
        #: Part of every cache key: editing the template asks the teacher again.
        self.sha = hashlib.sha256(self.source.encode("utf8")).hexdigest()[:16]

    def render(
        self,
        text: str,
        aspect: Optional[str] = None,
        has_image: bool = False,
        image_description: Optional[str] = None,
        gold: Optional[str] = None,
    ) -> str:
        if self.level == "aspect" and not aspect:
            raise ValueError("an aspect-level prompt needs an aspect")
        return self.template.render(
            text=text,
            aspect=aspect or "",
            has_image=has_image,
            image_description=image_description or "",
            gold=_WORDS.get(gold, gold) if gold else "",
        ).strip()
