"""Which language models a generator can hold, and how they are loaded, cut and adapted.

Two kinds load: causal LMs (Llama, SmolLM2, Qwen2, Mistral… through
``AutoModelForCausalLM``) and vision-language models that transformers files under
image-text-to-text (Qwen2-VL, Qwen2.5-VL: MulCoT-RD's assistant and student). The
generator feeds either through ``inputs_embeds`` with its own image prefix tokens,
so a VLM's vision tower is loaded but not run (see the README's GPU notes).

``lora`` wraps the LM with ``peft`` LoRA adapters and freezes the rest: what makes a
7B assistant or 3B student trainable on one GPU. thinc's PyTorch shim steps only
parameters that received a gradient, so the frozen base stays as loaded.
"""

import hashlib
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..extras import require

#: LoRA settings and their defaults (``lora_alpha`` etc. in peft's own names).
LORA_DEFAULTS: Dict[str, Any] = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
_DTYPES = ("float32", "bfloat16", "float16")


def _lm_class(config):
    """The auto class that builds a generator LM for ``config``."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    raise TypeError(
        f"A {config.model_type!r} model cannot write chains: the generator needs a causal LM "
        "(Llama, SmolLM2, Qwen2…) or an image-text-to-text model (Qwen2-VL, Qwen2.5-VL)"
    )


def check_settings(dtype: str, lora: Optional[dict]) -> None:
    """Refuse a dtype or LoRA setting that cannot work, before any weights load."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if dtype != "float32" and not lora:
        # thinc's optimizer updates weights through numpy/cupy, which have no bfloat16.
        raise ValueError(f'a {dtype} LM can only train LoRA adapters: set [generator.lora] or dtype = "float32"')
    unknown = set(lora or {}) - set(LORA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown LoRA settings {sorted(unknown)}; known: {sorted(LORA_DEFAULTS)}")


def load_lm(path: str, dtype: str = "float32") -> nn.Module:
    """Pretrained weights from ``path`` (hub name or folder); OSError/ValueError when
    there is nothing loadable there."""
    from transformers import AutoConfig

    return _lm_class(AutoConfig.from_pretrained(path)).from_pretrained(path, torch_dtype=getattr(torch, dtype))


def adapt(lm: nn.Module, n_layers: Optional[int] = None, lora: Optional[dict] = None) -> nn.Module:
    """``lm`` cut to ``n_layers`` (0/None: all) and wrapped with LoRA adapters when asked."""
    if n_layers:
        lm = keep_layers(lm, n_layers)
    return add_lora(lm, lora) if lora else lm


def lm_from_config(folder, dtype: str = "float32", lora: Optional[dict] = None) -> nn.Module:
    """The same architecture with random weights (a saved pipeline's own replace them)."""
    from transformers import AutoConfig

    check_settings(dtype, lora)
    config = AutoConfig.from_pretrained(folder)
    lm = _lm_class(config).from_config(config, torch_dtype=getattr(torch, dtype))
    return add_lora(lm, lora) if lora else lm


def add_lora(lm: nn.Module, lora: dict) -> nn.Module:
    """``lm`` with LoRA adapters on ``target_modules`` of the language model (a VLM's
    vision tower is left out), everything else frozen; adapters are kept in float32."""
    import warnings

    with warnings.catch_warnings():
        # peft ≥ 0.18 warns at import that it will drop transformers < 5.6, which this package pins
        warnings.filterwarnings("ignore", category=FutureWarning, module="peft")
        peft = require("peft", "lora", "a LoRA generator (lora = {...})")
    LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model

    settings = {**LORA_DEFAULTS, **lora}
    config = LoraConfig(
        r=int(settings["r"]),
        lora_alpha=float(settings["alpha"]),
        lora_dropout=float(settings["dropout"]),
        target_modules=list(settings["target_modules"]),
        # a VLM's vision tower keeps no adapters (named only where there is one: peft warns otherwise)
        exclude_modules=r".*\bvisual\b.*" if any(n.split(".")[-1] == "visual" for n, _ in lm.named_modules()) else None,
    )
    return get_peft_model(lm, config, autocast_adapter_dtype=True)


def merged(lm: nn.Module) -> nn.Module:
    """A plain transformers model with any LoRA adapters folded into its weights (what
    ``export-generator`` saves, so a student can start from it)."""
    if hasattr(lm, "merge_and_unload"):
        import copy

        return copy.deepcopy(lm).merge_and_unload()
    return lm


def _decoder(lm: nn.Module):
    """(module holding ``layers``, the text config): Llama-style ``model.layers`` or a
    VLM's ``model.language_model.layers``."""
    inner = getattr(lm, "model", None)
    language = getattr(inner, "language_model", None)
    holder = language if isinstance(getattr(language, "layers", None), nn.ModuleList) else inner
    if not isinstance(getattr(holder, "layers", None), nn.ModuleList):
        raise ValueError(
            f"n_layers needs a decoder with model.layers (Llama, Qwen2, Qwen2-VL…), not {type(lm).__name__}"
        )
    config = getattr(lm.config, "text_config", None) or lm.config
    return holder, config


def keep_layers(lm: nn.Module, n_layers: int) -> nn.Module:
    """Keep ``n_layers`` of the LM's decoder layers, evenly spaced, first and last
    included (a student initialised from a larger model's weights)."""
    holder, config = _decoder(lm)
    layers = holder.layers
    total = len(layers)
    if not 1 <= n_layers <= total:
        raise ValueError(f"n_layers must be between 1 and {total}, got {n_layers}")
    if n_layers == total:
        return lm
    picks = sorted({round(i * (total - 1) / max(1, n_layers - 1)) for i in range(n_layers)}) if n_layers > 1 else [0]
    kept = nn.ModuleList([layers[i] for i in picks])
    for new_index, layer in enumerate(kept):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = new_index  # the KV cache is indexed by layer
    holder.layers = kept
    for cfg in {id(config): config, id(lm.config): lm.config}.values():
        if hasattr(cfg, "num_hidden_layers"):
            cfg.num_hidden_layers = len(kept)
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = [cfg.layer_types[i] for i in picks]
    return lm


def frozen_names(module: nn.Module, tied: bool = False) -> List[str]:
    """The names of ``module``'s parameters that do not train (a LoRA model's base
    weights); ``tied``: every name of a tied weight, as a state dict has them."""
    return [name for name, p in module.named_parameters(remove_duplicate=not tied) if not p.requires_grad]


def fingerprint(lm: nn.Module) -> str:
    """A SHA-256 over the frozen parameters' names, shapes, dtypes and bytes: which base
    weights LoRA adapters were trained on, checked when a pipeline that saved only the
    adapters loads its base LM again by name."""
    digest = hashlib.sha256()
    params = dict(lm.named_parameters())
    for name in sorted(frozen_names(lm)):
        tensor = params[name].detach().contiguous().cpu()
        digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
