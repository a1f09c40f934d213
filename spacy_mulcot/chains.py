"""Reading MulCoT-RD reasoning chains: sections and the predicted label.

Teachers write chains in several shapes: quoted JSON-like keys
(``"Text_analysis": "..."``), bare keys, Markdown headings (``### Text_analysis``),
all on one line or one section per line, a JSON object (fenced or not), with the
label after ``Prediction`` quoted or not. The parser accepts all of them and
tolerates missing sections.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from .labels import normalize_polarity

#: The sections of a MulCoT-RD chain, in order.
SECTIONS = ("Text_analysis", "Image_analysis", "Conflict_resolution", "Final_conclusion", "Prediction")

_SECTION_ALT = "|".join(s.replace("_", "[_ ]") for s in SECTIONS)
# A section header: optional Markdown hashes/bold, optional quotes, the name,
# optional closing quote/bold, then a colon or the end of a heading line.
HEADER = re.compile(r"(?im)^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[\"']?(" + _SECTION_ALT + r")[\"']?(?:\*\*)?[ \t]*(?::|$)")
# Mid-line (a one-line chain): a quoted key anywhere, or a key written with its
# underscore (or "Prediction") after a separator; always followed by a colon.
_INLINE = re.compile(
    r"(?i)[\"'](" + _SECTION_ALT + r")[\"'][ \t]*:"
    r"|(?-i:(?<![\w])(" + "|".join(SECTIONS) + r"))[ \t]*:"
)
_LABEL = re.compile(r"(?i)\b(positive|neutral|negative)\b")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


@dataclass
class ParsedChain:
    """A chain split into its sections; ``prediction`` is POS/NEU/NEG or None."""

    sections: Dict[str, str] = field(default_factory=dict)
    prediction: Optional[str] = None

    @property
    def complete(self) -> bool:
        return all(s in self.sections for s in SECTIONS)


def _clean(value: str) -> str:
    value = value.strip().rstrip(",}").strip().rstrip(",").strip()
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
    sections = _json_sections(text) or _header_sections(text)
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


def _header_sections(text: str) -> Dict[str, str]:
    """Sections by their headers: at a line's start, or mid-line as a key."""
    found = [(m.start(), m.end(), m.group(1)) for m in HEADER.finditer(text)]
    taken = [(a, b) for a, b, _ in found]
    for m in _INLINE.finditer(text):
        if not any(a <= m.start() < b or m.start() <= a < m.end() for a, b in taken):
            found.append((m.start(), m.end(), m.group(1) or m.group(2)))
    found.sort()
    sections: Dict[str, str] = {}
    for i, (_, end_of_header, name) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else len(text)
        name = _canonical(name)
        body = _clean(text[end_of_header:end])
        # Keep the first non-empty occurrence of a section.
        if not sections.get(name):
            sections[name] = body
    return sections


def _json_sections(text: str) -> Dict[str, str]:
    """Sections of a chain written as one JSON object (in a code fence or not);
    empty when the text is not one."""
    body = _FENCE.sub("", text.strip())
    if not (body.startswith("{") and body.endswith("}")):
        return {}
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    sections = {}
    for key, value in data.items():
        name = _canonical(str(key))
        if name in SECTIONS and value is not None:
            sections[name] = value.strip() if isinstance(value, str) else json.dumps(value)
    return sections


def format_chain(sections: Dict[str, str]) -> str:
    """Write sections in MulCoT-RD's quoted-key format (the one most chains use)."""
    parts = []
    for name in SECTIONS:
        if name not in sections:
            continue
        value = sections[name]
        parts.append(f'"{name}": {value}' if name == "Prediction" else f'"{name}": "{value}"')
    return "\n\n".join(parts)
