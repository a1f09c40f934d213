"""``mulcot_image``: loads each doc's image safely and encodes it into features.

Not trainable. Images are decoded with a pixel cap, EXIF orientation and RGB
conversion, encoded in batches under ``torch.inference_mode()``, and identical
images (same content hash) are encoded once per run.
"""

import logging
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.util import minibatch

from .. import workers
from ..doc_model import preview, register_extensions
from ..encoders import ImageEncoder
from ..errors import check_on_error
from ..images import DEFAULT_MAX_PIXELS, ImageError

#: What a worker thread hands back per doc: content key, the image decoded and through
#: the encoder's ``prepare`` (None when the doc has no image or the key is cached), error.
_Fetched = Tuple[Optional[str], Optional[Any], Optional[ImageError]]

logger = logging.getLogger("spacy_mulcot")

DEFAULT_ENCODER = {"@architectures": "mulcot.EfficientNetLite0.v1", "image_size": 224}


@Language.factory(
    "mulcot_image",
    assigns=["doc._.image_features"],
    default_config={
        "encoder": DEFAULT_ENCODER,
        "on_error": "raise",
        "max_pixels": DEFAULT_MAX_PIXELS,
        "batch_size": 32,
        "cache_size": 4096,
        "decode_threads": 2,
    },
)
def make_image_component(
    nlp: Language,
    name: str,
    encoder: ImageEncoder,
    on_error: str,
    max_pixels: int,
    batch_size: int,
    cache_size: int,
    decode_threads: int,
) -> "ImageFeaturizer":
    return ImageFeaturizer(
        nlp.vocab,
        encoder,
        name=name,
        on_error=on_error,
        max_pixels=max_pixels,
        batch_size=batch_size,
        cache_size=cache_size,
        decode_threads=decode_threads,
    )


class ImageFeaturizer(Pipe):
    """Sets ``doc._.image_features = {"regions", "pooled", "encoder"}`` from ``doc._.image``.

    on_error: "raise" stops at a missing/corrupt/oversized image with an error naming
        the doc and the file; "skip" logs it, leaves the features None and counts it
        in ``n_skipped``.
    cache_size: how many encoded images (by content hash) to keep for reuse.
    decode_threads: threads that read, decode and resize the next batch's images while this
        one is encoded (0: decode inline).
    """

    def __init__(
        self,
        vocab,
        encoder: ImageEncoder,
        name: str = "mulcot_image",
        *,
        on_error: str = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        batch_size: int = 32,
        cache_size: int = 4096,
        decode_threads: int = 2,
    ):
        check_on_error(on_error, "mulcot_image")
        if not isinstance(encoder, ImageEncoder):
            raise TypeError(
                f"mulcot_image: encoder must be an ImageEncoder (e.g. mulcot.EfficientNetLite0.v1), "
                f"got {type(encoder).__name__}"
            )
        register_extensions()
        workers.install()  # nlp.pipe(n_process=N): each forked worker gets its own torch threads
        self.vocab = vocab
        self.name = name
        self.encoder = encoder
        self.on_error = on_error
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.decode_threads = decode_threads
        self._cache: "OrderedDict[str, Tuple[numpy.ndarray, numpy.ndarray]]" = OrderedDict()
        self.n_skipped = 0
        self.n_encoded = 0

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Encode in batches; with ``decode_threads``, the next batch's images are read
        and decoded in worker threads while this batch is encoded (PIL releases the GIL)."""
        batches = minibatch(stream, size=batch_size or self.batch_size)
        if self.decode_threads <= 0:
            position = 0  # of the batch's first doc in this call's stream, for error messages
            for batch in batches:
                self.set_annotations(batch, self.predict(batch, offset=position))
                position += len(batch)
                yield from batch
            return
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="mulcot_image") as pool:
            ahead: Optional[Tuple[List[Doc], List[Future], int]] = None
            position = 0
            for batch in batches:
                started = (batch, [pool.submit(self._fetch, doc) for doc in batch], position)
                position += len(batch)
                if ahead is not None:
                    yield from self._finish(*ahead)
                ahead = started
            if ahead is not None:
                yield from self._finish(*ahead)

    def _finish(self, docs: List[Doc], futures: List[Future], offset: int) -> List[Doc]:
        self.set_annotations(docs, self._encode(docs, [f.result() for f in futures], offset))
        return docs

    def predict(self, docs: List[Doc], offset: int = 0) -> List[Optional[Tuple[numpy.ndarray, numpy.ndarray]]]:
        """Encode the batch's images; None for a doc without (a usable) image. ``offset``:
        the position of ``docs[0]`` in the caller's stream (errors name ``doc N`` by it).
        A skipped image's reason goes to ``doc._.image_error``."""
        return self._encode(docs, [self._fetch(doc) for doc in docs], offset)

    def _fetch(self, doc: Doc) -> _Fetched:
        """(content key, decoded and prepared image, error) for a doc: the file is read
        once, an image already in the cache is not decoded, a JPEG is decoded at the
        smallest DCT scale the encoder's input size allows, then resized by the encoder's
        ``prepare``. Safe to run in a worker thread."""
        ref = doc._.image
        if ref is None:
            return None, None, None
        try:
            key, image = ref.load_keyed(self.max_pixels, self.encoder.image_size or None, skip=self._cache)
        except ImageError as err:
            return None, None, err
        return key, (self.encoder.prepare(image) if image is not None else None), None

    def _encode(
        self, docs: List[Doc], fetched: List[_Fetched], offset: int
    ) -> List[Optional[Tuple[numpy.ndarray, numpy.ndarray]]]:
        results: List[Optional[Tuple[numpy.ndarray, numpy.ndarray]]] = [None] * len(docs)
        pending: Dict[str, List[int]] = {}
        images = {}
        for i, (doc, (key, image, err)) in enumerate(zip(docs, fetched)):
            doc._.image_error = None
            if err is not None:
                message = f"mulcot_image: doc {offset + i} ({preview(doc)}): {err}"
                if self.on_error == "raise":
                    raise ImageError(message + " (set on_error='skip' to skip such images)") from None
                logger.warning(message)
                doc._.image_error = str(err)
                self.n_skipped += 1
                continue
            if key is None:
                continue
            if key in pending:
                pending[key].append(i)
            elif key in self._cache:
                self._cache.move_to_end(key)
                results[i] = self._cache[key]
            elif image is not None:
                pending[key] = [i]
                images[key] = image
            else:  # evicted from the cache since it was fetched
                _, image, _ = self._fetch(doc)
                pending[key] = [i]
                images[key] = image
        keys = list(images)
        encoded = self.encoder.encode_prepared([images[k] for k in keys])
        self.n_encoded += len(keys)
        for key, (regions, pooled) in zip(keys, encoded):
            regions.flags.writeable = False
            pooled.flags.writeable = False
            self._remember(key, (regions, pooled))
            for i in pending[key]:
                results[i] = (regions, pooled)
        return results

    def set_annotations(self, docs: List[Doc], features) -> None:
        for doc, feats in zip(docs, features):
            if feats is None:
                doc._.image_features = None
            else:
                doc._.image_features = {"regions": feats[0], "pooled": feats[1], "encoder": self.encoder.name}

    def _remember(self, key: str, value) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = value
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    # Weights come from the encoder's own source (a package or a path in the
    # config), so there is nothing to save beyond the config.
    def to_disk(self, path, *, exclude=tuple()):
        pass

    def from_disk(self, path, *, exclude=tuple()):
        return self

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return b""

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()):
        return self
