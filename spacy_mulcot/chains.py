"""Reading MulCoT-RD reasoning chains: sections and the predicted label.

Teachers write chains in several shapes: quoted JSON-like keys
(``"Text_analysis": "..."``), bare keys, Markdown headings (``### Text_analysis``),
with the label after ``Prediction`` quoted or not. The parser accepts all of
them and tolerates missing sections.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from .labels import normalize_polarity

#: The sections of a MulCoT-RD chain, in order.
SECTIONS = ("Text_analysis", "Image_analysis", "Conflict_resolution", "Final_conclusion", "Prediction")

_SECTION_ALT = "|".join(s.replace("_", "[_ ]") for s in SECTIONS)
# A section header: optional Markdown hashes/bold, optional quotes, the name,
# optional closing quote/bold, then a colon or the end of a heading line.
_HEADER = re.compile(r"(?im)^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[\"']?(" + _SECTION_ALT + r")[\"']?(?:\*\*)?[ \t]*(?::|$)")
_LABEL = re.compile(r"(?i)\b(positive|neutral|negative)\b")


@dataclass
class ParsedChain:
    """A chain split into its sections; ``prediction`` is POS/NEU/NEG or None."""

    sections: Dict[str, str] = field(default_factory=dict)
    prediction: Optional[str] = None

    @property
    def complete(self) -> bool:
        return all(s in self.sections for s in SECTIONS)


def _clean(value: str) -> str:
    value = value.strip().rstrip(",").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value.strip()


def _canonical(name: str) -> str:
    key = name.lower().replace(" ", "_")
    for section in SECTIONS:
        if section.lower() == key:
            return section
    return name


def parse_chain(text: str) -> ParsedChain:
    """Split a chain into sections and read its predicted label.

    The prediction comes from the ``Prediction`` section; failing that, from the
    last polarity word of the ``Final_conclusion``. None when neither names one.
    """
    if not isinstance(text, str):
        raise TypeError(f"A chain must be a string, got {type(text).__name__}")
    headers = list(_HEADER.finditer(text))
    sections: Dict[str, str] = {}
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        name = _canonical(match.group(1))
        body = _clean(text[match.end() : end])
        # Keep the first non-empty occurrence of a section.
        if not sections.get(name):
            sections[name] = body
    prediction = None
    if sections.get("Prediction"):
        found = _LABEL.search(sections["Prediction"])
        if found:
            prediction = normalize_polarity(found.group(1))
    if prediction is None and sections.get("Final_conclusion"):
        found = _LABEL.findall(sections["Final_conclusion"])
        if found:
            prediction = normalize_polarity(found[-1])
    return ParsedChain(sections=sections, prediction=prediction)


def format_chain(sections: Dict[str, str]) -> str:
    """Write sections in MulCoT-RD's quoted-key format (the one most chains use)."""
    parts = []
    for name in SECTIONS:
        if name not in sections:
            continue
        value = sections[name]
        parts.append(f'"{name}": {value}' if name == "Prediction" else f'"{name}": "{value}"')
    return "\n\n".join(parts)
