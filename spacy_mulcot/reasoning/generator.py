"""A causal LM that writes MulCoT-RD chains, conditioned LLaVA-style on image features.

The image's region grid is pooled to a few vectors and projected into the LM's
embedding space as prefix tokens; an optional extra vector (the classifier's fused
aspect representation) becomes one more prefix token, so the two tasks share what
they learn. Training loss is next-token cross-entropy on the chain only (prompt and
prefix masked). Generation is batched (left padding) with the KV cache, greedy by
default, under ``torch.inference_mode()``.
"""
import re
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..chains import SECTIONS
from ..labels import POLARITIES

SYSTEM = (
    "You analyse the sentiment of social-media posts toward an aspect, using the text "
    "and the image. Answer with the sections " + ", ".join(SECTIONS) + "."
)
_WORDS = {"POS": "positive", "NEU": "neutral", "NEG": "negative"}


def build_prompt(tokenizer, text: str, aspect: Optional[str] = None) -> str:
    """The chat prompt for one post (and aspect), ending where the chain starts."""
    target = f'the aspect "{aspect}"' if aspect else "the post as a whole"
    user = f"Post: {text}\nSentiment toward {target}? Reason step by step."
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def force_prediction(chain: str, label: str) -> str:
    """Make the chain's ``Prediction`` section say ``label`` (POS/NEU/NEG): the
    guarantee that the written chain and the classifier agree."""
    if label not in POLARITIES:
        raise ValueError(f"label must be one of {POLARITIES}, got {label!r}")
    word = _WORDS[label]
    pattern = re.compile(r'("?Prediction"?\s*[:：]?\s*)("?)(positive|neutral|negative)("?)', re.IGNORECASE)
    if pattern.search(chain):
        return pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{word}{m.group(4)}", chain)
    return chain.rstrip() + f'\n\n"Prediction": "{word}"'


class ReasoningGenerator(nn.Module):
    """``lm`` plus projections of image regions (and an optional conditioning vector)
    into ``n_image_tokens`` (+1) prefix embeddings."""

    def __init__(self, lm, tokenizer, image_width: int = 1280, n_image_tokens: int = 4, condition_width: int = 0):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        hidden = lm.get_input_embeddings().embedding_dim
        side = int(round(n_image_tokens ** 0.5))
        if side * side != n_image_tokens:
            raise ValueError(f"n_image_tokens must be a square (1, 4, 9…), got {n_image_tokens}")
        self.grid = side
        self.image_proj = nn.Sequential(nn.Linear(image_width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.condition_proj = nn.Linear(condition_width, hidden) if condition_width else None

    # ---- prefix -----------------------------------------------------------

    def prefix(self, regions: torch.Tensor, has_image: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """regions (B, R, Di) with R a square grid → (B, P, H); docs without an image get zeros."""
        B, R, D = regions.shape
        side = int(round(R ** 0.5))
        grid = regions.reshape(B, side, side, D).permute(0, 3, 1, 2)
        pooled = nn.functional.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)  # (B, n, D)
        tokens = self.image_proj(pooled) * has_image.to(pooled.dtype)[:, None, None]
        if self.condition_proj is not None:
            if condition is None:
                raise ValueError("this generator was built with a condition vector; pass condition=")
            tokens = torch.cat([tokens, self.condition_proj(condition).unsqueeze(1)], dim=1)
        return tokens.to(self.lm.dtype)

    # ---- training ---------------------------------------------------------

    def loss(self, prompts: Sequence[str], chains: Sequence[str], prefix: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the chain tokens (prompt and prefix masked)."""
        tok = self.tokenizer
        rows, labels = [], []
        for prompt, chain in zip(prompts, chains):
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            c = tok(chain + (tok.eos_token or ""), add_special_tokens=False)["input_ids"]
            rows.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(ids)], dim=1)
        P = prefix.shape[1]
        mask = torch.cat([torch.ones(len(rows), P, dtype=mask.dtype), mask], dim=1)
        lab = torch.cat([torch.full((len(rows), P), -100), lab], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=lab).loss

    # ---- generation -------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        prefix: torch.Tensor,
        max_new_tokens: int = 256,
        greedy: bool = True,
        temperature: float = 1.0,
        min_new_tokens: Optional[int] = None,
    ) -> List[str]:
        """Chains for a batch: left-padded prompts after their prefix, KV cache on."""
        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        text_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        # Left padding goes before the prefix too, so every row ends at the same place.
        embeds = self.lm.get_input_embeddings()(ids)
        P = prefix.shape[1]
        parts, masks = [], []
        for i, e in enumerate(encoded):
            n_pad = width - len(e)
            parts.append(torch.cat([embeds[i, :n_pad], prefix[i], embeds[i, n_pad:]], dim=0))
            masks.append(torch.cat([text_mask[i, :n_pad], torch.ones(P, dtype=text_mask.dtype), text_mask[i, n_pad:]]))
        embeds = torch.stack(parts)
        mask = torch.stack(masks)
        with torch.inference_mode():
            out = self.lm.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                do_sample=not greedy,
                temperature=temperature if not greedy else None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
                use_cache=True,
            )
        return [tok.decode(row, skip_special_tokens=True).strip() for row in out]
