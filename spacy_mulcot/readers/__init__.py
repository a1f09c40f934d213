"""Dataset readers, registered as spaCy readers (``[corpora]`` in a config)."""

from typing import Callable, Iterator, Optional, Union

from spacy.language import Language
from spacy.training import Example

from .corpus import MulcotCorpus, examples_from, make_example, read_docbin
from .errors import ReadStats, RowError
from .jsonl import read_jsonl
from .mvsa import read_mvsa
from .reasoning import ChainIndex
from .twitter import read_rows, read_twitter

Reader = Callable[[Language], Iterator[Example]]


def corpus_v1(
    path: Optional[str],
    given_aspects: Union[bool, str] = False,
    image_dir: Optional[str] = None,
    limit: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    rationales: bool = True,
) -> MulcotCorpus:
    """``mulcot.Corpus.v1``: a ``.spacy`` file or folder written by ``convert``.
    ``given_aspects``: true, false or "both"; ``rationales``: show teacher chains."""
    return MulcotCorpus(
        path,
        given_aspects=given_aspects,
        image_dir=image_dir,
        limit=limit,
        shuffle=shuffle,
        seed=seed,
        rationales=rationales,
    )


def twitter_v1(
    path: str,
    view: str = "sentence",
    image_dir: Optional[str] = None,
    reasoning: Optional[str] = None,
    on_error: str = "raise",
    limit: int = 0,
) -> Reader:
    """``mulcot.TwitterReader.v1``: Twitter-2015/2017 .tsv; the ``aspect`` view gives
    each row's aspect on the predicted doc (MASC), ``sentence`` leaves extraction
    to the model (MATE/JMASA)."""
    chains = ChainIndex(reasoning) if reasoning else None

    def read(nlp):
        return read_twitter(path, nlp.vocab, view=view, image_dir=image_dir, chains=chains, on_error=on_error)

    return examples_from(read, given_aspects=view == "aspect", limit=limit)


def mvsa_v1(
    path: str, image_dir: Optional[str] = None, on_error: str = "raise", limit: int = 0, images: Optional[bool] = None
) -> Reader:
    """``mulcot.MVSAReader.v1``: MVSA-Single/Multiple JSON (post-level sentiment);
    ``images``: null (when the image folder exists), true or false (text only)."""

    def read(nlp):
        return read_mvsa(path, nlp, image_dir=image_dir, on_error=on_error, images=images)

    return examples_from(read, given_aspects=False, limit=limit)


def jsonl_v1(
    path: str, image_dir: Optional[str] = None, given_aspects: bool = False, on_error: str = "raise", limit: int = 0
) -> Reader:
    """``mulcot.JSONLReader.v1``: the generic JSONL format."""

    def read(nlp):
        return read_jsonl(path, nlp, image_dir=image_dir, on_error=on_error)

    return examples_from(read, given_aspects=given_aspects, limit=limit)


__all__ = [
    "ChainIndex",
    "MulcotCorpus",
    "ReadStats",
    "RowError",
    "make_example",
    "read_docbin",
    "read_jsonl",
    "read_mvsa",
    "read_rows",
    "read_twitter",
]
