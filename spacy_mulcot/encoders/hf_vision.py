"""Any Hugging Face vision backbone (CLIP / SigLIP / ViT vision towers, …) as an
image encoder, by hub name or local path."""

from typing import Optional, Tuple

import torch
from PIL import Image

from .base import ImageEncoder, normalise, square_pixels


class HFVisionEncoder(ImageEncoder):
    """Patch tokens of the last hidden layer as regions; the model's pooled
    output (or the mean of the patches) as the pooled vector.

    A full CLIP/SigLIP checkpoint is reduced to its vision tower. When the
    checkpoint ships an image processor, its resize and normalisation are used;
    otherwise the config's image size with mean/std 0.5.
    """

    def __init__(
        self,
        name_or_path: str,
        device: str = "cpu",
        dtype: str = "auto",
        drop_cls: bool = True,
        local_files_only: Optional[bool] = None,
        micro_batch: int = 8,
    ):
        super().__init__(device=device, dtype=dtype, micro_batch=micro_batch)
        from transformers import AutoConfig, AutoModel

        kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
            model = AutoModel.from_pretrained(name_or_path, **kwargs)
        except OSError as err:
            raise OSError(
                f"Cannot load a vision model from {name_or_path!r}: give a local folder with "
                "config.json and weights, or a hub name on a machine that can reach the hub. "
                f"({err})"
            ) from None
        if hasattr(model, "vision_model"):  # CLIPModel, SiglipModel, …
            model = model.vision_model
        vision_config = getattr(config, "vision_config", None) or config
        self.model = model.eval().to(self.device)
        self.dim = int(vision_config.hidden_size)
        self.name = f"hf:{name_or_path}"
        self.drop_cls = drop_cls
        self.image_size = int(getattr(vision_config, "image_size", 224))
        self.processor = None
        try:
            from transformers import AutoImageProcessor

            self.processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError, KeyError):
            self.processor = None

    def prepare(self, image: Image.Image):
        # The checkpoint's own processor works on whole batches of PIL images.
        return image if self.processor is not None else square_pixels(image, self.image_size)

    def preprocess(self, prepared) -> torch.Tensor:
        if self.processor is not None:
            return self.processor(images=list(prepared), return_tensors="pt")["pixel_values"]
        return normalise(prepared, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixels)
        hidden = out.last_hidden_state
        # Models with a CLS token have one more position than patches.
        patch_size = getattr(self.model.config, "patch_size", None)
        n_patches = (pixels.shape[-1] // patch_size) * (pixels.shape[-2] // patch_size) if patch_size else None
        if self.drop_cls and n_patches is not None and hidden.shape[1] == n_patches + 1:
            regions = hidden[:, 1:]
        else:
            regions = hidden
        pooled = getattr(out, "pooler_output", None)
        if pooled is None or pooled.dim() != 2:
            pooled = regions.float().mean(dim=1)
        return regions, pooled
