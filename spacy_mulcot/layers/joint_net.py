"""The joint network: project the three modalities, fuse them, and predict
BIO aspect tags, the sentiment of each aspect span and the sentiment of the post;
optionally, write a reasoning chain per aspect (or post) with a generator that reads
the image regions and the classifier's hidden vector for that aspect, so the
reasoning loss trains the fused representation too (MulCoT-RD's joint objective)."""

from typing import Callable, List, Optional

import torch
from torch import nn

from ..data_classes import ClassifierOutput, NetBatch, ReasoningBatch
from ..generation import GenerationSettings
from ..losses import Distillation
from .fusion import DualCrossAttentionFusion, _masked_mean


class JointSentimentNet(nn.Module):
    """Inputs are padded batches; outputs are logits.

    tokens (B, T, Dt) and a :class:`NetBatch` (masks, image, rationale, spans);
    reasoning (optional): a :class:`ReasoningBatch`, one item per chain to learn.
    ``forward`` returns tag logits (B, T, 3), span logits (S, 3), doc logits (B, 3)
    and the reasoning loss (a scalar; 0 without items); ``classify``, ``reason`` and
    ``chain_topk`` are the inference entry points.

    lazy: infer the three input widths on the first call (thinc builds the net before
    it has seen data).
    image_dropout / rationale_dropout: in training, the probability of hiding a doc's
    image / rationale, so the model stays good for posts that come without them.
    """

    def __init__(
        self,
        token_width: int,
        image_width: int,
        rationale_width: int,
        hidden_width: int = 256,
        heads: int = 4,
        dropout: float = 0.1,
        fusion: str = "dual",
        image_dropout: float = 0.0,
        rationale_dropout: float = 0.0,
        n_tags: int = 3,
        n_labels: int = 3,
        lazy: bool = False,
        generator: Optional[nn.Module] = None,
    ):
        super().__init__()
        h = hidden_width

        def linear_in(width: int) -> nn.Module:
            # Lazy layers learn their input width on the first forward pass.
            return nn.LazyLinear(h) if lazy else nn.Linear(width, h)

        self.image_dropout = image_dropout
        self.rationale_dropout = rationale_dropout
        self.text_in = nn.Sequential(nn.Dropout(dropout), linear_in(token_width), nn.LayerNorm(h))
        self.image_in = nn.Sequential(linear_in(image_width), nn.LayerNorm(h))
        self.rationale_in = nn.Sequential(linear_in(rationale_width), nn.LayerNorm(h))
        self.fusion = DualCrossAttentionFusion(h, heads, dropout, mode=fusion)
        self.context = nn.TransformerEncoderLayer(h, heads, 2 * h, dropout, batch_first=True, norm_first=True)
        self.tagger = nn.Linear(h, n_tags)
        self.aspect_query = nn.Linear(h, h)
        self.span_out = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Dropout(dropout), nn.Linear(h, n_labels))
        self.doc_query = nn.Parameter(torch.zeros(h))
        self.doc_out = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.Dropout(dropout), nn.Linear(h, n_labels))
        # The generator's condition token is the classifier's penultimate vector.
        self.generator = generator
        #: λ and T of the chain loss, set once by the component (not a weight: not saved).
        self.distillation = Distillation()

    def forward(self, tokens: torch.Tensor, batch: NetBatch, reasoning: Optional[ReasoningBatch] = None):
        """Tag, span and doc logits and the reasoning loss (0 without chain items)."""
        out = self.classify(tokens, batch)
        if reasoning is None or not len(reasoning):
            loss = out.tags.new_zeros(())
        else:
            prefix = self.prefix(batch, out, reasoning)
            loss = self._generator().loss(
                reasoning.prompts,
                reasoning.chains,
                prefix,
                soft=reasoning.soft,
                distill=self.distillation,
            )
        return out.tags, out.spans, out.docs, loss

    def _generator(self) -> nn.Module:
        if self.generator is None:
            raise ValueError("reasoning chains were given but the model has no generator (set [model.generator])")
        return self.generator

    def write_chains(
        self, out: ClassifierOutput, batch: NetBatch, reasoning: ReasoningBatch, settings: GenerationSettings
    ) -> List[str]:
        """One chain per item of ``reasoning``, conditioned on the classifier's vector for
        it (``out``: the classifier's output for the batch, computed once), decoded by the
        generator (``settings``: length, batch, dtype of the decoding LM copy, decoder,
        temperature)."""
        generator = self._generator()
        self.eval()
        with torch.inference_mode():
            prefix = self.prefix(batch, out, reasoning)
            lm = generator.lm_for_inference(settings.dtype)
            return generator.write_chains(reasoning.prompts, prefix, settings, lm=lm)

    def chain_topk(self, tokens: torch.Tensor, batch: NetBatch, reasoning: Optional[ReasoningBatch], k: int = 8):
        """The span logits, the BIO tag logits (B × T × 3) and, per chain item, the top-k
        next-token logits along the chain (teacher-forced): what a student distils from
        this model."""
        self.eval()
        with torch.inference_mode():
            out = self.classify(tokens, batch)
            topk = []
            if reasoning is not None and len(reasoning):
                topk = self._generator().chain_topk(
                    reasoning.prompts, reasoning.chains, self.prefix(batch, out, reasoning), k=k
                )
        return out.spans, out.tags, topk

    def prefix(self, batch: NetBatch, out: ClassifierOutput, reasoning: ReasoningBatch) -> torch.Tensor:
        """Prefix embeddings per item: pooled image grid (without the pooled-vector key)
        and the item's classifier vector."""
        rows = reasoning.rows.long()
        docs = reasoning.docs.long()
        image, image_mask = batch.image, batch.image_mask
        has_image = image_mask[:, 0]
        regions = image[:, :-1] if image.shape[1] > 1 else image[:, :0]
        on_span = (rows >= 0).unsqueeze(-1)
        span_part = out.span_hidden[rows.clamp(min=0)] if out.span_hidden.shape[0] else out.doc_hidden[docs]
        condition = torch.where(on_span, span_part, out.doc_hidden[docs])
        return self._generator().prefix(regions[docs], has_image[docs], condition)

    def classify(
        self,
        tokens: torch.Tensor,
        batch: NetBatch,
        extract: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> ClassifierOutput:
        """Logits and hidden vectors. ``extract`` (inference): maps the tag logits
        (B, T, 3) to the span rows to classify (S, 3), replacing ``batch.spans`` — aspect
        extraction and classification on one pass of the fused states."""
        image_mask, rationale_mask = batch.image_mask, batch.rationale_mask
        if self.training:
            # The generator's prefix still sees the image: only the classifier's copy is dropped.
            image_mask = _drop_docs(image_mask, self.image_dropout)
            rationale_mask = _drop_docs(rationale_mask, self.rationale_dropout)
        token_mask = batch.token_mask
        text = self.text_in(tokens)
        img = self.image_in(batch.image)
        rat = self.rationale_in(batch.rationale)
        fused = self.fusion(text, img, image_mask, rat, rationale_mask)
        fused = self.context(fused, src_key_padding_mask=~token_mask)
        tag_logits = self.tagger(fused)
        # Doc: attention pooling over the fused tokens, plus the pooled image.
        scores = (fused @ self.doc_query).masked_fill(~token_mask, float("-inf"))
        doc_vec = (torch.softmax(scores, dim=1).unsqueeze(-1) * fused).sum(1)
        doc_hidden = self.doc_out[:-1](torch.cat([doc_vec, _masked_mean(img, image_mask)], dim=-1))
        spans = batch.spans if extract is None else extract(tag_logits)
        span_hidden = self._spans(fused, token_mask, img, image_mask, spans)
        return ClassifierOutput(
            tags=tag_logits,
            spans=self.span_out[-1](span_hidden),
            docs=self.doc_out[-1](doc_hidden),
            span_hidden=span_hidden,
            doc_hidden=doc_hidden,
        )

    def _spans(self, fused, token_mask, img, image_mask, spans):
        """Aspect-conditioned pooling: the span's mean vector queries the post's tokens
        and image regions; the hidden vector (before the output layer) comes from
        [span mean, span max, attended context]."""
        if spans.shape[0] == 0:
            return fused.new_zeros((0, self.span_out[-1].in_features))
        T = fused.shape[1]
        doc_ids, starts, ends = spans[:, 0], spans[:, 1], spans[:, 2]
        positions = torch.arange(T, device=fused.device)
        inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < ends[:, None])  # (S, T)
        states = fused[doc_ids]  # (S, T, H)
        w = inside.to(fused.dtype).unsqueeze(-1)
        mean = (states * w).sum(1) / w.sum(1).clamp(min=1.0)
        span_max = states.masked_fill(~inside.unsqueeze(-1), float("-inf")).max(1).values
        keys = torch.cat([states, img[doc_ids]], dim=1)
        key_mask = torch.cat([token_mask[doc_ids], image_mask[doc_ids]], dim=1)
        att = torch.einsum("sh,skh->sk", self.aspect_query(mean), keys) / keys.shape[-1] ** 0.5
        att = torch.softmax(att.masked_fill(~key_mask, float("-inf")), dim=1)
        context = torch.einsum("sk,skh->sh", att, keys)
        return self.span_out[:-1](torch.cat([mean, span_max, context], dim=-1))


def _drop_docs(mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Hide a whole modality for a random subset of docs."""
    if rate <= 0.0:
        return mask
    keep = torch.rand(mask.shape[0], 1, device=mask.device) >= rate
    return mask & keep
