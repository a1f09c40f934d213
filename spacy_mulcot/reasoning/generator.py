"""A causal LM that writes MulCoT-RD chains, conditioned LLaVA-style on image features.

The image's region grid is pooled to a few vectors and projected into the LM's
embedding space as prefix tokens; an optional extra vector (the classifier's fused
aspect representation) becomes one more prefix token, so the two tasks share what
they learn. Training loss is next-token cross-entropy on the chain only (prompt and
prefix masked). Generation is batched (left padding) with the KV cache, greedy by
default, under ``torch.inference_mode()``.
"""

import contextlib
import copy
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..compute import DTYPE_NAMES, resolve_dtype
from ..generation import GenerationSettings
from ..losses import Distillation, chain_loss
from . import decoding
from .lm import merged
from .prompt import PROMPT_V1


class ReasoningGenerator(nn.Module):
    """``lm`` plus projections of image regions (and an optional conditioning vector)
    into ``n_image_tokens`` (+1) prefix embeddings.

    image_width / condition_width: 0 learns the width on the first call (lazy layer);
        condition_width None: no conditioning token.
    max_chain_tokens: longer training chains are cut (bounds time and memory).
    train_dtype: the LM's training forward/backward: "auto" (bf16 autocast where the
        device runs bf16 natively, about 2.5x faster than fp32 on an AVX512-BF16 CPU;
        fp32 elsewhere, where emulated bf16 is 7-12x slower), "bfloat16" / "float16"
        (autocast whatever the device; warns on a CPU that emulates it), "float32" or
        None (no autocast). Resolved per machine at each step, so a saved model trains on
        whatever the next machine runs best.
    label_in_prompt: the prompt names the label to explain (in training the chain's
        own Prediction, at inference the classifier's decision), so the chain agrees
        with the classifier without rewriting.
    """

    def __init__(
        self,
        lm,
        tokenizer,
        image_width: int = 1280,
        n_image_tokens: int = 4,
        condition_width: Optional[int] = None,
        max_chain_tokens: int = 512,
        train_dtype: Optional[str] = None,
        label_in_prompt: bool = False,
        prompt: Optional[dict] = None,
    ):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        hidden = lm.get_input_embeddings().embedding_dim
        side = int(round(n_image_tokens**0.5))
        if n_image_tokens < 1 or side * side != n_image_tokens:
            raise ValueError(f"n_image_tokens must be a square (1, 4, 9…), got {n_image_tokens}")
        if train_dtype is not None and str(train_dtype).lower() not in DTYPE_NAMES:
            raise ValueError(f"train_dtype must be null or one of {sorted(DTYPE_NAMES)}, got {train_dtype!r}")
        self.grid = side
        self.max_chain_tokens = max_chain_tokens
        self.train_dtype = train_dtype
        self.label_in_prompt = bool(label_in_prompt)
        # A pipeline saved before prompts were saved was trained with PROMPT_V1.
        self.prompt = dict(prompt or PROMPT_V1)
        missing = {"system", "user", "explain"} - set(self.prompt)
        if missing:
            raise ValueError(f"the generator's prompt lacks {sorted(missing)}")
        #: What a saved pipeline needs, besides the LM folder, to rebuild this generator.
        self.settings = {
            "n_image_tokens": n_image_tokens,
            "max_chain_tokens": max_chain_tokens,
            "train_dtype": train_dtype,
            "label_in_prompt": self.label_in_prompt,
            "prompt": self.prompt,
        }

        def linear(width: Optional[int]) -> nn.Module:
            return nn.LazyLinear(hidden) if not width else nn.Linear(width, hidden)

        self.image_proj = nn.Sequential(linear(image_width), nn.GELU(), nn.Linear(hidden, hidden))
        self.condition_proj = linear(condition_width) if condition_width is not None else None

    # ---- prefix -----------------------------------------------------------

    def prefix(
        self, regions: torch.Tensor, has_image: torch.Tensor, condition: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """regions (B, R, Di) with R a square grid → (B, P, H); docs without an image get zeros."""
        B, R, D = regions.shape
        side = int(round(R**0.5))
        if R == 0:
            # No doc of the batch has an image.
            pooled = regions.new_zeros((B, self.grid * self.grid, D))
        elif side * side != R:
            raise ValueError(f"image regions must form a square grid, got {R} regions")
        else:
            grid = regions.reshape(B, side, side, D).permute(0, 3, 1, 2)
            pooled = nn.functional.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)  # (B, n, D)
        tokens = self.image_proj(pooled) * has_image.to(pooled.dtype)[:, None, None]
        if self.condition_proj is not None:
            if condition is None:
                raise ValueError("this generator was built with a condition vector; pass condition=")
            tokens = torch.cat([tokens, self.condition_proj(condition).unsqueeze(1)], dim=1)
        return tokens.to(self.lm.dtype)

    # ---- training ---------------------------------------------------------

    def _forward_chains(self, prompts: Sequence[str], chains: Sequence[str], prefix: torch.Tensor):
        """Teacher-forced logits for prompt + chain after the prefix, and per item the
        logit rows that predict each chain token (EOS included) and those tokens."""
        tok = self.tokenizer
        rows, spans = [], []
        for prompt, chain in zip(prompts, chains):
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            c = tok(chain, add_special_tokens=False)["input_ids"][: self.max_chain_tokens]
            c = c + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
            rows.append(p + c)
            spans.append((len(p), c))
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        device = prefix.device
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(ids)], dim=1)
        P = prefix.shape[1]
        mask = torch.cat([torch.ones(len(rows), P, dtype=mask.dtype, device=device), mask], dim=1)
        with self._autocast(device):
            logits = self.lm(inputs_embeds=embeds, attention_mask=mask).logits
        # The logit at position t predicts token t + 1.
        positions = [torch.arange(P + n_prompt - 1, P + n_prompt - 1 + len(c), device=device) for n_prompt, c in spans]
        targets = [torch.tensor(c, device=device) for _, c in spans]
        return logits, positions, targets

    def loss(
        self,
        prompts: Sequence[str],
        chains: Sequence[str],
        prefix: torch.Tensor,
        soft: Optional[Sequence[Optional[dict]]] = None,
        distill: Distillation = Distillation(),
    ) -> torch.Tensor:
        """Mean next-token cross-entropy over the chain tokens (prompt and prefix masked).

        soft: per chain, None or a teacher's top-k ``{"ids": (L, k), "logits": (L, k)}``
        for the same chain tokens (see :meth:`chain_topk`); with ``distill.weight`` λ the
        loss is ``(1 − λ)·CE + λ·T²·KL(teacher_T ‖ student_T)`` over those k tokens
        (:func:`spacy_mulcot.losses.chain_loss`).
        """
        logits, positions, targets = self._forward_chains(prompts, chains, prefix)
        return chain_loss(logits, positions, targets, soft, distill)[0]

    def chain_topk(self, prompts: Sequence[str], chains: Sequence[str], prefix: torch.Tensor, k: int = 8) -> List[dict]:
        """The top-k next-token logits at every chain token (teacher-forced), per chain:
        the soft targets a student learns from, computed once and stored."""
        with torch.inference_mode():
            logits, positions, _ = self._forward_chains(prompts, chains, prefix)
            out = []
            for i, pos in enumerate(positions):
                values, ids = logits[i, pos].float().topk(k, dim=-1)
                out.append(
                    {"ids": ids.cpu().tolist(), "logits": [[round(v, 4) for v in row] for row in values.cpu().tolist()]}
                )
        return out

    def _autocast(self, device: torch.device):
        dtype = resolve_dtype(self.train_dtype, setting="generator train_dtype", device=device)
        if getattr(torch, dtype) == self.lm.dtype:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, dtype))

    def lm_for_inference(self, dtype: Optional[str]) -> nn.Module:
        """The LM itself, or a copy in ``dtype`` ("auto": bf16 where the device runs it
        natively, ~2x faster greedy decoding on an AVX512-BF16 CPU, else the LM as it
        is; the fp32 weights stay the ones that train). A LoRA LM is always a copy with
        its adapters merged in: a plain transformers model, which the fast decoder
        runs (a peft wrapper would fall back to ``generate``, several times slower)."""
        adapted = hasattr(self.lm, "merge_and_unload")
        if dtype is None and not adapted:
            return self.lm
        device = next(self.lm.parameters()).device
        dtype = resolve_dtype(dtype, setting="generation.dtype", device=device) if dtype else _dtype_name(self.lm)
        if getattr(torch, dtype) == self.lm.dtype and not adapted:
            return self.lm
        # One copy per dtype, made again only when the weights have changed since
        # (training steps bump the parameters' version counters): not one per batch.
        version = _weights_version(self.lm)
        cached = self.__dict__.setdefault("_inference_copies", {}).get(dtype)
        if cached is None or cached[0] != version:
            self.__dict__["_inference_copies"].pop(dtype, None)  # the old copy freed before the next is made
            inference = merged(self.lm) if adapted else copy.deepcopy(self.lm)
            cached = (version, inference.to(getattr(torch, dtype)).eval())
            self.__dict__["_inference_copies"][dtype] = cached
        return cached[1]

    def decoder_for(self, lm: nn.Module):
        """A :class:`~.decoding.FastDecoder` over ``lm``'s weights, or None where the LM
        is not one it decodes; kept until the weights change, as the bf16 copy."""
        if not decoding.supports(lm):
            return None
        # One at a time (each holds fused copies of the weights), for this LM as it is now.
        version = _weights_version(lm)
        cached = self.__dict__.get("_decoder")
        if cached is None or cached[0] is not lm or cached[1] != version:
            self.__dict__["_decoder"] = cached = None  # the old one freed before the next is built
            cached = self.__dict__["_decoder"] = (lm, version, decoding.FastDecoder(lm))
        return cached[2]

    # ---- generation -------------------------------------------------------

    def write_chains(
        self,
        prompts: Sequence[str],
        prefix: torch.Tensor,
        settings: GenerationSettings = GenerationSettings(),
        lm: Optional[nn.Module] = None,
        min_new_tokens: Optional[int] = None,
    ) -> List[str]:
        """Chains for any number of prompts, ``settings.chain_batch_size`` decoding side by side
        (``settings``: length limit, decoder, temperature; ``lm``: the copy that decodes).

        decoder "auto": continuous batching with :class:`~.decoding.FastDecoder` where
        the LM is a Llama/Qwen2 causal LM (a finished chain's row takes the next
        prompt); otherwise, or with "generate", transformers' ``generate`` on
        sub-batches of prompts of similar length."""
        lm = self.lm if lm is None else lm
        fast = self.decoder_for(lm) if settings.decoder == "auto" else None
        batch_size = int(settings.chain_batch_size)
        if fast is None:
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            chains = {}
            for start in range(0, len(order), batch_size):
                part = order[start : start + batch_size]
                out = self._generate([prompts[i] for i in part], prefix[part], settings, lm, min_new_tokens)
                chains.update(zip(part, out))
            return [chains[i] for i in range(len(prompts))]
        tok = self.tokenizer
        table = lm.get_input_embeddings()
        with torch.inference_mode():
            embeds = [
                torch.cat(
                    [
                        prefix[i].to(lm.dtype),
                        table(torch.tensor(tok(p, add_special_tokens=False)["input_ids"], device=prefix.device)),
                    ]
                )
                for i, p in enumerate(prompts)
            ]
        # Shortest prompts first: prefills pad less, and rows decoding side by side sit
        # at similar positions (attention reads up to the furthest row's position).
        order = sorted(range(len(embeds)), key=lambda i: embeds[i].shape[0])
        ids = fast.decode(
            [embeds[i] for i in order],
            int(settings.max_new_tokens),
            stops=self._stops(lm),
            slots=batch_size,
            min_new_tokens=min_new_tokens,
            greedy=settings.greedy,
            temperature=settings.sampling_temperature(),
        )
        chains = [""] * len(order)
        for i, row in zip(order, ids):
            chains[i] = tok.decode(row, skip_special_tokens=True).strip()
        return chains

    def _stops(self, lm: nn.Module) -> List[int]:
        # Chains were trained to end with the tokenizer's EOS, which need not be the LM
        # config's (SmolLM2's GGUF tokenizer says <|im_start|>, its config <|im_end|>): stop at either.
        configured = getattr(lm.generation_config, "eos_token_id", None)
        configured = configured if isinstance(configured, (list, tuple)) else [configured]
        return sorted({i for i in [self.tokenizer.eos_token_id, *configured] if i is not None})

    def _generate(
        self,
        prompts: Sequence[str],
        prefix: torch.Tensor,
        settings: GenerationSettings,
        lm: nn.Module,
        min_new_tokens: Optional[int] = None,
    ) -> List[str]:
        """Chains for a batch with transformers' ``generate``: left-padded prompts after
        their prefix, KV cache on, decoded by ``lm`` (``self.lm`` or a copy from
        :meth:`lm_for_inference`)."""
        prefix = prefix.to(lm.dtype)
        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id
        device = prefix.device
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
        text_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        # Left padding goes before the prefix too, so every row ends at the same place.
        embeds = lm.get_input_embeddings()(ids)
        P = prefix.shape[1]
        parts, masks = [], []
        for i, e in enumerate(encoded):
            n_pad = width - len(e)
            parts.append(torch.cat([embeds[i, :n_pad], prefix[i], embeds[i, n_pad:]], dim=0))
            masks.append(
                torch.cat(
                    [text_mask[i, :n_pad], torch.ones(P, dtype=text_mask.dtype, device=device), text_mask[i, n_pad:]]
                )
            )
        embeds = torch.stack(parts)
        mask = torch.stack(masks)
        stops = self._stops(lm)
        with torch.inference_mode():
            out = lm.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=int(settings.max_new_tokens),
                min_new_tokens=min_new_tokens,
                do_sample=not settings.greedy,
                temperature=settings.sampling_temperature() if not settings.greedy else None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
                eos_token_id=stops or None,
                use_cache=True,
            )
        return [tok.decode(_until(row.tolist(), stops), skip_special_tokens=True).strip() for row in out]


def _weights_version(module: nn.Module) -> int:
    """A number that changes when any parameter is updated in place (training steps
    bump the version counters). Inference tensors (a copy made under
    ``torch.inference_mode``) carry none: such a copy is replaced whole, never trained."""
    return sum(0 if p.is_inference() else p._version for p in module.parameters())


def _until(ids: List[int], stops: Sequence[int]) -> List[int]:
    """The generated ids before the first stop token."""
    for k, token in enumerate(ids):
        if token in stops:
            return ids[:k]
    return ids


def _dtype_name(module: nn.Module) -> str:
    """The name of ``module``'s floating-point dtype ("float32", "bfloat16"…)."""
    return str(next(module.parameters()).dtype).replace("torch.", "")
