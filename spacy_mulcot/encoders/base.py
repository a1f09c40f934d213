"""What every image encoder provides, and the shared preprocessing."""
from typing import List, Sequence, Tuple

import numpy
import torch
from PIL import Image


class ImageEncoder:
    """Turns RGB PIL images into a grid of region features and a pooled vector.

    Subclasses set ``name`` (recorded with the features, so features from
    different encoders are never mixed), ``dim`` and implement ``forward``.
    """

    name: str = "image-encoder"
    dim: int = 0
    n_regions: int = 0

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        self.device = torch.device(device)
        self.dtype = _torch_dtype(dtype)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, 3, H, W) -> regions (B, R, D), pooled (B, D)."""
        raise NotImplementedError

    def encode(self, images: Sequence[Image.Image]) -> List[Tuple[numpy.ndarray, numpy.ndarray]]:
        """Encode a batch; returns one ``(regions, pooled)`` float32 pair per image."""
        if not images:
            return []
        pixels = self.preprocess(images).to(self.device)
        with torch.inference_mode():
            if self.dtype != torch.float32:
                with torch.autocast(self.device.type, dtype=self.dtype):
                    regions, pooled = self.forward(pixels)
            else:
                regions, pooled = self.forward(pixels)
        regions = regions.float().cpu().numpy()
        pooled = pooled.float().cpu().numpy()
        return [(regions[i], pooled[i]) for i in range(len(images))]


def _torch_dtype(name: str) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic) and crop the centre square."""
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new, Image.BICUBIC)
    left = (new[0] - size) // 2
    top = (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(
    images: Sequence[Image.Image], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """A normalised (B, 3, size, size) float tensor."""
    arrays = [numpy.asarray(resize_center_crop(img, size), dtype=numpy.float32) / 255.0 for img in images]
    batch = torch.from_numpy(numpy.stack(arrays)).permute(0, 3, 1, 2)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t
