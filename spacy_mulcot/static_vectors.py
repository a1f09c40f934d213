"""Small static word vectors distilled from a sentence encoder, for the fast student.

A text encoder trained from scratch on ~2,000 posts learns little about sentiment
words; a transformer knows them but is what makes the assistant slow. This keeps what
the transformer knows about single words and drops the rest (the idea of model2vec,
Minishlab 2024): every word piece of the encoder's vocabulary is run through it alone,
its output vector kept, the table reduced by PCA to a few dozen dimensions; a word's
vector is the mean of its pieces'. The result is a spaCy vectors table keyed by the
lower-cased word (``[initialize] vectors`` of ``configs/student_fast.cfg``), read by
``MultiHashEmbed``'s static-vectors input: a few MB, no transformer at prediction.
"""

from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

import numpy

PathLike = Union[str, Path]


def piece_vectors(model: str, dims: int = 64, batch_size: int = 512) -> Tuple[object, numpy.ndarray]:
    """The encoder's tokenizer and one ``dims``-wide vector per vocabulary piece: the
    encoder's output at the piece's position, given ``[CLS] piece [SEP]``, PCA-reduced."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .hub import resolve_model_path

    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).eval()
    width = encoder.config.hidden_size
    if not 0 < dims < width:
        raise ValueError(f"dims must be below the encoder's width {width}, got {dims}")
    ids = torch.arange(len(tokenizer), dtype=torch.long)
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise ValueError(f"{model}: its tokenizer has no CLS/SEP (or BOS/EOS) token to frame a piece with")
    rows = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            batch = torch.stack([torch.full_like(chunk, cls_id), chunk, torch.full_like(chunk, sep_id)], dim=1)
            rows.append(encoder(input_ids=batch).last_hidden_state[:, 1].float().numpy())
    table = numpy.concatenate(rows)
    centred = table - table.mean(axis=0)
    _, _, components = numpy.linalg.svd(centred, full_matrices=False)
    return tokenizer, (centred @ components[:dims].T).astype(numpy.float32)


def word_list(tokenizer, extra: Iterable[str] = ()) -> List[str]:
    """Lower-cased words to give vectors: the tokenizer's whole-word pieces (no ``##``
    continuations, no special tokens) and ``extra`` words, first seen first."""
    specials = set(tokenizer.all_special_tokens)
    words = [p for p in tokenizer.get_vocab() if not p.startswith("##") and p not in specials and p.strip()]
    seen = set()
    out = []
    for word in [*sorted(words), *(w.lower() for w in extra)]:
        if word and not word.isspace() and word not in seen:
            seen.add(word)
            out.append(word)
    return out


def word_vectors(tokenizer, pieces: numpy.ndarray, words: Sequence[str]) -> numpy.ndarray:
    """One row per word: the mean of its pieces' vectors (the unknown piece's when it
    has none)."""
    unk = tokenizer.unk_token_id or 0
    out = numpy.zeros((len(words), pieces.shape[1]), dtype=numpy.float32)
    encoded = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(encoded):
        out[i] = pieces[ids or [unk]].mean(axis=0)
    return out


def build_vectors(
    model: str, output: PathLike, dims: int = 64, corpora: Sequence[PathLike] = (), lang: str = "en"
) -> dict:
    """Write a spaCy pipeline folder holding only the vectors (keyed by ``LOWER``), for
    ``[initialize] vectors``: the encoder's whole words plus the words of ``corpora``."""
    import spacy
    from spacy.vectors import Vectors

    from .atomic import atomic_dir
    from .readers import read_docbin

    nlp = spacy.blank(lang)
    extra = [token.text for path in corpora for doc in read_docbin(path, nlp) for token in doc if not token.is_space]
    tokenizer, pieces = piece_vectors(model, dims)
    words = word_list(tokenizer, extra)
    table = word_vectors(tokenizer, pieces, words)
    vectors = Vectors(strings=nlp.vocab.strings, shape=table.shape, attr="LOWER")
    for word, row in zip(words, table):
        vectors.add(word, vector=row)
    nlp.vocab.vectors = vectors
    with atomic_dir(Path(output)) as tmp:
        nlp.to_disk(tmp)
    return {"words": len(words), "dims": dims, "from_corpora": len(set(w.lower() for w in extra)), "model": model}
