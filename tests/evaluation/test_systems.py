"""``evaluate_system`` (what ``benchmark`` and the seed runner record) on an
aspect-level corpus and on a post-level one (MVSA-like: labels on the post, no aspects)."""

import spacy
from spacy.tokens import DocBin

from spacy_mulcot.evaluation.systems import evaluate_system

from ..helpers import gold_docs


def test_a_post_level_corpus_gets_msc_scores_and_no_masc(tmp_path, trained_model_dir):
    nlp = spacy.load(trained_model_dir)
    docs = []
    for text, label in [("Traffic in Boston is a total nightmare today", "NEG"), ("What a lovely day", "POS")]:
        doc = nlp.make_doc(text)
        doc.cats = {p: float(p == label) for p in ("POS", "NEU", "NEG")}
        docs.append(doc)
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "posts.spacy")
    record = evaluate_system(nlp, tmp_path / "posts.spacy", name="post-level", reasoning_sample=0)
    assert record["n_aspects"] == 0 and record["scores"]["mulcot_msc_acc"] is not None
    assert record["scores"]["mulcot_masc_acc"] is None and sum(map(sum, record["confusion"])) == 0
    assert record["docs_per_s"] > 0


def test_an_aspect_corpus_gets_its_masc_confusion(tmp_path, trained_model_dir):
    nlp = spacy.load(trained_model_dir)
    docs = gold_docs(nlp, tmp_path)
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "gold.spacy")
    record = evaluate_system(nlp, tmp_path / "gold.spacy", name="aspects", reasoning_sample=0)
    n_aspects = sum(len(d.spans["aspects"]) for d in docs)
    assert record["n_aspects"] == n_aspects and sum(map(sum, record["confusion"])) == n_aspects
