import json

import pytest

from spacy_mulcot.chains import SECTIONS, format_chain, parse_chain
from spacy_mulcot.labels import normalize_polarity

QUOTED = '"Text_analysis": "Happy words."\n\n"Image_analysis": "A smiling crowd."\n\n"Conflict_resolution": "None."\n\n"Final_conclusion": "Positive overall."\n\n"Prediction": "positive"'
MARKDOWN = (
    "## Analysis\n\n### Text_analysis\nSad words.\n\n### Image_analysis:\nGrey sky.\n\n### Prediction\nnegative\n"
)
BARE = "Text_analysis: fine\nFinal_conclusion: it is neutral, not negative or positive... so neutral\n"


@pytest.mark.parametrize(
    "chain,label,sections",
    [
        (QUOTED, "POS", set(SECTIONS)),
        (MARKDOWN, "NEG", {"Text_analysis", "Image_analysis", "Prediction"}),
        (BARE, "NEU", {"Text_analysis", "Final_conclusion"}),
        ('"Prediction": neutral', "NEU", {"Prediction"}),
        ("**Prediction**: Negative", "NEG", {"Prediction"}),
        ("no structure at all", None, set()),
    ],
)
def test_tolerant_parsing(chain, label, sections):
    parsed = parse_chain(chain)
    assert parsed.prediction == label
    assert set(parsed.sections) == sections


def test_sections_keep_their_text():
    parsed = parse_chain(QUOTED)
    assert parsed.sections["Image_analysis"] == "A smiling crowd."
    assert parsed.complete
    assert parse_chain(format_chain(parsed.sections)).sections == parsed.sections


def test_bad_input():
    with pytest.raises(TypeError):
        parse_chain(None)


@pytest.mark.data
@pytest.mark.parametrize("split,n,n_disagree", [("dev", 1122, 28), ("test", 1037, 21)])
def test_every_shared_chain_parses(twitter15, split, n, n_disagree):
    records = json.loads((twitter15 / "reasoning" / f"{split}.json").read_text())
    assert len(records) == n
    parsed = [parse_chain(r["cot"]) for r in records]
    assert all(p.prediction is not None for p in parsed)
    assert sum(p.prediction != normalize_polarity(r["label"]) for p, r in zip(parsed, records)) == n_disagree
