"""Image references and safe image loading.

A post's image lives on ``doc._.image`` as an :class:`ImageRef`: the file path
(if any) and a SHA-256 of the file's bytes. The pixels or bytes a user handed
over are kept in memory too; serialising a Doc writes the reference and, for an image
given in memory (it has no file to be re-read from), its bytes — a PIL image as a
lossless PNG — so nothing is lost through a DocBin or ``nlp.pipe(n_process=N)``.
"""

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any, Container, Optional, Tuple, Union

import srsly
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Default cap on decoded pixels (width x height): 40 megapixels. Larger images
#: are refused before decoding (a decompression bomb decodes to gigabytes).
DEFAULT_MAX_PIXELS = 40_000_000

ImageLike = Union[str, Path, bytes, Image.Image, "ImageRef", None]


class ImageError(ValueError):
    """An image that is missing, unreadable, or too large."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_pil(image: Image.Image) -> str:
    """A content hash for in-memory pixels (mode and size included)."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class ImageRef:
    """Where a doc's image comes from, and a hash of its content.

    path: the file, when the image came from one (kept through serialisation).
    sha256: the content hash, known once the bytes or pixels have been seen.
    The in-memory payload (bytes or a PIL image) is serialised with the reference
    (bytes as they are, a PIL image as PNG; the hash stays the original's).
    """

    __slots__ = ("path", "sha256", "_payload")

    def __init__(
        self,
        path: Optional[Union[str, Path]] = None,
        sha256: Optional[str] = None,
        payload: Union[bytes, Image.Image, None] = None,
    ):
        self.path = str(path) if path is not None else None
        self.sha256 = sha256
        self._payload = payload

    @classmethod
    def from_value(cls, value: ImageLike) -> Optional["ImageRef"]:
        """Wrap what a user sets on ``doc._.image``: a path, bytes or a PIL image."""
        if value is None or isinstance(value, ImageRef):
            return value
        if isinstance(value, (str, Path)):
            if not str(value).strip():
                raise ImageError("Image path is empty")
            return cls(path=value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            return cls(sha256=sha256_bytes(data), payload=data)
        if isinstance(value, Image.Image):
            if _is_lazy(value):
                # Opened but not decoded (Image.open): hashing would decode it now, before
                # any size check and outside the component's error handling. Deferred.
                return cls(payload=value)
            return cls(sha256=sha256_pil(value), payload=value)
        raise TypeError(f"doc._.image must be a file path, raw image bytes or a PIL.Image, got {type(value).__name__}")

    @property
    def in_memory(self) -> bool:
        return self._payload is not None

    @property
    def key(self) -> Optional[str]:
        """The content hash, computing it from the file if needed; None if unreadable."""
        if self.sha256 is None and isinstance(self._payload, Image.Image):
            try:
                self._decode_payload(DEFAULT_MAX_PIXELS)
            except ImageError:
                return None
        if self.sha256 is None and self.path is not None:
            try:
                self.sha256 = sha256_bytes(Path(self.path).read_bytes())
            except OSError:
                return None
        return self.sha256

    def _decode_payload(self, max_pixels: int) -> Image.Image:
        """The in-memory PIL image, decoded if it was opened lazily (its size checked
        first: the header says it, decoding a bomb is what the cap is for), hashed."""
        image = self._payload
        _check_size(image.size, max_pixels, self.describe())
        if _is_lazy(image):
            try:
                image.load()
            except (OSError, SyntaxError, ValueError) as err:
                raise ImageError(f"Image {self.describe()} is corrupt or truncated: {err}") from None
        if self.sha256 is None:
            self.sha256 = sha256_pil(image)
        return image

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: Optional[int] = None) -> Image.Image:
        """Decode to an upright RGB PIL image, or raise ImageError saying why.

        min_size: the caller only needs both sides to be at least this many pixels, so a
        JPEG may be decoded at 1/2, 1/4 or 1/8 scale (see :func:`decode_image`)."""
        return self.load_keyed(max_pixels, min_size)[1]

    def load_keyed(
        self, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: Optional[int] = None, skip: Container[str] = ()
    ) -> Tuple[str, Optional[Image.Image]]:
        """The content hash and the decoded image, the file read once; the image is None
        when the hash is in ``skip`` (e.g. already encoded). Raises ImageError."""
        payload = self._payload
        if isinstance(payload, Image.Image):
            if self.sha256 is not None and self.sha256 in skip:
                return self.sha256, None
            image = self._decode_payload(max_pixels)
            if self.sha256 in skip:
                return self.sha256, None
            return self.sha256, _to_rgb(image, self.describe())
        if payload is None:
            if self.path is None:
                raise ImageError("Image reference has neither a path nor in-memory data")
            try:
                data = Path(self.path).read_bytes()
            except FileNotFoundError:
                raise ImageError(f"Image file not found: {self.path}") from None
            except OSError as err:
                raise ImageError(f"Cannot read image file {self.path}: {err}") from None
            self.sha256 = sha256_bytes(data)
        else:
            data = payload
        if self.sha256 in skip:
            return self.sha256, None
        return self.sha256, decode_image(data, max_pixels=max_pixels, source=self.describe(), min_size=min_size)

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        return f"<in-memory image sha256={(self.sha256 or '?')[:12]}>"

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256}

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ImageRef) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ImageRef(path={self.path!r}, sha256={self.sha256!r})"


def _is_lazy(image: Image.Image) -> bool:
    """Opened from a file or stream but not yet decoded (``Image.open`` before ``load``)."""
    return isinstance(image, ImageFile.ImageFile) and bool(image.tile)


def _check_size(size, max_pixels: int, source: str) -> None:
    width, height = size
    if max_pixels and width * height > max_pixels:
        raise ImageError(
            f"Image {source} has {width}x{height} = {width * height} pixels, above the "
            f"limit of {max_pixels} (raise max_pixels if this image is legitimate)"
        )


def _to_rgb(image: Image.Image, source: str = "<image>") -> Image.Image:
    """Upright RGB. Modes with more than 8 bits per channel are rescaled to 0–255
    (PIL's own conversion clips them, which would turn most 16-bit photos white);
    a mode whose range cannot be known is refused."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = _to_8bit(image, source)
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparency on white, as a viewer would show it.
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.split()[-1])
            image = background
        else:
            image = image.convert("RGB")
    return image


def _to_8bit(image: Image.Image, source: str) -> Image.Image:
    """A single-channel 16-bit, 32-bit integer or float image as 8-bit grey, scaled by its
    nominal range: 16-bit by 65535, integer images by the range their values fit
    (8 or 16 bits), float images in [0, 1] or [0, 255]."""
    import numpy

    values = numpy.asarray(image, dtype="float64")
    if values.size == 0:
        raise ImageError(f"Image {source} has no pixels")
    low, high = float(values.min()), float(values.max())
    if not numpy.isfinite(values).all():
        raise ImageError(f"Image {source} ({image.mode}) has non-finite pixel values")
    if image.mode.startswith("I;16"):
        scale = 65535.0
    elif image.mode == "I" and low >= 0 and high <= 255:
        scale = 255.0
    elif image.mode == "I" and low >= 0 and high <= 65535:
        scale = 65535.0
    elif image.mode == "F" and low >= 0 and high <= 1.0:
        scale = 1.0
    elif image.mode == "F" and low >= 0 and high <= 255.0:
        scale = 255.0
    else:
        raise ImageError(
            f"Image {source} is mode {image.mode} with values in [{low:g}, {high:g}]; its brightness "
            "range is unknown, so it cannot be shown faithfully as 8-bit RGB (convert it first)"
        )
    grey = numpy.clip(numpy.rint(values * (255.0 / scale)), 0, 255).astype("uint8")
    return Image.fromarray(grey, mode="L")


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "<bytes>", min_size: Optional[int] = None
) -> Image.Image:
    """Decode image bytes safely: size checked before pixels are decoded,
    EXIF orientation applied, converted to RGB.

    min_size: a JPEG is decoded at the smallest DCT scale (1/1, 1/2, 1/4 or 1/8) that keeps
    both sides at least ``min_size`` pixels (libjpeg's "draft" mode: 3-10x less decoding
    for a photo that is resized to an encoder's 224 px anyway); other formats decode fully.
    The size limit applies to the file's full size either way."""
    try:
        with warnings.catch_warnings():
            # The size is checked against max_pixels just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        _check_size(image.size, max_pixels, source)
        if min_size and image.format == "JPEG" and min(image.size) >= 2 * min_size:
            # Before EXIF rotation: a square request is the same in either orientation.
            image.draft(image.mode if image.mode in ("L", "RGB", "CMYK") else None, (min_size, min_size))
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"Image {source} refused as a decompression bomb: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"Image {source} is corrupt or not an image: {_pil_reason(err)}") from None
    return _to_rgb(image, source)


def _pil_reason(err: BaseException) -> str:
    """PIL's message without the in-memory file it read from (``<_io.BytesIO object at
    0x…>`` means nothing to a user)."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(err)).strip()
    return text or type(err).__name__


def _payload_bytes(payload: Union[bytes, Image.Image]) -> bytes:
    if isinstance(payload, Image.Image):
        out = io.BytesIO()
        try:
            payload.save(out, format="PNG")  # lossless; the hash stays the original's
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageError(f"In-memory image cannot be saved with the doc: {err}") from None
        return out.getvalue()
    return payload


@srsly.msgpack_encoders("mulcot_imageref")
def _serialize_imageref(obj, chain=None):
    if isinstance(obj, ImageRef):
        data = obj.to_dict()
        if obj.in_memory:
            data["payload"] = _payload_bytes(obj._payload)
        return {"__mulcot_imageref__": data}
    return obj if chain is None else chain(obj)


@srsly.msgpack_decoders("mulcot_imageref")
def _deserialize_imageref(obj, chain=None):
    if isinstance(obj, dict) and "__mulcot_imageref__" in obj:
        return ImageRef(**obj["__mulcot_imageref__"])
    return obj if chain is None else chain(obj)
