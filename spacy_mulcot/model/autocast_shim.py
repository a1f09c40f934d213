"""The CPU-autocast shim of ``mulcot.TransformerModel.v1`` (kept apart so that importing
the package does not import spacy-transformers and transformers: the architecture
imports this module when a pipeline builds one)."""

from typing import Any

import torch
from spacy_transformers.layers.hf_shim import HFShim

FP32 = torch.float32


def _fp32(outputs):
    """HF outputs with every floating tensor cast back to fp32 (listeners and numpy
    expect fp32; autograd carries the casts back)."""
    for key, value in list(outputs.items()):
        if torch.is_tensor(value) and value.is_floating_point():
            outputs[key] = value.float()
    return outputs


class CpuAutocastHFShim(HFShim):
    """spacy-transformers' ``HFShim`` whose prediction and training forward run under
    CPU autocast (``inference_dtype`` / ``train_dtype``), optionally with the word-piece
    embeddings frozen. Weights and gradients stay fp32. Loading weights replaces the
    wrapped HF model but keeps this object, so the settings survive ``from_disk``."""

    def __init__(
        self,
        *args: Any,
        inference_dtype: torch.dtype = FP32,
        train_dtype: torch.dtype = FP32,
        freeze_embeddings: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.inference_dtype = inference_dtype
        self.train_dtype = train_dtype
        self.freeze_embeddings = bool(freeze_embeddings)

    def predict(self, inputs):
        if self.device.type != "cpu" or self.inference_dtype == FP32:
            return super().predict(inputs)
        self._model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=self.inference_dtype):
            outputs = self._model(*inputs.args, **inputs.kwargs)
        self._model.train()
        return _fp32(outputs)

    def begin_update(self, inputs):
        if self.freeze_embeddings:
            # Again at every step: loading weights replaces the wrapped model.
            self._model.get_input_embeddings().weight.requires_grad_(False)
        if self.device.type != "cpu" or self.train_dtype == FP32:
            return super().begin_update(inputs)
        # Only the forward runs under autocast; the base class's backprop (gradient
        # scaling, unscaling) runs unchanged on the fp32 outputs.
        forward = self._model.forward

        def autocast_forward(*args, **kwargs):
            with torch.autocast("cpu", dtype=self.train_dtype):
                return _fp32(forward(*args, **kwargs))

        self._model.forward = autocast_forward
        try:
            return super().begin_update(inputs)
        finally:
            del self._model.forward
