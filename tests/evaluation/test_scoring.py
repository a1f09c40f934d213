"""The metrics (hand-counted cases), BIO encoding/decoding and the two-way corpus."""

import numpy
import pytest
import spacy
from spacy.tokens import Span, SpanGroup
from spacy.training import Example

from spacy_mulcot import bio
from spacy_mulcot.evaluation.scores import macro_f1, score_mulcot
from spacy_mulcot.rationale import chain_units
from spacy_mulcot.readers.corpus import MulcotCorpus, make_example


def _doc(nlp, text, spans, source=None, cats=None):
    doc = nlp.make_doc(text)
    group = [Span(doc, s, e, label=label) for s, e, label in spans]
    doc.spans["aspects"] = SpanGroup(doc, name="aspects", spans=group, attrs={"source": source} if source else {})
    if cats:
        doc.cats = cats
    return doc


def test_mate_jmasa_masc_msc_counts():
    nlp = spacy.blank("en")
    text = "Obama met Merkel in Berlin today"
    gold = [(0, 1, "NEU"), (2, 3, "POS"), (4, 5, "NEG")]
    ref = _doc(nlp, text, gold, cats={"POS": 0.0, "NEU": 1.0, "NEG": 0.0})
    # extracted: Obama right (span + label), Merkel wrong label, "Berlin today" wrong span
    extracted = _doc(
        nlp, text, [(0, 1, "NEU"), (2, 3, "NEG"), (4, 6, "NEG")], "predicted", {"POS": 0.1, "NEU": 0.8, "NEG": 0.1}
    )
    # given: labels for the three gold aspects, two right
    given = _doc(
        nlp, text, [(0, 1, "NEU"), (2, 3, "POS"), (4, 5, "POS")], "given", {"POS": 0.6, "NEU": 0.3, "NEG": 0.1}
    )
    scores = score_mulcot([Example(extracted, ref), Example(given, ref)])
    assert scores["mulcot_mate_p"] == pytest.approx(2 / 3)
    assert scores["mulcot_mate_r"] == pytest.approx(2 / 3)
    assert scores["mulcot_jmasa_f"] == pytest.approx(1 / 3)
    assert scores["mulcot_masc_acc"] == pytest.approx(2 / 3)
    # per label F1: NEU 1, POS 2*1/(2+1)=2/3, NEG 0 → macro 5/9
    assert scores["mulcot_masc_macro_f"] == pytest.approx(5 / 9)
    assert scores["mulcot_msc_acc"] == pytest.approx(0.5)  # NEU right, POS wrong
    # spaCy's span names carry the joint scores (what `spacy evaluate --spans-key aspects` shows)
    assert [scores[f"spans_aspects_{k}"] for k in "prf"] == [scores[f"mulcot_jmasa_{k}"] for k in "prf"]
    assert scores["spans_aspects_per_type"]["NEU"]["f"] == pytest.approx(1.0)


def test_metrics_without_docs_of_their_kind_are_none():
    nlp = spacy.blank("en")
    ref = _doc(nlp, "Obama met Merkel", [(0, 1, "NEU")])
    scores = score_mulcot([Example(_doc(nlp, "Obama met Merkel", [(0, 1, "NEU")], "given"), ref)])
    assert scores["mulcot_mate_f"] is None and scores["mulcot_jmasa_f"] is None and scores["mulcot_msc_acc"] is None
    assert scores["mulcot_masc_acc"] == 1.0


def test_macro_f1_counts_absent_labels_as_zero():
    assert macro_f1(["POS", "POS"], ["POS", "POS"]) == pytest.approx(1 / 3)
    assert macro_f1(["POS", "NEU", "NEG"], ["POS", "NEU", "NEG"]) == pytest.approx(1.0)


def test_bio_roundtrip_and_constrained_decoding():
    tags = bio.encode(7, [(0, 2), (3, 4), (5, 7)])
    assert tags.tolist() == [1, 2, 0, 1, 0, 1, 2]
    assert bio.tags_to_spans(tags) == [(0, 2), (3, 4), (5, 7)]
    # overlapping spans: the first (longest) wins
    assert bio.tags_to_spans(bio.encode(4, [(0, 3), (1, 2)])) == [(0, 3)]
    with pytest.raises(ValueError):
        bio.encode(3, [(2, 5)])
    # an I right after O is impossible: decoding repairs it to a B
    probs = numpy.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
    assert bio.decode(numpy.log(probs).astype("float32")) == [(1, 3)]
    assert bio.decode(numpy.zeros((0, 3), dtype="float32")) == []


def test_corpus_both_yields_each_doc_twice_and_hides_rationales(tmp_path):
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    doc = _doc(nlp, "Obama met Merkel", [(0, 1, "NEU")])
    doc.spans["aspects"][0]._.rationale = '"Prediction": "neutral"'
    DocBin(store_user_data=True, docs=[doc]).to_disk(tmp_path / "c.spacy")
    examples = list(MulcotCorpus(tmp_path / "c.spacy", given_aspects="both", rationales=False)(nlp))
    assert len(examples) == 2
    assert "aspects" not in examples[0].predicted.spans
    given = examples[1].predicted.spans["aspects"]
    assert [(s.start, s.end, s.label_) for s in given] == [(0, 1, "")]
    assert given[0]._.rationale is None
    shown = make_example(examples[1].reference, given_aspects=True)
    assert shown.predicted.spans["aspects"][0]._.rationale == '"Prediction": "neutral"'
    with pytest.raises(ValueError, match="given_aspects"):
        MulcotCorpus(tmp_path / "c.spacy", given_aspects="sometimes")
    with pytest.raises(ValueError, match="no path"):
        list(MulcotCorpus(None)(nlp))


def test_chain_units_are_the_sections():
    chain = '"Text_analysis": "upbeat words"\n"Image_analysis": "a smiling crowd"\n"Prediction": "positive"'
    assert chain_units(chain) == [
        "Text analysis: upbeat words",
        "Image analysis: a smiling crowd",
        "Prediction: positive",
    ]
    assert chain_units("just a free-form explanation") == ["just a free-form explanation"]
    assert chain_units("   ") == []


def test_weighted_f1_weights_each_label_by_its_gold_share():
    from spacy_mulcot.evaluation.scores import weighted_f1

    gold = ["POS", "POS", "POS", "NEG"]
    pred = ["POS", "POS", "NEG", "NEG"]
    # F1: POS 2*2/(4+0+1) = 0.8 (share 3/4), NEG 2*1/(2+1+0) = 2/3 (share 1/4), NEU absent
    assert weighted_f1(gold, pred) == pytest.approx(0.75 * 0.8 + 0.25 * 2 / 3)
    assert weighted_f1([], []) == 0.0
