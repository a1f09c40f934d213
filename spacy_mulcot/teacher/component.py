"""The ``mulcot_teacher`` component: a (large) LLM writes a reasoning chain per
aspect or per post, with MulCoT-RD's two-stage enhancement against the gold label.

Writes ``span._.rationale`` / ``doc._.rationale`` and ``_.rationale_label`` (the
chain's parsed prediction); what happened to each item (stage, attempts, tokens,
errors) goes to ``doc.user_data["mulcot_teacher"]``. Unmatched and failed items get
no rationale. Not trainable.
"""

import io
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from ..cache import cache_dir
from ..doc_model import ASPECTS_KEY, preview
from ..errors import check_on_error
from ..images import ImageError
from ..labels import POLARITIES
from .backends.base import TeacherError
from .cache import ReplyCache
from .enhancement import RunReport, TeacherItem, TeacherResult, TwoStageTeacher
from .prompting import LEVELS, TeacherPrompt

USER_DATA_KEY = "mulcot_teacher"
#: on_error: as everywhere in the project (``errors.ON_ERROR``); "warn", this
#: component's old word for "skip", is still accepted.


class TeacherWarning(UserWarning):
    """Some items of a batch got no chain (``on_error = "skip"``)."""


#: ``cache_path = "auto"``: ``$MULCOT_CACHE/teacher.sqlite``, resolved when the component
#: is made (a saved config says "auto", not one machine's home folder).
DEFAULT_CACHE = "auto"


def resolve_cache_path(cache_path: Optional[str]) -> Optional[Path]:
    """The reply cache's file for a ``cache_path`` setting (null: no cache)."""
    if not cache_path:
        return None
    return cache_dir() / "teacher.sqlite" if cache_path == DEFAULT_CACHE else Path(cache_path)


@Language.factory(
    "mulcot_teacher",
    assigns=["span._.rationale", "span._.rationale_label", "doc._.rationale", "doc._.rationale_label"],
    default_config={
        "backend": {"@misc": "mulcot.OpenAICompatible.v1", "model": "gpt-4o-mini"},
        "level": "aspect",
        "spans_key": ASPECTS_KEY,
        "two_stage": True,
        "max_retries": 3,
        "retry_temperature": 0.7,
        "prompt_path": None,
        "cache_path": DEFAULT_CACHE,
        "keep_existing": True,
        "describe_images": True,
        "batch_size": 64,
        "on_error": "raise",
    },
)
def make_teacher(
    nlp: Language,
    name: str,
    backend: Any,
    level: str,
    spans_key: str,
    two_stage: bool,
    max_retries: int,
    retry_temperature: float,
    prompt_path: Optional[str],
    cache_path: Optional[str],
    keep_existing: bool,
    describe_images: bool,
    batch_size: int,
    on_error: str,
) -> "MulcotTeacher":
    """level: "aspect" (a chain per span in ``spans_key``, MASC) or "post" (MSC).
    two_stage: re-ask for the gold label where stage 1 disagrees (needs gold labels:
        the spans' labels, or the highest of ``doc.cats``).
    prompt_path: a jinja template replacing the packaged one for ``level``.
    cache_path: SQLite reply cache ("auto": $MULCOT_CACHE/teacher.sqlite; null: no cache).
    keep_existing: leave items that already have a rationale (published chains) alone.
    describe_images: for backends that cannot see images, describe the image in words
        from EfficientNet-Lite0's top ImageNet classes.
    on_error: what happens when a doc's chains cannot be written (its image cannot be
        read, the server refuses or is down): "raise" stops with an error naming the doc
        (replies already received stay cached); "skip" marks those items failed, warns
        once per batch and goes on.
    """
    return MulcotTeacher(
        nlp.vocab,
        backend,
        name=name,
        level=level,
        spans_key=spans_key,
        two_stage=two_stage,
        max_retries=max_retries,
        retry_temperature=retry_temperature,
        prompt_path=prompt_path,
        cache_path=cache_path,
        keep_existing=keep_existing,
        describe_images=describe_images,
        batch_size=batch_size,
        on_error=on_error,
    )


class MulcotTeacher:
    def __init__(
        self,
        vocab,
        backend,
        name: str = "mulcot_teacher",
        *,
        level: str = "aspect",
        spans_key: str = ASPECTS_KEY,
        two_stage: bool = True,
        max_retries: int = 3,
        retry_temperature: float = 0.7,
        prompt_path: Optional[str] = None,
        cache_path: Optional[str] = DEFAULT_CACHE,
        keep_existing: bool = True,
        describe_images: bool = True,
        batch_size: int = 64,
        on_error: str = "raise",
    ):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if on_error == "warn":
            warnings.warn(
                f'[{name}] on_error = "warn" is the old word for "skip"; write "skip"', DeprecationWarning, stacklevel=2
            )
            on_error = "skip"
        check_on_error(on_error)
        self.on_error = on_error
        self.vocab = vocab
        self.name = name
        self.backend = backend
        self.level = level
        self.spans_key = spans_key
        self.keep_existing = keep_existing
        self.describe_images = describe_images
        self.batch_size = batch_size
        path = resolve_cache_path(cache_path)
        self.cache = ReplyCache(str(path)) if path is not None else None
        self.runner = TwoStageTeacher(
            backend,
            TeacherPrompt(level, prompt_path),
            cache=self.cache,
            two_stage=two_stage,
            max_retries=max_retries,
            retry_temperature=retry_temperature,
        )
        self._describer = None
        self.progress = False
        #: The report of the last batch (items, stages, requests, tokens, failures).
        self.last_report: Optional[RunReport] = None

    # ---- items ----------------------------------------------------------------

    def _targets(self, doc: Doc) -> List[Tuple[int, Optional[str], Optional[str], bool]]:
        """(span index or -1, aspect text, gold label, already has a chain)."""
        if self.level == "post":
            gold = max(doc.cats, key=doc.cats.get) if all(l in doc.cats for l in POLARITIES) else None
            return [(-1, None, gold, bool(doc._.rationale))]
        if self.spans_key not in doc.spans:
            return []
        return [
            (j, span.text, span.label_ if span.label_ in POLARITIES else None, bool(span._.rationale))
            for j, span in enumerate(doc.spans[self.spans_key])
        ]

    def _image(self, doc: Doc) -> Tuple[Optional[bytes], str, Optional[str]]:
        image = doc._.image
        if image is None:
            return None, "image/jpeg", None
        pil = image.load()
        if image.path and Path(image.path).exists():
            data = Path(image.path).read_bytes()
            mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
        else:
            buffer = io.BytesIO()
            pil.convert("RGB").save(buffer, format="JPEG", quality=90)
            data, mime = buffer.getvalue(), "image/jpeg"
        description = None
        if self.describe_images and not self.backend.sees_images:
            description = self.describe(pil)
        return data, mime, description

    def describe(self, pil) -> str:
        """The image in words: EfficientNet-Lite0's top-3 ImageNet classes."""
        if self._describer is None:
            from ..encoders import EfficientNetLite0Encoder

            self._describer = EfficientNetLite0Encoder()
        top = self._describer.classify([pil.convert("RGB")], top_k=3)[0]
        return "likely shows " + ", ".join(f"{name} ({p:.0%})" for name, p in top)

    # ---- running --------------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        position = 0
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            report = self.annotate(docs, offset=position)
            position += len(docs)
            if report.aborted or report.stages["failed"]:
                self._failed(report)
            yield from docs

    def _failed(self, report: RunReport) -> None:
        """Say that chains are missing: raise or warn, as ``on_error`` asks."""
        failed = report.stages["failed"]
        message = (
            f"[{self.name}] {failed} of {report.items} items got no chain"
            + (f"; {report.aborted}" if report.aborted else "")
            + (f". First: {report.failures[0]}" if report.failures else "")
        )
        if self.on_error == "raise":
            raise TeacherError(message + " (set on_error='skip' to go on without them)")
        warnings.warn(message, TeacherWarning)

    def annotate(
        self,
        docs: List[Doc],
        on_item: Optional[Callable[[int, int, TeacherResult], None]] = None,
        offset: int = 0,
    ) -> RunReport:
        """Run the teacher over every target of ``docs`` (concurrently) and write the
        results; returns the run report. ``on_item(doc_index, span_index, result)``.
        ``offset``: the position of ``docs[0]`` in the caller's stream (named in errors).

        A doc whose image cannot be read raises (``on_error="raise"``, before any
        request is sent) or has its items marked failed, unsent (``"skip"``)."""
        keys, items = [], []
        unsent: List[Tuple[Tuple[int, int], TeacherResult]] = []
        for i, doc in enumerate(docs):
            targets = [t for t in self._targets(doc) if not (t[3] and self.keep_existing)]
            if not targets:
                continue
            try:
                image, mime, description = self._image(doc)
            except ImageError as err:
                message = f"{self.name}: doc {offset + i} ({preview(doc)}): {err}"
                if self.on_error == "raise":
                    raise ImageError(message + " (set on_error='skip' to skip such docs)") from None
                unsent.extend(((i, j), TeacherResult(status="failed", error=message)) for j, *_ in targets)
                continue
            for j, aspect, gold, _ in targets:
                keys.append((i, j))
                items.append(TeacherItem(doc.text, aspect, gold, image, mime, description))
        callback = (lambda k, r: on_item(*keys[k], r)) if on_item else None
        results, report = self.runner.run(items, progress=self.progress, on_result=callback)
        for (i, j), result in zip(keys, results):
            self._write(docs[i], j, result)
        for (i, j), result in unsent:
            self._write(docs[i], j, result)
            report.items += 1
            report.stages["failed"] += 1
            report.failures.append(result.error)
            if on_item is not None:
                on_item(i, j, result)
        self.last_report = report
        return report

    def _write(self, doc: Doc, j: int, result: TeacherResult) -> None:
        kept = result.status in ("stage1", "stage2")
        if j >= 0:
            span = doc.spans[self.spans_key][j]
            if kept:
                span._.rationale, span._.rationale_label = result.chain, result.label
        elif kept:
            doc._.rationale, doc._.rationale_label = result.chain, result.label
        record = {"span": j, **{k: v for k, v in result.to_dict().items() if k != "chain" or not kept}}
        doc.user_data.setdefault(USER_DATA_KEY, [])
        log = [r for r in doc.user_data[USER_DATA_KEY] if r.get("span") != j]
        doc.user_data[USER_DATA_KEY] = log + [record]

    # A teacher has no weights; its settings live in the pipeline config.
    def to_disk(self, path, *, exclude=tuple()):
        Path(path).mkdir(parents=True, exist_ok=True)

    def from_disk(self, path, *, exclude=tuple()):
        return self

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude=tuple()):
        return self
