"""``MulcotShim``: the thinc shim that owns the joint network *and* its generator.

Like spacy-transformers' ``HFShim``, serialization belongs to the shim: the bytes
carry the network's weights and, with a generator, the LM's config and tokenizer, so
``from_bytes`` and ``from_disk`` rebuild the generator the same way, wherever the LM
the pipeline started from lives (or does not). Public methods are the only way in:
nothing outside reaches the wrapped module.
"""

import json
import tempfile
import warnings
from io import BytesIO
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy
import srsly
import torch
from thinc.api import PyTorchShim, get_torch_default_device

from ..data_classes import ClassifierOutput, NetBatch, ReasoningBatch
from ..generation import GenerationSettings


class MulcotShim(PyTorchShim):
    """A ``PyTorchShim`` around :class:`JointSentimentNet`."""

    @property
    def net(self) -> torch.nn.Module:
        return self._model

    @property
    def generator(self):
        """The reasoning generator as it stands (a ``ReasoningGenerator``, or a
        ``DeferredGenerator`` / ``PendingGenerator`` standing in for one), or None."""
        return getattr(self._model, "generator", None)

    def ready_generator(self):
        """The reasoning generator, built now if it was deferred (a pipeline saved
        without its base LM loads it when the first chain is asked for), or None."""
        from ..reasoning.loading import DeferredGenerator

        generator = self.generator
        if isinstance(generator, DeferredGenerator):
            with torch.inference_mode(False):  # weights that can train later, even if asked for at inference
                generator = generator.materialize().to(get_torch_default_device())
            self._model.generator = generator
        return generator

    def set_distillation(self, distillation) -> None:
        """λ and T of the chain loss (a :class:`~spacy_mulcot.losses.Distillation`), set once."""
        self._model.distillation = distillation

    def set_generator(self, generator) -> None:
        """Swap in a generator (before weights load: a saved pipeline's own LM)."""
        if self._model.generator is None:
            raise ValueError("this model was built without a generator")
        self._model.generator = generator

    # ---- inference ------------------------------------------------------------

    def infer(
        self,
        tokens: torch.Tensor,
        batch: NetBatch,
        extract=None,
        reasoning_for: Optional[Callable[[ClassifierOutput], Optional[ReasoningBatch]]] = None,
        settings: Optional[GenerationSettings] = None,
    ) -> Tuple[ClassifierOutput, List[str]]:
        """Inference in one pass: the classifier's output (``extract``: tags → span rows,
        see ``JointSentimentNet.classify``) and, when ``reasoning_for(output)`` names
        items, their chains from the same output (``JointSentimentNet.write_chains``)."""
        self._model.eval()
        with torch.inference_mode():
            out = self._model.classify(tokens, batch, extract=extract)
            reasoning = reasoning_for(out) if reasoning_for is not None else None
            if reasoning is None or not len(reasoning):
                return out, []
            self.ready_generator()
            return out, self._model.write_chains(out, batch, reasoning, settings or GenerationSettings())

    def chain_topk(
        self, tokens: torch.Tensor, batch: NetBatch, reasoning: Optional[ReasoningBatch], k: int = 8
    ) -> Tuple[numpy.ndarray, numpy.ndarray, List[dict]]:
        if reasoning is not None:
            self.ready_generator()
        span_logits, tag_logits, topk = self._model.chain_topk(tokens, batch, reasoning, k=k)
        return span_logits.float().cpu().numpy(), tag_logits.float().cpu().numpy(), topk

    # ---- serialization ----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The net's weights as safetensors (tied weights stored once: ``aliases``),
        the shim config and, with a generator, its LM config and tokenizer files."""
        from ..reasoning.loading import DeferredGenerator

        if isinstance(self.generator, DeferredGenerator) and self.generator.saved is None:
            self.ready_generator()  # built from its name, never trained: its fresh adapters are saved
        generator = self._generator_bytes()
        state = self._model.state_dict()
        if isinstance(self.generator, DeferredGenerator):  # loaded, never used: saved again as it came
            state.update({f"{self._generator_prefix()}.{name}": t for name, t in self.generator.state.items()})
        elif generator and generator.get("fingerprint"):  # save_base = false: the base loads by name
            frozen = self._frozen_base_keys()
            state = {name: tensor for name, tensor in state.items() if name not in frozen}
        state, aliases = state_to_safetensors(state)
        msg = {
            "config": self.cfg,
            "format": "safetensors",
            "state": state,
            "aliases": aliases,
            "generator": generator,
        }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "MulcotShim":
        msg = srsly.msgpack_loads(bytes_data)
        self.cfg = msg["config"]
        saved = msg.get("generator")
        if saved:
            # The weights below fit the saved LM config, whatever the pipeline config's
            # generator name resolves to here (missing, or another LM of that name);
            # adapters only: a DeferredGenerator, built on the base LM at first use.
            from ..reasoning.loading import generator_from_saved

            self.set_generator(generator_from_saved(saved, self.generator.settings))
        device = get_torch_default_device()
        if msg.get("format") == "safetensors":
            state = state_from_safetensors(msg["state"], msg.get("aliases") or {}, device)
        else:  # saved before safetensors: torch.save, read without unpickling code
            warnings.warn(
                "this pipeline's weights were saved by an older spacy-mulcot (torch.save, not "
                "safetensors); they were converted on load: save the pipeline again (nlp.to_disk) "
                "to keep the new format",
                UserWarning,
                stacklevel=2,
            )
            state = torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True)
        from ..reasoning.loading import DeferredGenerator

        if isinstance(self.generator, DeferredGenerator):  # its tensors wait in it until it is built
            prefix = self._generator_prefix() + "."
            self.generator.state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        missing, unexpected = self._model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(
                f"the saved weights lack {len(missing)} of this model's tensors (e.g. {missing[:3]}): "
                "the pipeline's config does not match the model that was saved"
            )
        if unexpected:
            warnings.warn(
                f"ignored {len(unexpected)} saved tensors this model does not have (e.g. {unexpected[:3]}); "
                "saved by another version of spacy-mulcot?",
                stacklevel=2,
            )
        self._model.to(device)
        self._grad_scaler.to_(device)
        return self

    def _generator_bytes(self) -> Optional[dict]:
        """The generator LM's config and tokenizer files (its weights are in the state)
        and, for a generator saved without its base LM, the base weights' fingerprint."""
        from ..reasoning.generator import ReasoningGenerator
        from ..reasoning.lm import fingerprint
        from ..reasoning.loading import DeferredGenerator

        generator = self.generator
        if isinstance(generator, DeferredGenerator):
            return generator.saved
        if not isinstance(generator, ReasoningGenerator):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            generator.lm.config.save_pretrained(tmp)
            generator.tokenizer.save_pretrained(tmp)
            files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        msg = {"files": files, "settings": json.dumps(generator.settings)}
        if generator.settings.get("base"):
            msg["fingerprint"] = fingerprint(generator.lm)
        return msg

    def _generator_prefix(self) -> str:
        """The generator's name in the network's state dict."""
        return next(name for name, module in self._model.named_modules() if module is self.generator)

    def _frozen_base_keys(self) -> set:
        """The state-dict names of the generator LM's frozen weights (tied ones included)."""
        from ..reasoning.lm import frozen_names

        prefix = self._generator_prefix()
        return {f"{prefix}.{name}" for name in frozen_names(self.generator, tied=True)}


def state_to_safetensors(state: Dict[str, torch.Tensor]) -> Tuple[bytes, Dict[str, str]]:
    """A state dict as safetensors bytes; tensors that share memory (tied embeddings)
    are stored once and the other names returned as ``{alias: stored name}``."""
    from safetensors.torch import save

    stored: Dict[tuple, str] = {}
    tensors: Dict[str, torch.Tensor] = {}
    aliases: Dict[str, str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in stored:
            aliases[name] = stored[key]
            continue
        stored[key] = name
        tensors[name] = tensor.detach().contiguous()
    return save(tensors), aliases


def state_from_safetensors(data: bytes, aliases: Dict[str, str], device) -> Dict[str, torch.Tensor]:
    """The state dict ``state_to_safetensors`` wrote, aliases restored, on ``device``."""
    from safetensors.torch import load

    state = {name: tensor.to(device) for name, tensor in load(data).items()}
    for alias, name in aliases.items():
        state[alias] = state[name]
    return state
