"""Turning gold docs into training Examples, and reading ``.spacy`` corpora.

spaCy's own ``spacy.Corpus.v1`` rebuilds the predicted doc from the text alone,
which would drop the image and any given aspects; ``mulcot.Corpus.v1`` keeps
what a model may see at prediction time.
"""

import random
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from ..doc_model import copy_inputs, restore_lists

GIVEN_ASPECTS = (True, False, "both")


def make_example(
    reference: Doc,
    given_aspects: bool = False,
    image_dir: Optional[Union[str, Path]] = None,
    rationales: bool = True,
) -> Example:
    """An Example whose predicted doc shares the reference's tokens and carries the
    image, the rationale (unless ``rationales=False``) and (with ``given_aspects``)
    the aspect spans without labels."""
    predicted = Doc(
        reference.vocab,
        words=[t.text for t in reference],
        spaces=[bool(t.whitespace_) for t in reference],
    )
    copy_inputs(reference, predicted, aspects=given_aspects, rationales=rationales)
    moved = rerooted(reference, image_dir)
    if moved is not None:
        # Re-rooted on the predicted doc only: the caller's reference is left as it was.
        predicted._.image = moved
    return Example(predicted, reference)


def rerooted(doc: Doc, image_dir: Optional[Union[str, Path]]) -> Optional[str]:
    """``doc``'s image file moved to ``image_dir`` (its file name kept); None without
    an ``image_dir`` or an image file."""
    if image_dir is None or doc._.image is None or not doc._.image.path:
        return None
    return str(Path(image_dir) / Path(doc._.image.path).name)


def read_docbin(path: Union[str, Path], nlp: Language) -> Iterator[Doc]:
    """Docs from a ``.spacy`` file or every ``.spacy`` file under a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus not found: {path}")
    files = sorted(path.rglob("*.spacy")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"No .spacy files under {path}")
    for file in files:
        try:
            docbin = DocBin(store_user_data=True).from_disk(file)
        except ValueError as err:
            raise ValueError(f"{file} is not a .spacy (DocBin) file: {str(err).splitlines()[0]}") from None
        for doc in docbin.get_docs(nlp.vocab):
            yield restore_lists(doc)


class MulcotCorpus:
    """``mulcot.Corpus.v1``: Examples from ``.spacy`` files, inputs kept on the predicted side.

    given_aspects: put the gold aspect spans (unlabelled) on the predicted doc, so a
        model classifies them (MASC) instead of extracting them; "both" yields each
        doc twice, once each way, so one evaluation scores MATE, JMASA and MASC.
    rationales: let the model see the references' rationales (teacher chains).
        Published chains were written knowing the gold label: keep them out of
        evaluation corpora for a fair score.
    image_dir: re-root image paths (file names kept) where the images moved.
    """

    def __init__(
        self,
        path: Optional[Union[str, Path]],
        *,
        given_aspects: Union[bool, str] = False,
        image_dir: Optional[Union[str, Path]] = None,
        limit: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        rationales: bool = True,
    ):
        if given_aspects not in GIVEN_ASPECTS:
            raise ValueError(f'given_aspects must be true, false or "both", got {given_aspects!r}')
        self.path = Path(path) if path is not None else None
        self.rationales = rationales
        self.given_aspects = given_aspects
        self.image_dir = image_dir
        self.limit = limit
        self.shuffle = shuffle
        self.seed = seed

    def __call__(self, nlp: Language) -> Iterator[Example]:
        if self.path is None:
            raise ValueError("mulcot.Corpus.v1 has no path: pass --paths.train / --paths.dev (a .spacy file or folder)")
        docs: Iterable[Doc] = read_docbin(self.path, nlp)
        if self.shuffle:
            docs = list(docs)
            random.Random(self.seed).shuffle(docs)
        for i, doc in enumerate(docs):
            if self.limit and i >= self.limit:
                break
            modes = (False, True) if self.given_aspects == "both" else (bool(self.given_aspects),)
            for given in modes:
                yield make_example(doc, given, self.image_dir, self.rationales)


def examples_from(
    read_docs: Callable[[Language], Iterable[Doc]], given_aspects: bool, limit: int = 0
) -> Callable[[Language], Iterator[Example]]:
    """Wrap a doc reader as a spaCy corpus reader (a callable taking ``nlp``)."""

    def reader(nlp: Language) -> Iterator[Example]:
        for i, doc in enumerate(read_docs(nlp)):
            if limit and i >= limit:
                break
            yield make_example(doc, given_aspects)

    return reader
