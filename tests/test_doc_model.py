import numpy
import pytest
import spacy
from PIL import Image
from spacy.tokens import DocBin

from spacy_mulcot import ASPECTS_KEY, ImageRef, docs_from_records, make_doc, set_aspects
from spacy_mulcot.doc_model import AspectNotFoundError, copy_inputs

from .helpers import make_image

TEXT = "Loving the new iPhone , but the battery life is awful"


@pytest.fixture
def nlp():
    return spacy.blank("en")


def test_aspects_as_strings_chars_and_tokens(nlp):
    doc = make_doc(nlp, TEXT, aspects=["iPhone", {"start": 32, "end": 44, "polarity": "negative"}])
    spans = list(doc.spans[ASPECTS_KEY])
    assert [s.text for s in spans] == ["iPhone", "battery life"]
    assert [s.label_ for s in spans] == ["", "NEG"]
    doc2 = make_doc(nlp, TEXT, aspects=[(3, 4, "POS")], offsets="token")
    assert doc2.spans[ASPECTS_KEY][0].text == "iPhone"
    assert doc2.spans[ASPECTS_KEY][0].label_ == "POS"


def test_char_offsets_expand_to_tokens(nlp):
    doc = make_doc(nlp, TEXT, aspects=[(17, 19)])  # inside "iPhone"
    assert doc.spans[ASPECTS_KEY][0].text == "iPhone"


def test_repeated_mentions_take_successive_occurrences(nlp):
    doc = make_doc(nlp, "cat food for the cat", aspects=["cat", "cat"])
    assert [(s.start, s.end) for s in doc.spans[ASPECTS_KEY]] == [(0, 1), (4, 5)]


@pytest.mark.parametrize(
    "aspect,message",
    [
        ("Android", "'Android' is not in the text"),
        ((3, 99), "outside"),
        ({"token_start": 5, "token_end": 50}, "outside"),
    ],
)
def test_aspect_not_in_text_is_a_clear_error(nlp, aspect, message):
    with pytest.raises(AspectNotFoundError, match=message):
        make_doc(nlp, TEXT, aspects=[aspect])


def test_bad_polarity_and_bad_spec(nlp):
    with pytest.raises(ValueError, match="Unknown polarity"):
        make_doc(nlp, TEXT, aspects=[{"text": "iPhone", "polarity": "great"}])
    with pytest.raises(TypeError, match="must be a string"):
        make_doc(nlp, TEXT, aspects=[3.5])


def test_records_name_the_failing_record(nlp):
    records = [(TEXT, None, ["iPhone"]), {"text": "no aspect here", "aspects": ["iPhone"]}]
    with pytest.raises(AspectNotFoundError, match="Record 1"):
        docs_from_records(nlp, records)


def test_image_kinds(nlp, tmp_path):
    data = make_image()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    from_path = make_doc(nlp, "x", image=str(path))._.image
    from_bytes = make_doc(nlp, "x", image=data)._.image
    pil = Image.open(path)
    from_pil = make_doc(nlp, "x", image=pil)._.image
    assert from_path.path == str(path) and from_path.key == from_bytes.sha256
    assert from_pil.sha256 is None and from_pil.path is None  # opened lazily: hashed when decoded
    assert from_pil.key and from_pil.sha256 == from_pil.key
    assert from_pil.load().size == pil.size
    with pytest.raises(TypeError, match="file path, raw image bytes or a PIL.Image"):
        make_doc(nlp, "x", image=12)


def test_docbin_round_trip_keeps_every_attribute(nlp, tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(make_image())
    docs = [
        make_doc(
            nlp,
            TEXT,
            image=str(path),
            aspects=[{"text": "iPhone", "polarity": "POS", "rationale": '"Prediction": positive'}],
            label="NEU",
            rationale='"Final_conclusion": "mixed" "Prediction": neutral',
        ),
        make_doc(nlp, "a cat", image=Image.new("RGB", (8, 8), (1, 2, 3)), aspects=["cat"]),
        make_doc(nlp, "no image"),
    ]
    span = docs[0].spans[ASPECTS_KEY][0]
    span._.sentiment_scores = {"POS": 0.7, "NEU": 0.2, "NEG": 0.1}
    span._.reasoning = "model chain"
    docs[0]._.reasoning = "doc chain"
    docs[0]._.image.key  # hash the file
    docs[0]._.image_features = {
        "regions": numpy.ones((4, 3), dtype="f"),
        "pooled": numpy.ones(3, dtype="f"),
        "encoder": "e",
    }
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    assert path.read_bytes() not in data  # an image from a file is kept as its reference
    back = list(DocBin(store_user_data=True).from_bytes(data).get_docs(nlp.vocab))
    a = back[0]
    assert a._.image == docs[0]._.image and a._.image.sha256 is not None
    assert a.cats == {"POS": 0.0, "NEU": 1.0, "NEG": 0.0}
    assert a._.rationale.startswith('"Final') and a._.rationale_label == "NEU"
    assert a._.reasoning == "doc chain"
    s = a.spans[ASPECTS_KEY][0]
    assert (s.text, s.label_) == ("iPhone", "POS")
    assert s._.rationale_label == "POS" and s._.reasoning == "model chain"
    assert s._.sentiment_scores == {"POS": 0.7, "NEU": 0.2, "NEG": 0.1}
    numpy.testing.assert_array_equal(a._.image_features["regions"], numpy.ones((4, 3)))
    # The in-memory image travels with the doc (nothing to re-read it from), hash kept.
    b = back[1]
    assert b._.image.path is None and b._.image.sha256 == docs[1]._.image.sha256
    assert b._.image.in_memory and b._.image.load().getpixel((3, 3)) == (1, 2, 3)
    assert back[2]._.image is None


def test_copy_inputs_drops_labels_keeps_rationales(nlp):
    gold = make_doc(
        nlp,
        TEXT,
        image=make_image(),
        aspects=[{"text": "iPhone", "polarity": "POS", "rationale": "Prediction: positive"}],
    )
    pred = copy_inputs(gold, nlp.make_doc(TEXT), aspects=True)
    span = pred.spans[ASPECTS_KEY][0]
    assert span.label_ == "" and span._.rationale == "Prediction: positive"
    assert pred._.image is gold._.image


def test_set_aspects_appends(nlp):
    doc = make_doc(nlp, TEXT, aspects=["iPhone"])
    set_aspects(doc, ["battery"])
    assert [s.text for s in doc.spans[ASPECTS_KEY]] == ["iPhone", "battery"]


def test_imageref_equality_and_repr():
    assert ImageRef("a.jpg", "x") == ImageRef("a.jpg", "x")
    assert "a.jpg" in repr(ImageRef("a.jpg"))
