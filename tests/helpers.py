"""Builders the tests share: images made on the spot, handwritten posts, a small
``mulcot`` pipeline with the real encoders and its training loop, and the CLI run
in-process."""

import io
import random

import numpy
import spacy
from PIL import Image
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.doc_model import make_doc, set_aspects
from spacy_mulcot.readers.corpus import make_example


def make_image(color=(200, 30, 30), size=(64, 48), fmt="JPEG", exif_orientation=None) -> bytes:
    image = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buf, format=fmt, exif=exif)
    else:
        image.save(buf, format=fmt)
    return buf.getvalue()


#: The header row of a Twitter-2015/2017 .tsv file (TomBERT format).
TWITTER_HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"

TRANSFORMER = {
    "model": {
        "@architectures": "mulcot.TransformerModel.v1",
        "name": "all-MiniLM-L6-v2",
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        # fp32: batched == one-by-one to the last printed digit (bf16 rounding depends on the
        # padding, ~1e-5 here); the bf16 path has its own tests (test_mulcot_speed_paths.py).
        "inference_dtype": "float32",
    }
}

POSTS = [
    ("Loving the new Tesla , what a car !", [("Tesla", "POS")], (30, 200, 30)),
    ("Traffic in Boston is a total nightmare today", [("Boston", "NEG")], (200, 30, 30)),
    ("Obama speaks with Merkel in Berlin", [("Obama", "NEU"), ("Merkel", "NEU"), ("Berlin", "NEU")], (90, 90, 90)),
    ("Great game by Messi tonight , Barcelona fans happy", [("Messi", "POS"), ("Barcelona", "POS")], (20, 40, 220)),
]


def build_nlp(**mulcot_config):
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=TRANSFORMER)
    nlp.add_pipe("mulcot_image")
    cfg = {"model": {"hidden_width": 64, "attention_heads": 2, "image_dropout": 0.0, "rationale_dropout": 0.0}}
    for key, value in mulcot_config.items():
        cfg["model"][key] = value
    nlp.add_pipe("mulcot", config=cfg)
    return nlp


def gold_docs(nlp, tmp_path, posts=POSTS):
    docs = []
    for i, (text, aspects, color) in enumerate(posts):
        path = tmp_path / f"post{i}.jpg"
        path.write_bytes(make_image(color))
        doc = make_doc(nlp, text, image=str(path))
        set_aspects(doc, [{"text": a, "label": label} for a, label in aspects])
        docs.append(doc)
    return docs


# ---- with a reasoning generator ------------------------------------------

REASONING_POSTS = [
    ("Loving the new Tesla , what a car !", [("Tesla", "POS")], (30, 200, 30)),
    ("Traffic in Boston is a total nightmare today", [("Boston", "NEG")], (200, 30, 30)),
]
CHAINS = {
    "Tesla": '"Text_analysis": "love for the car"\n"Image_analysis": "a green picture"\n"Prediction": positive',
    "Boston": '"Text_analysis": "angry about traffic"\n"Image_analysis": "a red picture"\n"Prediction": negative',
}
POST_CHAIN = '"Final_conclusion": "the post is upbeat"\n"Prediction": positive'


def build_reasoning_nlp(lm_path, generator=None, **component):
    """``build_nlp`` with a generator over the LM at ``lm_path`` (40-token chains)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=TRANSFORMER)
    nlp.add_pipe("mulcot_image")
    model = {
        "hidden_width": 64,
        "attention_heads": 2,
        "image_dropout": 0.0,
        "rationale_dropout": 0.0,
        "generator": {
            "@architectures": "mulcot.ReasoningGenerator.v1",
            "name": str(lm_path),
            "train_dtype": None,
            **(generator or {}),
        },
    }
    generation = {"max_new_tokens": 40, **component.pop("generation", {})}
    nlp.add_pipe("mulcot", config={"model": model, "generation": generation, "max_reasoning_items": 0, **component})
    return nlp


def reasoning_gold_docs(nlp, tmp_path):
    """Two posts whose aspects (and first post) carry teacher chains."""
    docs = gold_docs(nlp, tmp_path, REASONING_POSTS)
    for doc in docs:
        for span in doc.spans["aspects"]:
            span._.rationale = CHAINS[span.text]
    docs[0]._.rationale = POST_CHAIN
    return docs


def train(nlp, examples, steps=40, seed=0, on_step=None, learn_rate=5e-4):
    """``steps`` updates on ``examples``; the mulcot loss after each. Every RNG is seeded
    (torch's too: dropout), so a test's curve does not depend on what ran before it."""
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    history = []
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses, annotates=["mulcot_image"])
        history.append(losses["mulcot"])
        if on_step is not None:
            on_step(losses)
    return history


def fresh(nlp, gold, given=False):
    """What a user would pass in: the text and image (and, if given, unlabelled aspects)."""
    return [make_example(d, given_aspects=given).predicted for d in gold]


def cli(*args) -> str:
    """``python -m spacy_mulcot ARGS`` in this process (typer's runner); its output,
    after checking that it succeeded."""
    from spacy_mulcot.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output[-3000:], result.exception)
    return result.output


def read(path):
    """The docs of a .spacy file, in a blank English vocab."""
    nlp = spacy.blank("en")
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))
