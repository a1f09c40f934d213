"""``MulcotShim``: the thinc shim that owns the joint network *and* its generator.

Like spacy-transformers' ``HFShim``, serialization belongs to the shim: the bytes
carry the network's weights and, with a generator, the LM's config and tokenizer, so
``from_bytes`` and ``from_disk`` rebuild the generator the same way, wherever the LM
the pipeline started from lives (or does not). Public methods are the only way in:
nothing outside reaches the wrapped module.
"""

import json
import tempfile
from io import BytesIO
from pathlib import Path
from typing import List, Optional, Tuple

import numpy
import srsly
import torch
from thinc.api import PyTorchShim, get_torch_default_device

from ..data_classes import ClassifierOutput, NetBatch, ReasoningBatch


class MulcotShim(PyTorchShim):
    """A ``PyTorchShim`` around :class:`JointSentimentNet`."""

    @property
    def net(self) -> torch.nn.Module:
        return self._model

    @property
    def generator(self):
        """The reasoning generator (a ``ReasoningGenerator`` or ``PendingGenerator``), or None."""
        return self._model.generator

    def set_distillation(self, distillation) -> None:
        """λ and T of the chain loss (a :class:`~spacy_mulcot.losses.Distillation`), set once."""
        self._model.distillation = distillation

    def set_generator(self, generator) -> None:
        """Swap in a generator (before weights load: a saved pipeline's own LM)."""
        if self._model.generator is None:
            raise ValueError("this model was built without a generator")
        self._model.generator = generator

    # ---- inference ------------------------------------------------------------

    def classify(self, tokens: torch.Tensor, batch: NetBatch, extract=None) -> ClassifierOutput:
        """Inference: see ``JointSentimentNet.classify`` (``extract``: tags → span rows)."""
        self._model.eval()
        with torch.inference_mode():
            return self._model.classify(tokens, batch, extract=extract)

    def generate(self, tokens: torch.Tensor, batch: NetBatch, reasoning: ReasoningBatch, **kwargs) -> List[str]:
        return self._model.reason(tokens, batch, reasoning, **kwargs)

    def chain_topk(
        self, tokens: torch.Tensor, batch: NetBatch, reasoning: Optional[ReasoningBatch], k: int = 8
    ) -> Tuple[numpy.ndarray, List[dict]]:
        span_logits, topk = self._model.chain_topk(tokens, batch, reasoning, k=k)
        return span_logits.float().cpu().numpy(), topk

    # ---- serialization ----------------------------------------------------------

    def to_bytes(self) -> bytes:
        filelike = BytesIO()
        torch.save(self._model.state_dict(), filelike)
        msg = {"config": self.cfg, "state": filelike.getvalue(), "generator": self._generator_bytes()}
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "MulcotShim":
        msg = srsly.msgpack_loads(bytes_data)
        self.cfg = msg["config"]
        saved = msg.get("generator")
        if saved:
            # The weights below fit the saved LM config, whatever the pipeline config's
            # generator name resolves to here (missing, or another LM of that name).
            self.set_generator(_generator_from_files(saved, self.generator.settings))
        device = get_torch_default_device()
        # weights_only: a saved pipeline is data; a pickle that would run code is refused.
        self._model.load_state_dict(torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True))
        self._model.to(device)
        self._grad_scaler.to_(device)
        return self

    def _generator_bytes(self) -> Optional[dict]:
        """The generator LM's config and tokenizer files (its weights are in the state)."""
        from ..reasoning.generator import ReasoningGenerator

        generator = self.generator
        if not isinstance(generator, ReasoningGenerator):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            generator.lm.config.save_pretrained(tmp)
            generator.tokenizer.save_pretrained(tmp)
            files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        return {"files": files, "settings": json.dumps(generator.settings)}


def _generator_from_files(saved: dict, settings: dict):
    from ..reasoning.generator import generator_from_folder

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in saved["files"].items():
            if Path(name).name != name:
                raise ValueError(f"unexpected file name {name!r} in a saved generator")
            (Path(tmp) / name).write_bytes(data)
        return generator_from_folder(tmp, {**settings, **json.loads(saved["settings"])})
