"""spacy-mulcot: multimodal (text + image) aspect sentiment for spaCy, with reasoning.

Importing the package registers the Doc/Span extensions, the msgpack encoder for
image references and the components; spaCy also finds them through entry points,
so ``nlp.add_pipe("mulcot")`` works without an import. ``spacy_mulcot.load()`` gives
the model that ships with the package.
"""

from . import registry  # noqa: F401  (registers architectures, readers)
from .about import __version__
from .components.image import ImageFeaturizer
from .components.mulcot import Mulcot
from .doc_model import ASPECTS_KEY, docs_from_records, make_doc, register_extensions, set_aspects, set_rationale
from .images import ImageError, ImageRef
from .labels import NEG, NEU, POLARITIES, POS
from .shipped import load, shipped_models
from .teacher.component import MulcotTeacher

__all__ = [
    "__version__",
    "ASPECTS_KEY",
    "ImageError",
    "ImageFeaturizer",
    "ImageRef",
    "Mulcot",
    "MulcotTeacher",
    "NEG",
    "NEU",
    "POLARITIES",
    "POS",
    "docs_from_records",
    "load",
    "make_doc",
    "register_extensions",
    "set_aspects",
    "set_rationale",
    "shipped_models",
]
