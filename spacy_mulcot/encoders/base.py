"""What every image encoder provides, and the shared preprocessing."""

from typing import Any, List, Sequence, Tuple

import numpy
import torch
from PIL import Image

from ..compute import torch_dtype


class ImageEncoder:
    """Turns RGB PIL images into a grid of region features and a pooled vector.

    Subclasses set ``name`` (recorded with the features, so features from
    different encoders are never mixed), ``dim`` and implement ``forward``.
    """

    name: str = "image-encoder"
    dim: int = 0
    n_regions: int = 0
    #: The input's side in pixels (0: unknown): images need not be decoded larger.
    image_size: int = 0
    #: Run ``forward`` under autocast to ``dtype`` (False: the encoder casts itself).
    autocast: bool = True

    def __init__(self, device: str = "cpu", dtype: str = "float32", micro_batch: int = 8):
        # micro_batch: images per forward pass. On CPU, big batches of conv activations
        # spill out of the caches and run slower per image, so a batch is cut into chunks.
        self.device = torch.device(device)
        self.dtype = _torch_dtype(dtype, device)
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
        self.micro_batch = micro_batch

    def prepare(self, image: Image.Image) -> Any:
        """Per-image work before batching (resize, crop): thread-safe, so
        ``mulcot_image`` runs it in its decode threads, off the encoder's path."""
        return image

    def preprocess(self, prepared: Sequence[Any]) -> torch.Tensor:
        """A batch of :meth:`prepare` outputs as the network's input tensor."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, 3, H, W) -> regions (B, R, D), pooled (B, D)."""
        raise NotImplementedError

    def encode(self, images: Sequence[Image.Image]) -> List[Tuple[numpy.ndarray, numpy.ndarray]]:
        """Encode a batch; returns one ``(regions, pooled)`` float32 pair per image."""
        return self.encode_prepared([self.prepare(image) for image in images])

    def encode_prepared(self, prepared: Sequence[Any]) -> List[Tuple[numpy.ndarray, numpy.ndarray]]:
        """As :meth:`encode`, for images already through :meth:`prepare`."""
        if not prepared:
            return []
        out: List[Tuple[numpy.ndarray, numpy.ndarray]] = []
        for start in range(0, len(prepared), self.micro_batch):
            pixels = self.preprocess(prepared[start : start + self.micro_batch]).to(self.device)
            with (
                torch.inference_mode(),
                torch.autocast(
                    self.device.type, dtype=self.dtype, enabled=self.autocast and self.dtype != torch.float32
                ),
            ):
                regions, pooled = self.forward(pixels)
            regions = regions.float().cpu().numpy()
            pooled = pooled.float().cpu().numpy()
            out.extend((regions[i], pooled[i]) for i in range(len(regions)))
        return out


def _torch_dtype(name: str, device: str = "cpu") -> torch.dtype:
    """ "auto" picks bf16 where the device runs it natively (1.4-1.8x the images/s of fp32
    on an AVX512-BF16 CPU, pooled features within cosine 0.998 of fp32; see the README),
    fp32 elsewhere; an explicit bf16 on a CPU that emulates it warns once."""
    return torch_dtype(name, setting="image encoder dtype", device=device)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic) and crop the centre square."""
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new, Image.BICUBIC)
    left = (new[0] - size) // 2
    top = (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def square_pixels(image: Image.Image, size: int) -> numpy.ndarray:
    """The centre square at ``size`` px as 8-bit (size, size, 3) pixels."""
    return numpy.asarray(resize_center_crop(image, size), dtype=numpy.uint8)


def normalise(pixels: Sequence[numpy.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """8-bit (H, W, 3) arrays as one normalised (B, 3, H, W) float tensor (scaled and
    normalised once for the batch)."""
    batch = torch.from_numpy(numpy.stack(pixels)).permute(0, 3, 1, 2).float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return (batch - mean_t) / std_t


def to_tensor(images: Sequence[Image.Image], size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A normalised (B, 3, size, size) float tensor."""
    return normalise([square_pixels(img, size) for img in images], mean, std)
