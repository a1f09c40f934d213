"""Static word vectors distilled from a sentence encoder (the fast student's input)."""

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_mulcot.static_vectors import build_vectors, word_list, word_vectors


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from spacy_mulcot.hub import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))


def test_a_word_is_the_mean_of_its_pieces(tokenizer):
    table = numpy.random.default_rng(0).normal(size=(len(tokenizer), 8)).astype(numpy.float32)
    words = ["great", "unbelievably", "#patriots"]
    vectors = word_vectors(tokenizer, table, words)
    for word, row in zip(words, vectors):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert numpy.allclose(row, table[ids].mean(axis=0))
    assert len(tokenizer("unbelievably", add_special_tokens=False)["input_ids"]) > 1  # really a mean


def test_the_word_list_is_whole_words_then_the_corpus_words(tokenizer):
    words = word_list(tokenizer, ["Patriots", "GREAT", "patriots", " "])
    assert not any(w.startswith("##") or w in ("[CLS]", "[SEP]", "[PAD]") for w in words)
    assert "great" in words and words.count("patriots") == 1 and " " not in words
    assert len(words) == len(set(words))


@pytest.mark.slow
def test_vectors_load_as_a_spacy_table_keyed_by_the_lower_cased_word(tmp_path):
    nlp = spacy.blank("en")
    DocBin(docs=[nlp("Go Zyxwvut !")]).to_disk(tmp_path / "c.spacy")
    info = build_vectors("all-MiniLM-L6-v2", tmp_path / "vectors", dims=16, corpora=[tmp_path / "c.spacy"])
    assert info["dims"] == 16 and info["from_corpora"] == 3 and info["words"] > 20000
    loaded = spacy.load(tmp_path / "vectors")
    doc = loaded("GREAT great Zyxwvut")
    vectors = loaded.vocab.vectors
    assert vectors.shape == (info["words"], 16)
    # Looked up by the lower-cased word, as spaCy's StaticVectors layer does (vectors.attr);
    # Token.has_vector / .vector look up the exact text and would miss "GREAT".
    rows = vectors.find(keys=doc.to_array("LOWER"))
    assert (rows >= 0).all() and rows[0] == rows[1]  # a corpus word ("Zyxwvut") has one too

    def cos(a, b):
        return float(a @ b / numpy.linalg.norm(a) / numpy.linalg.norm(b))

    great, awesome, table = (loaded.vocab[w].vector for w in ("great", "awesome", "table"))
    assert cos(great, awesome) > cos(great, table)  # the encoder's sense of words survives
    with pytest.raises(ValueError, match="dims must be below"):
        build_vectors("all-MiniLM-L6-v2", tmp_path / "wide", dims=999)
