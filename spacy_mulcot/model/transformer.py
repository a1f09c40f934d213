"""``mulcot.TransformerModel.v1``: spacy-transformers' transformer with CPU autocast.

spacy-transformers runs its HF model in fp32 on a CPU (its ``mixed_precision`` is
CUDA-only). Where the CPU runs bf16 natively, autocast makes MiniLM about 1.7x faster;
where bf16 is emulated it is 7-12x slower, so the type is chosen per machine
(``compute.torch_dtype``). The wrapper is built here with :class:`CpuAutocastHFShim`
from the start, so the shim's class is fixed by this registered architecture.
"""

from typing import Callable, Optional

from thinc.api import Model

from ..compute import torch_dtype
from ..hub import resolve_model_path


def transformer_model_v1(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    inference_dtype: Optional[str] = "auto",
    train_dtype: Optional[str] = "auto",
    freeze_embeddings: bool = False,
) -> Model:
    """``mulcot.TransformerModel.v1``: spacy-transformers' ``TransformerModel.v3`` whose
    ``name`` may also be a packaged default (``all-MiniLM-L6-v2`` → the installed folder).

    inference_dtype / train_dtype: the type prediction / training forward passes run in
    on a CPU: "auto" (bf16 autocast where the CPU runs bf16 natively, fp32 elsewhere,
    where bf16 is emulated and 7-12x slower), "bfloat16" (warns where emulated) or
    "float32"/null. Resolved when the model is built, on the machine that runs it.
    spacy-transformers' ``mixed_precision`` is CUDA-only.

    freeze_embeddings: keep the word-piece embedding matrix as pretrained (MiniLM: 11.7M
    of its 22.7M weights): no gradient for it and no optimizer step over it (20% of a
    training step on 2 cores went to the optimizer); positions, layers and the rest train."""
    import torch
    from spacy_transformers.layers import TransformerModel
    from thinc.layers.pytorchwrapper import forward as pytorch_forward

    from .autocast_shim import CpuAutocastHFShim

    fp32 = torch.float32
    model = TransformerModel(
        resolve_model_path(name),
        get_spans=get_spans,
        tokenizer_config=tokenizer_config or {},
        transformer_config=transformer_config or {},
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config or {}),
    )
    predict = torch_dtype(inference_dtype, setting="transformer inference_dtype") if inference_dtype else fp32
    train = torch_dtype(train_dtype, setting="transformer train_dtype") if train_dtype else fp32
    if predict != fp32 or train != fp32 or freeze_embeddings:
        wrapper = model.layers[0]
        shim = CpuAutocastHFShim(
            wrapper.shims[0]._hfmodel,
            mixed_precision=mixed_precision,
            grad_scaler_config=dict(grad_scaler_config or {}),
            inference_dtype=predict,
            train_dtype=train,
            freeze_embeddings=freeze_embeddings,
        )
        model.layers[0] = Model(
            wrapper.name, pytorch_forward, attrs=dict(wrapper.attrs), shims=[shim], dims={"nI": None, "nO": None}
        )
    return model
