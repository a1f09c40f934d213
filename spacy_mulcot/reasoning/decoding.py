"""Chain decoding for Llama-family LMs (SmolLM2, Llama, Qwen2) without ``generate``'s
per-step overhead: a preallocated KV cache and continuous batching.

Why: greedy decoding of a 135M LM on a CPU is bound by memory traffic and bookkeeping,
not arithmetic.
Profiled at batch 64, transformers' ``generate`` spent about 40% of each step copying
the KV cache (``torch.cat`` into the dynamic cache; grouped-query heads expanded to
full heads on every step) and left finished rows decoding padding until the longest
chain of the sub-batch ended. Here:

- the weights are read once into fused matrices (q/k/v as one, gate/up as one),
  in bf16 prepacked into oneDNN's blocked layout (``F.linear`` re-lays a weight out on
  every call: prepacked, the step's matrix multiplies took ~25 instead of ~44 ms at
  64 rows; equal results at decode batch sizes, while the prefill's larger products
  may round differently);
- the KV cache is allocated once per call, ``slots`` rows × the longest prompt +
  ``max_new_tokens`` positions, and each step writes one column in place;
- grouped-query attention at decode reads the shared key/value heads directly (a
  query's head group becomes the query axis of one ``scaled_dot_product_attention``);
- **continuous batching**: a row whose chain ended takes the next waiting prompt
  (prefilled, its cache written into the freed row), so every step decodes live
  chains; once no prompt waits, live rows move down into freed ones (with their cache)
  so the tail decodes fewer rows, and a free row sits at position 0 so it never
  lengthens the others' attention.

The arithmetic is the LM's own (same RMSNorm, rotary embedding module, SiLU MLP):
in float32 the tokens equal ``generate``'s (tested); in bfloat16 both round
differently, so rare near-ties may decode differently.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch.nn import functional as F

from ..compute import has_fast_bf16

#: Model types whose decoder layer is the Llama layer (RMSNorm, rotary, SiLU-gated MLP).
SUPPORTED = ("llama", "qwen2")


def supports(lm) -> bool:
    """Whether :class:`FastDecoder` can decode with ``lm`` (else use ``generate``)."""
    config = getattr(lm, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED:
        return False
    if type(lm).__name__ not in ("LlamaForCausalLM", "Qwen2ForCausalLM"):
        return False  # e.g. a peft wrapper: its adapters live outside the base weights
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return False
    if getattr(config, "use_sliding_window", False) or getattr(config, "pretraining_tp", 1) != 1:
        return False
    return all(hasattr(layer.self_attn, "q_proj") for layer in lm.model.layers)


@dataclass
class _Layer:
    norm1: torch.Tensor
    eps1: float
    qkv: torch.Tensor
    qkv_bias: Optional[torch.Tensor]
    o: torch.Tensor
    norm2: torch.Tensor
    eps2: float
    gate_up: torch.Tensor
    down: torch.Tensor


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # As transformers' LlamaRMSNorm: the statistic in float32, the product in x's dtype.
    return weight * F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear``, or oneDNN's linear for a weight prepacked by :func:`_pack` (no
    re-laying out of the weight on every call)."""
    if weight.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _can_pack(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether weights can be prepacked for oneDNN here: bf16 on a CPU with oneDNN and
    the ops that take a packed weight (probed once on a tiny matrix)."""
    if device.type != "cpu" or dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        probe = torch.ones(4, 8, dtype=dtype)
        out = _linear(torch.ones(2, 8, dtype=dtype), _pack(probe))
    except (AttributeError, RuntimeError):
        return False
    return bool((out == 8).all())


def _pack(weight: torch.Tensor, rows: int = 64) -> torch.Tensor:
    # ``rows``: the batch size oneDNN picks the layout for (any batch size works).
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class FastDecoder:
    """Decodes chains with one LM's weights (read at construction: build a new one
    after the weights change). ``lm`` must pass :func:`supports`."""

    def __init__(self, lm, pack: Optional[bool] = None):
        """pack: prepack the matrices for oneDNN (about 1.7x faster matrix multiplies at
        64 rows in bf16; the same results as ``F.linear`` at decode batch sizes, bf16
        rounding may differ in the prefill's larger products); None: where possible and
        worth it (a bf16 LM on a CPU that runs bf16 natively: elsewhere it is emulated)."""
        if not supports(lm):
            raise TypeError(f"FastDecoder needs a Llama or Qwen2 causal LM, got {type(lm).__name__}")
        config = lm.config
        self.dtype = lm.dtype
        self.device = lm.device
        possible = _can_pack(self.dtype, self.device)
        if pack and not possible:
            raise ValueError("pack=True needs a bfloat16 LM on a CPU with oneDNN")
        self.packed = (possible and has_fast_bf16(self.device)) if pack is None else bool(pack)
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.rotary = lm.model.rotary_emb
        self.embed = lm.get_input_embeddings().weight
        self.norm = lm.model.norm.weight
        self.norm_eps = lm.model.norm.variance_epsilon
        with torch.no_grad():
            self.head = self._matrix(lm.get_output_embeddings().weight)
            self.layers = [self._read(layer) for layer in lm.model.layers]

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        return _pack(weight) if self.packed else weight

    def _read(self, layer) -> _Layer:
        att, mlp = layer.self_attn, layer.mlp
        biases = [p.bias for p in (att.q_proj, att.k_proj, att.v_proj)]
        qkv_bias = None
        if any(b is not None for b in biases):
            qkv_bias = torch.cat(
                [
                    b if b is not None else p.weight.new_zeros(p.out_features)
                    for b, p in zip(biases, (att.q_proj, att.k_proj, att.v_proj))
                ]
            )
        if att.o_proj.bias is not None:
            raise TypeError("an output projection with a bias is not a Llama layer")
        return _Layer(
            norm1=layer.input_layernorm.weight,
            eps1=layer.input_layernorm.variance_epsilon,
            qkv=self._matrix(torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])),
            qkv_bias=qkv_bias,
            o=self._matrix(att.o_proj.weight),
            norm2=layer.post_attention_layernorm.weight,
            eps2=layer.post_attention_layernorm.variance_epsilon,
            gate_up=self._matrix(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
            down=self._matrix(mlp.down_proj.weight),
        )

    # ---- one forward ------------------------------------------------------

    def _forward(self, h: torch.Tensor, positions: torch.Tensor, caches, rows: torch.Tensor, prefill: bool):
        """h (B, T, H) at ``positions`` (B, T). Prefill: T prompt tokens (right padded)
        written into cache ``rows`` at 0..T-1. Decode (T = 1): each row's token written
        at its position, attending to positions ≤ it. Returns the final hidden states."""
        B, T, _ = h.shape
        nh, nkv, d = self.n_heads, self.n_kv, self.head_dim
        cos, sin = self.rotary(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        if not prefill:
            length = int(positions.max()) + 1
            live = torch.arange(length, device=h.device)[None, :] <= positions  # (B, length)
            mask = live[:, None, None, :]
            at = positions[:, 0]
        for layer, (k_cache, v_cache) in zip(self.layers, caches):
            x = _rms(h, layer.norm1, layer.eps1)
            qkv = _linear(x, layer.qkv, layer.qkv_bias)
            # Queries and keys rotate in one pass: heads 0..nh-1 query, the next nkv keys.
            qk = _rotate(qkv[..., : (nh + nkv) * d].view(B, T, nh + nkv, d).transpose(1, 2), cos, sin)
            q, k = qk[:, :nh], qk[:, nh:]
            v = qkv[..., (nh + nkv) * d :].view(B, T, nkv, d).transpose(1, 2)
            if prefill:
                k_cache[rows, :, :T] = k
                v_cache[rows, :, :T] = v
                attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nh != nkv)
                attn = attn.transpose(1, 2).reshape(B, T, nh * d)
            else:
                k_cache[rows, :, at] = k[:, :, 0]
                v_cache[rows, :, at] = v[:, :, 0]
                keys, values = k_cache[:B, :, :length], v_cache[:B, :, :length]
                # The heads sharing one key/value head are that head's queries.
                grouped = q.reshape(B, nkv, nh // nkv, d)
                attn = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask)
                attn = attn.reshape(B, 1, nh * d)
            h = h + _linear(attn, layer.o)
            x = _rms(h, layer.norm2, layer.eps2)
            gate, up = _linear(x, layer.gate_up).chunk(2, dim=-1)
            h = h + _linear(F.silu(gate) * up, layer.down)
        return h

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        # In the LM's dtype: greedy picks need no float copy (a bf16 value converts to
        # float exactly, so the first maximum is the same); sampling converts (``pick``).
        return _linear(_rms(h, self.norm, self.norm_eps), self.head)

    # ---- decoding -----------------------------------------------------------

    @torch.inference_mode()
    def decode(
        self,
        embeds: Sequence[torch.Tensor],
        max_new_tokens: int,
        stops: Sequence[int] = (),
        slots: int = 16,
        min_new_tokens: Optional[int] = None,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> List[List[int]]:
        """The generated ids per prompt (stop token excluded). ``embeds``: one (n_i, H)
        input embedding matrix per prompt (image prefix + text); ``slots`` chains
        decode side by side, a finished one handing its row to the next prompt."""
        if max_new_tokens < 1:
            return [[] for _ in embeds]
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if any(e.dim() != 2 or e.shape[0] == 0 for e in embeds):
            raise ValueError("every prompt needs a non-empty (n_tokens, hidden) embedding matrix")
        n = len(embeds)
        slots = min(slots, n)
        capacity = max(e.shape[0] for e in embeds) + max_new_tokens
        shape = (slots, self.n_kv, capacity, self.head_dim)
        caches = [
            # Zeros, not empty: masked positions still meet the values (0 · NaN is NaN).
            (
                torch.zeros(shape, dtype=self.dtype, device=self.device),
                torch.zeros(shape, dtype=self.dtype, device=self.device),
            )
            for _ in self.layers
        ]
        stop_ids = torch.tensor(sorted(set(stops)), dtype=torch.long, device=self.device)
        floor = min_new_tokens or 0
        outputs: List[List[int]] = [[] for _ in range(n)]
        item = [-1] * slots  # the prompt each row decodes (-1: free)
        position = torch.zeros(slots, dtype=torch.long, device=self.device)
        last = torch.zeros(slots, dtype=torch.long, device=self.device)
        waiting = list(range(n))
        waiting.reverse()  # pop() takes the first prompt
        live = 0

        def pick(logits: torch.Tensor, counts: List[int]) -> torch.Tensor:
            early = [j for j, c in enumerate(counts) if c < floor]
            if early and len(stop_ids):
                # min_new_tokens: no stop token before the floor (as generate's processor).
                logits[torch.tensor(early, device=logits.device)[:, None], stop_ids[None, :]] = -float("inf")
            if greedy:
                # max(-1).indices: the first maximum, as argmax; on bf16 logits 2.4 ms at
                # 64 rows here against 8.2 for argmax (and 4.9 for a float copy + argmax).
                return logits.max(-1).indices
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            return torch.multinomial(probs, 1, generator=generator)[:, 0]

        def finish(row: int, token: int) -> bool:
            """Record ``token`` for the row's prompt; True when its chain has ended."""
            chain = outputs[item[row]]
            if token in stops and len(chain) >= floor:
                return True
            chain.append(token)
            return len(chain) >= max_new_tokens

        #: What the last call did: decode steps, prefill calls, compactions.
        stats = self.stats = {"steps": 0, "prefills": 0, "compactions": 0}

        def release(row: int) -> None:
            # A free row still decodes a dummy token at its position: keep it at 0 so
            # that it does not lengthen everyone's attention.
            item[row] = -1
            position[row] = 0
            last[row] = 0

        def compact(n_live: int) -> int:
            """Move the live rows beyond the first ``n_live`` into the free rows below,
            with their caches; returns the new number of rows to decode."""
            movers = [r for r in range(n_live, slots) if item[r] >= 0]
            holes = [r for r in range(n_live) if item[r] < 0]
            src = torch.tensor(movers, device=self.device)
            dst = torch.tensor(holes, device=self.device)
            length = int(position[src].max()) + 1
            for k_cache, v_cache in caches:
                k_cache[dst, :, :length] = k_cache[src, :, :length]
                v_cache[dst, :, :length] = v_cache[src, :, :length]
            position[dst], last[dst] = position[src], last[src]
            for hole, mover in zip(holes, movers):
                item[hole] = item[mover]
                release(mover)
            stats["compactions"] += 1
            return n_live

        while waiting or live:
            free = [r for r in range(slots) if item[r] < 0]
            # Refill when enough rows are free to make a prefill worth its call (or at the end).
            if waiting and free and (len(free) >= max(1, slots // 8) or live == 0):
                take = free[: len(waiting)]
                new = [waiting.pop() for _ in take]
                width = max(embeds[i].shape[0] for i in new)
                h = torch.zeros(len(new), width, embeds[0].shape[1], dtype=self.dtype, device=self.device)
                lengths = []
                for j, i in enumerate(new):
                    h[j, : embeds[i].shape[0]] = embeds[i].to(self.dtype)
                    lengths.append(embeds[i].shape[0])
                positions = torch.arange(width, device=self.device).expand(len(new), width)
                rows = torch.tensor(take, device=self.device)
                h = self._forward(h, positions, caches, rows, prefill=True)
                stats["prefills"] += 1
                ends = torch.tensor(lengths, device=self.device) - 1
                tokens = pick(self._logits(h[torch.arange(len(new)), ends]), [0] * len(new)).tolist()
                for row, i, token, length in zip(take, new, tokens, lengths):
                    item[row] = i
                    live += 1
                    if finish(row, token):
                        release(row)
                        live -= 1
                    else:
                        position[row] = length
                        last[row] = token
                continue
            top = max(r for r in range(slots) if item[r] >= 0) + 1
            if not waiting and live <= top * 3 // 4:
                # The tail: no prompt left to fill the gaps, so move the live rows down
                # and decode fewer rows.
                top = compact(live)
            # One decode step for rows 0..top (free rows inside decode a dummy token).
            rows = torch.arange(top, device=self.device)
            h = F.embedding(last[:top, None], self.embed)
            h = self._forward(h, position[:top, None], caches, rows, prefill=False)
            stats["steps"] += 1
            counts = [len(outputs[item[r]]) if item[r] >= 0 else 0 for r in range(top)]
            tokens = pick(self._logits(h[:, 0]), counts).tolist()
            for row in range(top):
                if item[row] < 0:
                    continue
                if finish(row, tokens[row]):
                    release(row)
                    live -= 1
                else:
                    position[row] += 1
                    last[row] = tokens[row]
        return outputs
