"""Sentiment labels and the conversions between the datasets' spellings of them."""

from typing import Dict, Union

POS, NEU, NEG = "POS", "NEU", "NEG"
#: The polarity labels, in the order every head and score uses.
POLARITIES = (POS, NEU, NEG)

_ALIASES: Dict[str, str] = {
    "pos": POS,
    "positive": POS,
    "+": POS,
    "neu": NEU,
    "neutral": NEU,
    "0": NEU,
    "neg": NEG,
    "negative": NEG,
    "-": NEG,
}

#: TomBERT .tsv (Twitter-2015/2017): 0 negative, 1 neutral, 2 positive.
TWITTER_LABELS = {0: NEG, 1: NEU, 2: POS}
#: MVSA JSON: 0 positive, 1 neutral, 2 negative.
MVSA_LABELS = {0: POS, 1: NEU, 2: NEG}


def normalize_polarity(value: Union[str, None]) -> str:
    """Map a polarity spelled as a word or abbreviation (any case) to POS/NEU/NEG.

    Numeric codes differ between datasets, so integers are refused here: use the
    dataset's own table (TWITTER_LABELS, MVSA_LABELS).
    """
    if not isinstance(value, str):
        raise ValueError(f"Polarity must be a string such as 'POS', 'positive' or 'neg', got {value!r}")
    key = value.strip().strip("\"'").strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(
        f"Unknown polarity {value!r}: expected one of {', '.join(POLARITIES)} (or positive/neutral/negative)"
    )


def one_hot(label: str) -> Dict[str, float]:
    """doc.cats for a known doc-level label."""
    label = normalize_polarity(label)
    return {p: float(p == label) for p in POLARITIES}
