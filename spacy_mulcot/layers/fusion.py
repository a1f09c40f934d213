"""LRSA's dual cross-attention: text tokens attend to image regions and, separately,
to the rationale's units; a learned gate per token decides how much of each to take.

A missing modality is handled with a learned *null* key that is always present: a
doc without an image attends only to it, so the gate learns to ignore the branch
instead of the attention producing NaNs over an all-masked key set.
"""

from typing import Optional

import torch
from torch import nn


class CrossAttentionBranch(nn.Module):
    """Queries from text, keys/values from one other modality (plus a null key)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.null = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.null, std=0.02)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)

    def forward(self, text: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """text (B, T, H); keys (B, K, H); key_mask (B, K) True where a key is real."""
        batch = text.shape[0]
        keys = torch.cat([self.null.expand(batch, 1, -1).to(keys.dtype), keys], dim=1)
        real = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=keys.device), key_mask], dim=1)
        out, _ = self.attention(text, keys, keys, key_padding_mask=~real, need_weights=False)
        return out


class DualCrossAttentionFusion(nn.Module):
    """``fused = LN(text + g_img ⊙ attn(text → image) + g_rat ⊙ attn(text → rationale))``.

    mode "dual": the two cross-attention branches (LRSA).
    mode "concat": the ablation without fusion — each token gets the *mean* of the
        image regions and of the rationale units added through a projection, no attention.
    """

    def __init__(self, width: int, heads: int = 4, dropout: float = 0.1, mode: str = "dual"):
        super().__init__()
        if mode not in ("dual", "concat"):
            raise ValueError(f"fusion must be 'dual' or 'concat', got {mode!r}")
        self.mode = mode
        if mode == "dual":
            self.image = CrossAttentionBranch(width, heads, dropout)
            self.rationale = CrossAttentionBranch(width, heads, dropout)
        else:
            self.image_mix = nn.Linear(width, width)
            self.rationale_mix = nn.Linear(width, width)
        self.gate = nn.Linear(3 * width, 2 * width)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
        rationale: torch.Tensor,
        rationale_mask: torch.Tensor,
    ) -> torch.Tensor:
        if self.mode == "dual":
            a_img = self.image(text, image, image_mask)
            a_rat = self.rationale(text, rationale, rationale_mask)
        else:
            a_img = self.image_mix(_masked_mean(image, image_mask)).unsqueeze(1).expand_as(text)
            a_rat = self.rationale_mix(_masked_mean(rationale, rationale_mask)).unsqueeze(1).expand_as(text)
        gates = torch.sigmoid(self.gate(torch.cat([text, a_img, a_rat], dim=-1)))
        g_img, g_rat = gates.chunk(2, dim=-1)
        return self.norm(text + self.dropout(g_img * a_img + g_rat * a_rat))


def _masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
