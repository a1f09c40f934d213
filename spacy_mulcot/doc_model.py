"""The multimodal Doc model: extension attributes and helpers that build Docs.

| attribute | set by | what |
| --- | --- | --- |
| ``doc._.image`` | user / readers | the post's image: path, bytes or PIL image, held as an ImageRef |
| ``doc._.image_features`` | ``mulcot_image`` | ``{"regions": (R, D), "pooled": (D,), "encoder": str}`` or None |
| ``doc._.image_error`` | ``mulcot_image`` | why the doc's image could not be used (``on_error = "skip"``), else None |
| ``doc.spans["aspects"]`` | user / readers / ``mulcot`` | aspect spans, label = POS/NEU/NEG once known |
| ``span._.sentiment_scores`` | ``mulcot`` | ``{"POS": p, "NEU": p, "NEG": p}`` |
| ``doc.cats`` | user / readers / ``mulcot`` | doc-level sentiment probabilities |
| ``span._.reasoning`` / ``doc._.reasoning`` | ``mulcot`` | the model's own chain of thought |
| ``span._.rationale`` / ``doc._.rationale`` | readers / ``mulcot_teacher`` | a teacher's chain |
| ``span._.rationale_label`` / ``doc._.rationale_label`` | readers / teacher | the label the teacher's chain predicts |
| ``span._.soft_labels`` / ``doc._.soft_labels`` | ``soft-targets`` CLI | an assistant's class logits (POS, NEU, NEG), for distillation |
| ``span._.chain_topk`` / ``doc._.chain_topk`` | ``soft-targets`` CLI | an assistant's top-k token logits along the rationale chain |
| ``doc._.tag_soft_labels`` | ``soft-targets`` CLI | an assistant's BIO tag logits (O, B, I), one row per token, for distillation |

Every value is msgpack-serialisable, so all of it survives
``DocBin(store_user_data=True)``.
"""

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from .images import ImageLike, ImageRef
from .labels import normalize_polarity, one_hot

ASPECTS_KEY = "aspects"
_IMAGE_KEY = ("._.", "image", None, None)


def _get_image(doc: Doc) -> Optional[ImageRef]:
    value = doc.user_data.get(_IMAGE_KEY)
    if value is not None and not isinstance(value, ImageRef):
        # A value stored by an older writer, or set through user_data directly.
        value = ImageRef.from_value(value)
        doc.user_data[_IMAGE_KEY] = value
    return value


def _set_image(doc: Doc, value: ImageLike) -> None:
    doc.user_data[_IMAGE_KEY] = ImageRef.from_value(value)


def register_extensions() -> None:
    """Register the extension attributes (idempotent; runs on import)."""
    if not Doc.has_extension("image"):
        Doc.set_extension("image", getter=_get_image, setter=_set_image)
    for name in (
        "image_features",
        "image_error",
        "reasoning",
        "rationale",
        "rationale_label",
        "soft_labels",
        "chain_topk",
        "tag_soft_labels",
    ):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    for name in ("sentiment_scores", "reasoning", "rationale", "rationale_label", "soft_labels", "chain_topk"):
        if not Span.has_extension(name):
            Span.set_extension(name, default=None)


register_extensions()


def restore_lists(doc: Doc) -> Doc:
    """Lists in ``doc.user_data`` values (extension values included) as they went in:
    a DocBin round trip reads them back as tuples (spaCy unpacks user data with
    ``use_list=False``), and code that appends to them would then fail."""
    for key, value in list(doc.user_data.items()):
        if isinstance(value, (tuple, list, dict)):
            doc.user_data[key] = _as_lists(value)
    return doc


def _as_lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def post_key(doc: Doc) -> Tuple[str, Optional[str]]:
    """A post's identity across corpus files: its text and its image's file name (None
    without an image or for an in-memory one). Soft-label files and ``concat --exclude``
    match posts by it."""
    path = doc._.image.path if doc._.image is not None else None
    return doc.text, Path(path).name if path else None


def preview(doc: Doc, width: int = 40) -> str:
    """The doc's text, cut to ``width`` characters, quoted: how errors name a doc."""
    text = doc.text if len(doc.text) <= width else doc.text[: width - 1] + "…"
    return repr(text)


class AspectNotFoundError(ValueError):
    """An aspect that cannot be located in its text."""


class AspectOverlapError(ValueError):
    """Two aspects of one post that share a token (a duplicate, or one inside another):
    a token belongs to one aspect at most (the BIO tags cannot say otherwise)."""


def _overlaps(start: int, end: int, used: set) -> Optional[Tuple[int, int]]:
    return next(((a, b) for a, b in used if a < end and start < b), None)


AspectSpec = Union[str, Tuple, Dict[str, Any]]


def _spec_to_dict(spec: AspectSpec, offsets: str) -> Dict[str, Any]:
    if isinstance(spec, str):
        return {"text": spec}
    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        key = ("token_start", "token_end") if offsets == "token" else ("start", "end")
        out = {key[0]: spec[0], key[1]: spec[1]}
        if len(spec) == 3:
            out["polarity"] = spec[2]
        return out
    raise TypeError(f"An aspect must be a string, a (start, end[, polarity]) tuple or a dict, got {spec!r}")


def _locate(doc: Doc, spec: Dict[str, Any], used: set) -> Span:
    """Find the span an aspect spec names, aligned outward to token boundaries."""
    if "token_start" in spec:
        start, end = int(spec["token_start"]), int(spec["token_end"])
        if not 0 <= start < end <= len(doc):
            raise AspectNotFoundError(
                f"Aspect token offsets ({start}, {end}) are outside the {len(doc)}-token text {doc.text!r}"
            )
        return doc[start:end]
    if "start" in spec:
        start, end = int(spec["start"]), int(spec["end"])
        if not 0 <= start < end <= len(doc.text):
            raise AspectNotFoundError(f"Aspect character offsets ({start}, {end}) are outside the text {doc.text!r}")
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None or not span.text.strip():
            raise AspectNotFoundError(f"Aspect character offsets ({start}, {end}) cover no token of {doc.text!r}")
        if "text" in spec and doc.text[start:end] != spec["text"]:
            raise AspectNotFoundError(
                f"Aspect text {spec['text']!r} does not match the text at ({start}, {end}): {doc.text[start:end]!r}"
            )
        return span
    if "text" in spec:
        needle = str(spec["text"])
        if not needle.strip():
            raise AspectNotFoundError("Aspect text is empty")
        pos = doc.text.find(needle)
        # Repeated mentions: take the first occurrence not already used.
        while pos != -1:
            span = doc.char_span(pos, pos + len(needle), alignment_mode="expand")
            if span is not None and _overlaps(span.start, span.end, used) is None:
                return span
            pos = doc.text.find(needle, pos + 1)
        raise AspectNotFoundError(
            f"Aspect {needle!r} is not in the text {doc.text!r} (apart from the aspects before it)"
        )
    raise TypeError(f"Aspect {spec!r} has none of 'text', 'start'/'end', 'token_start'/'token_end'")


def set_aspects(
    doc: Doc,
    aspects: Iterable[AspectSpec],
    offsets: str = "char",
) -> List[Span]:
    """Add aspects to ``doc.spans["aspects"]``.

    aspects: strings (found in the text), ``(start, end[, polarity])`` tuples
        (character offsets, or token offsets with ``offsets="token"``) or dicts with
        ``text`` / ``start``+``end`` / ``token_start``+``token_end`` and optional
        ``polarity`` and ``rationale``. Character offsets expand to whole tokens.
    RAISES AspectNotFoundError: when an aspect is not in the text.
    RAISES AspectOverlapError: when an aspect shares a token with another one (a
        duplicate, or nested): refused, not merged, so the data's mistake is seen.
    """
    if offsets not in ("char", "token"):
        raise ValueError(f"offsets must be 'char' or 'token', got {offsets!r}")
    infos = [_spec_to_dict(spec, offsets) for spec in aspects]
    group = doc.spans.get(ASPECTS_KEY)
    spans = list(group) if group is not None else []
    used = {(s.start, s.end) for s in spans}
    added = []
    for info in infos:
        span = _locate(doc, info, used)
        clash = _overlaps(span.start, span.end, used)
        if clash is not None:
            what = "repeats" if clash == (span.start, span.end) else "overlaps"
            raise AspectOverlapError(
                f"Aspect {span.text!r} (tokens {span.start}-{span.end}) {what} the aspect "
                f"{doc[clash[0] : clash[1]].text!r} (tokens {clash[0]}-{clash[1]}) in {preview(doc)}"
            )
        polarity = info.get("polarity", info.get("label"))
        label = normalize_polarity(polarity) if polarity is not None else ""
        span = Span(doc, span.start, span.end, label=label)
        spans.append(span)
        used.add((span.start, span.end))
        added.append(span)
    doc.spans[ASPECTS_KEY] = spans
    # Extension values are keyed by character offsets, so set them on the final spans.
    for span, info in zip(added, infos):
        rationale = info.get("rationale")
        if rationale is not None:
            set_rationale(span, rationale, info.get("rationale_label"))
    return added


def set_rationale(target: Union[Doc, Span], chain: str, label: Optional[str] = None) -> None:
    """Attach a teacher's chain (and the label it predicts, parsed if not given)."""
    from .chains import parse_chain  # local: chains imports nothing from here

    if not isinstance(chain, str):
        raise TypeError(f"A rationale must be a string, got {type(chain).__name__}")
    target._.rationale = chain
    if label is None:
        label = parse_chain(chain).prediction
    target._.rationale_label = normalize_polarity(label) if label else None


def make_doc(
    nlp_or_vocab: Union[Language, Vocab],
    text: Optional[str] = None,
    image: ImageLike = None,
    aspects: Optional[Iterable[AspectSpec]] = None,
    *,
    words: Optional[Sequence[str]] = None,
    label: Optional[str] = None,
    rationale: Optional[str] = None,
    offsets: str = "char",
) -> Doc:
    """Build a Doc for one post: text (or pre-tokenized ``words``), image, aspects.

    With a Language the text goes through its tokenizer; with a Vocab (or when
    ``words`` are given) the text is split on whitespace, as in pre-tokenized
    benchmark data.
    """
    if words is None:
        if not isinstance(text, str):
            raise TypeError(f"Post text must be a string, got {type(text).__name__}")
        if isinstance(nlp_or_vocab, Language):
            doc = nlp_or_vocab.make_doc(text)
        else:
            words = text.split()
    if words is not None:
        vocab = nlp_or_vocab.vocab if isinstance(nlp_or_vocab, Language) else nlp_or_vocab
        words = list(words)
        doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False] * bool(words))
    doc._.image = image
    if aspects is not None:
        set_aspects(doc, aspects, offsets=offsets)
    if label is not None:
        doc.cats = one_hot(label)
    if rationale is not None:
        set_rationale(doc, rationale)
    return doc


def docs_from_records(
    nlp: Language, records: Iterable[Union[Tuple, Dict[str, Any]]], offsets: str = "char"
) -> List[Doc]:
    """Docs from ``(text, image, aspects)`` tuples or dicts with those keys
    (plus optional ``label`` and ``rationale``)."""
    docs = []
    for i, record in enumerate(records):
        if isinstance(record, dict):
            rec = dict(record)
        elif isinstance(record, (tuple, list)) and 1 <= len(record) <= 3:
            rec = dict(zip(("text", "image", "aspects"), record))
        else:
            raise TypeError(f"Record {i}: expected (text, image, aspects) or a dict, got {record!r}")
        try:
            docs.append(
                make_doc(
                    nlp,
                    rec.get("text"),
                    rec.get("image"),
                    rec.get("aspects"),
                    label=rec.get("label"),
                    rationale=rec.get("rationale"),
                    offsets=offsets,
                )
            )
        except (ValueError, TypeError) as err:
            raise type(err)(f"Record {i}: {err}") from None
    return docs


def copy_inputs(source: Doc, target: Doc, aspects: bool = False, rationales: bool = True) -> Doc:
    """Copy what a model may see at prediction time from a gold doc to a fresh one:
    the image, doc-level rationale and, with ``aspects=True``, the aspect spans
    (without their polarity) and their rationales. ``rationales=False`` leaves the
    rationales out. Both docs must share tokens."""
    target._.image = source._.image
    if rationales and source._.rationale is not None:
        target._.rationale = source._.rationale
        target._.rationale_label = source._.rationale_label
    if aspects and ASPECTS_KEY in source.spans:
        spans = [Span(target, s.start, s.end) for s in source.spans[ASPECTS_KEY]]
        target.spans[ASPECTS_KEY] = spans
        for gold, span in zip(source.spans[ASPECTS_KEY], spans):
            if rationales and gold._.rationale is not None:
                span._.rationale = gold._.rationale
                span._.rationale_label = gold._.rationale_label
    return target
