"""``mulcot.JointSentimentModel.v1``: thinc glue around :class:`JointSentimentNet`.

The model maps ``(docs, spans_per_doc)`` to :class:`JointScores`. Token vectors come
from ``tok2vec`` (a spacy-transformers listener by default), optionally concatenated
with hashed lexical ``features`` (spaCy's MultiHashEmbed: ``SHAPE`` restores the casing
an uncased encoder loses). Image regions come from ``doc._.image_features``;
rationale units from ``doc._.rationale`` and the aspects' ``span._.rationale``.
The PyTorch part is a ``PyTorchWrapper_v2``; its first linear layers are lazy, so
input widths are learned at ``initialize`` from the data.

With a ``generator`` the input may carry chains to learn,
``(docs, spans, chains)`` with ``chains`` a list of ``(doc index, span index or -1
for the post, chain text)``; the reasoning loss then comes back in
``JointScores.reasoning_loss`` and its gradient (the weight ``w``) flows into the
fused representation. :func:`generate_reasoning` writes chains at inference.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, concatenate, torch2xp, xp2torch
from thinc.types import Floats2d

from .chains import parse_chain
from .doc_model import ASPECTS_KEY
from .layers import JointSentimentNet
from .rationale import RationaleEncoder
from .reasoning import ReasoningGenerator, build_prompt

SpanList = List[Tuple[int, int]]
#: (doc index, span index within the doc or -1 for the post, chain text[, soft targets[, label]])
#: soft targets: an assistant's top-k token logits along the chain (``span._.chain_topk``);
#: label: the decision a ``label_in_prompt`` generator explains when the item has no chain
#: to read one from (at inference: the classifier's); a chain's own Prediction comes first
ChainItem = Tuple


@dataclass
class JointScores:
    """Logits (or, going backwards, their gradients) for one batch."""

    tags: List[Floats2d]  # per doc: n_tokens × 3 (O, B, I)
    spans: Floats2d  # all spans of the batch, in doc order: S × 3 (POS, NEU, NEG)
    docs: Floats2d  # B × 3
    reasoning_loss: float = 0.0  # mean next-token CE of the chains (gradient: its weight)


def joint_sentiment_model_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    features: Optional[Model[List[Doc], List[Floats2d]]] = None,
    hidden_width: int = 256,
    attention_heads: int = 4,
    dropout: float = 0.1,
    fusion: str = "dual",
    use_image: bool = True,
    use_rationale: bool = True,
    image_dropout: float = 0.2,
    rationale_dropout: float = 0.3,
    rationale_encoder: Optional[str] = "all-MiniLM-L6-v2",
    generator: Optional[ReasoningGenerator] = None,
) -> Model[Tuple[List[Doc], List[SpanList]], JointScores]:
    """LRSA-style dual cross-attention over text, image regions and rationale units,
    with heads for BIO aspect tags, aspect sentiment and post sentiment.

    fusion: "dual" (cross-attention, the method) or "concat" (the no-fusion ablation).
    use_image / use_rationale: False ignores that modality entirely (ablations).
    image_dropout / rationale_dropout: modality dropout rates in training.
    rationale_encoder: frozen sentence encoder for rationale units (name or path);
        null turns the rationale branch off.
    generator: a ``mulcot.ReasoningGenerator.v1`` to write chains (trained jointly);
        null: classification only.
    """
    if hidden_width % attention_heads:
        raise ValueError(f"hidden_width ({hidden_width}) must be divisible by attention_heads ({attention_heads})")
    embed = tok2vec if features is None else concatenate(tok2vec, features)
    net = JointSentimentNet(
        token_width=0,
        image_width=0,
        rationale_width=0,
        hidden_width=hidden_width,
        heads=attention_heads,
        dropout=dropout,
        fusion=fusion,
        image_dropout=image_dropout,
        rationale_dropout=rationale_dropout,
        lazy=True,
        generator=generator,
    )
    wrapper = PyTorchWrapper_v2(net, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs)
    use_rationale = bool(use_rationale and rationale_encoder)
    return Model(
        "mulcot_joint",
        forward,
        init=init,
        layers=[embed, wrapper],
        attrs={
            "use_image": use_image,
            "use_rationale": use_rationale,
            "rationale_encoder_name": rationale_encoder if use_rationale else None,
            "rationale_width": 0,
            "image_width": 0,
            "has_generator": generator is not None,
        },
    )


def rationale_encoder_of(model: Model) -> Optional[RationaleEncoder]:
    """The model's (shared, lazily created) frozen rationale encoder."""
    name = model.attrs.get("rationale_encoder_name")
    if not name:
        return None
    if "_rationale_encoder" not in model.attrs or model.attrs["_rationale_encoder"] is None:
        model.attrs["_rationale_encoder"] = RationaleEncoder(name)
    return model.attrs["_rationale_encoder"]


def init(model: Model, X=None, Y=None) -> None:
    """Initialise the embedding on sample docs, fix the modality widths and materialise
    the lazy layers with one forward pass."""
    docs = list(X[0]) if X is not None else []
    embed = model.layers[0]
    embed.initialize(X=docs if docs else None)
    if not model.attrs["image_width"]:
        widths = {d._.image_features["regions"].shape[-1] for d in docs if d._.image_features is not None}
        if len(widths) > 1:
            raise ValueError(f"Image features of different widths in the sample: {sorted(widths)}")
        model.attrs["image_width"] = widths.pop() if widths else 1280
    if not model.attrs["rationale_width"]:
        encoder = rationale_encoder_of(model)
        model.attrs["rationale_width"] = encoder.width if encoder is not None else 1
    if docs:
        sample = docs[:2]
        # One chain item materialises the generator's lazy projections too.
        chains = [(0, -1, "x")] if model.attrs.get("has_generator") else None
        model.predict((sample, [[] for _ in sample], chains) if chains else (sample, [[] for _ in sample]))


def forward(model: Model, inputs, is_train: bool):
    docs, spans, *rest = inputs
    chains: Optional[List[ChainItem]] = rest[0] if rest else None
    wrapper = model.layers[1]
    ops = model.ops
    net_inputs, lengths = _net_inputs(model, docs, spans, is_train)
    tokvecs_backprop = net_inputs.pop()
    reasoning = _reasoning_items(model, docs, spans, chains) if chains else None
    outputs, backprop_net = wrapper((*net_inputs, reasoning), is_train)
    tag_pad, span_scores, doc_scores, reasoning_loss = outputs
    tags = [tag_pad[i, :n] for i, n in enumerate(lengths)]

    def backprop(d: JointScores) -> List[Doc]:
        d_tags = ops.alloc3f(*tag_pad.shape)
        for i, n in enumerate(lengths):
            d_tags[i, :n] = d.tags[i]
        d_padded = backprop_net((d_tags, d.spans, d.docs, d.reasoning_loss))
        tokvecs_backprop([d_padded[i, :n] for i, n in enumerate(lengths)])
        return docs

    scores = JointScores(tags=tags, spans=span_scores, docs=doc_scores, reasoning_loss=float(reasoning_loss))
    return scores, backprop


def _net_inputs(model: Model, docs: List[Doc], spans: List[SpanList], is_train: bool):
    """The net's array inputs for a batch, the doc lengths, and (last in the list) the
    embedding's backprop."""
    if len(docs) != len(spans):
        raise ValueError(f"{len(docs)} docs but {len(spans)} span lists")
    embed = model.layers[0]
    ops = model.ops
    tokvecs, bp_tokvecs = embed(docs, is_train)
    lengths = [len(d) for d in docs]
    width = tokvecs[0].shape[-1] if tokvecs else 0
    padded = ops.pad(tokvecs) if docs and max(lengths) > 0 else ops.alloc3f(len(docs), 1, width)
    T = padded.shape[1]
    token_mask = numpy.zeros((len(docs), T), dtype=bool)
    for i, n in enumerate(lengths):
        token_mask[i, :n] = True
        if n == 0:
            token_mask[i, 0] = True  # an empty doc still attends to one (zero) token
    image, image_mask = _image_batch(model, docs)
    rationale, rationale_mask = _rationale_batch(model, docs)
    span_rows = numpy.array(
        [(i, s, e) for i, doc_spans in enumerate(spans) for s, e in doc_spans], dtype="int64"
    ).reshape(-1, 3)
    return [padded, token_mask, image, image_mask, rationale, rationale_mask, span_rows, bp_tokvecs], lengths


def generator_of(model: Model) -> Optional[ReasoningGenerator]:
    """The model's reasoning generator, or None."""
    if not model.attrs.get("has_generator"):
        return None
    return model.layers[1].shims[0]._model.generator


def _reasoning_items(model: Model, docs: Sequence[Doc], spans: Sequence[SpanList], chains: Optional[Sequence[ChainItem]]) -> Dict[str, Any]:
    """Rows into the batch's spans (-1: the post), doc indices and prompts for the
    chain items; ``chains`` may hold None texts (generation)."""
    generator = generator_of(model)
    if generator is None:
        raise ValueError("chains were given but the model has no generator (set [model.generator])")
    offsets = numpy.cumsum([0] + [len(s) for s in spans])
    rows, doc_ids, prompts, texts, soft = [], [], [], [], []
    for doc_i, span_j, chain, *extra in chains:
        soft.append(extra[0] if extra else None)
        label = None
        if generator.label_in_prompt:
            # Training: the label the chain argues for; failing that (or at inference) the given one.
            label = (parse_chain(chain).prediction if chain else None) or (extra[1] if len(extra) > 1 else None)
        if span_j >= len(spans[doc_i]):
            raise ValueError(f"chain item for span {span_j} of doc {doc_i}, which has {len(spans[doc_i])} spans")
        doc = docs[doc_i]
        aspect = None
        if span_j >= 0:
            start, end = spans[doc_i][span_j]
            aspect = doc[start:end].text
        rows.append(int(offsets[doc_i] + span_j) if span_j >= 0 else -1)
        doc_ids.append(doc_i)
        prompts.append(build_prompt(generator.tokenizer, doc.text, aspect, label))
        texts.append(chain)
    return {
        "rows": numpy.asarray(rows, dtype="int64"),
        "docs": numpy.asarray(doc_ids, dtype="int64"),
        "prompts": prompts,
        "chains": texts,
        "soft": soft,
        # Distillation of the chain tokens (set by the component from its config).
        "distill_weight": float(model.attrs.get("distill_weight", 0.0)),
        "temperature": float(model.attrs.get("distill_temperature", 1.0)),
    }


def generate_reasoning(
    model: Model,
    docs: List[Doc],
    spans: List[SpanList],
    items: Sequence[Tuple[int, int]],
    batch_size: int = 16,
    dtype: Optional[str] = "bfloat16",
    max_new_tokens: int = 320,
    greedy: bool = True,
    temperature: float = 1.0,
    labels: Optional[Sequence[str]] = None,
) -> List[str]:
    """One chain per ``(doc index, span index or -1)`` item, written by the model's
    generator from the prompt (post text, aspect), the image prefix and the
    classifier's vector for the item. Batched across docs, KV cache, inference mode.
    ``labels`` (per item): the classifier's decisions, named in the prompt when the
    generator was built with ``label_in_prompt``."""
    if not items:
        return []
    if labels is not None and len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} items")
    labels = list(labels) if labels is not None else [None] * len(items)
    net, inputs, r = _inference_batch(model, docs, spans, [(d, s, None, None, y) for (d, s), y in zip(items, labels)])
    return net.reason(
        *inputs, r["rows"], r["docs"], r["prompts"], batch_size=batch_size, dtype=dtype,
        max_new_tokens=max_new_tokens, greedy=greedy, temperature=temperature,
    )


def _inference_batch(model: Model, docs: List[Doc], spans: List[SpanList], chains: Optional[Sequence[ChainItem]]):
    """The PyTorch net, its seven classification inputs as tensors, and the chain
    items as tensors (None without chains), for calling the net outside thinc."""
    net_inputs, _ = _net_inputs(model, docs, spans, is_train=False)
    net_inputs.pop()  # the embedding's backprop: not needed at inference
    reasoning = _reasoning_items(model, docs, spans, chains) if chains else None
    args, _ = _convert_inputs(model, (*net_inputs, reasoning), is_train=False)
    *inputs, r = args.args
    return model.layers[1].shims[0]._model, inputs, r


def _image_batch(model: Model, docs: Sequence[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Regions plus the pooled vector as one more key, per doc; missing → masked."""
    width = model.attrs["image_width"] or 1280
    feats = [d._.image_features if model.attrs["use_image"] else None for d in docs]
    n_keys = max((f["regions"].shape[0] + 1 for f in feats if f is not None), default=1)
    image = numpy.zeros((len(docs), n_keys, width), dtype="float32")
    mask = numpy.zeros((len(docs), n_keys), dtype=bool)
    for i, f in enumerate(feats):
        if f is None:
            continue
        regions = numpy.asarray(f["regions"], dtype="float32")
        if regions.shape[-1] != width:
            raise ValueError(
                f"doc {i} has image features of width {regions.shape[-1]} but the model was "
                f"initialised with width {width}: use the image encoder the model was trained with"
            )
        keys = numpy.concatenate([regions, numpy.asarray(f["pooled"], dtype="float32")[None, :]])
        image[i, : len(keys)] = keys
        mask[i, : len(keys)] = True
    return image, mask


def doc_rationales(doc: Doc) -> List[str]:
    """The chains a model may read for a doc: the post's and its given aspects'."""
    chains = [doc._.rationale] if doc._.rationale else []
    if ASPECTS_KEY in doc.spans:
        chains.extend(s._.rationale for s in doc.spans[ASPECTS_KEY] if s._.rationale)
    return chains


def _rationale_batch(model: Model, docs: Sequence[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    width = model.attrs["rationale_width"] or 1
    chains = [doc_rationales(d) if model.attrs["use_rationale"] else [] for d in docs]
    if not any(chains):
        return numpy.zeros((len(docs), 0, width), dtype="float32"), numpy.zeros((len(docs), 0), dtype=bool)
    units = rationale_encoder_of(model).encode(chains)
    n_keys = max(len(u) for u in units)
    rationale = numpy.zeros((len(docs), n_keys, width), dtype="float32")
    mask = numpy.zeros((len(docs), n_keys), dtype=bool)
    for i, u in enumerate(units):
        rationale[i, : len(u)] = u
        mask[i, : len(u)] = True
    return rationale, mask


def chain_soft_targets(
    model: Model, docs: List[Doc], spans: List[SpanList], chains: Sequence[ChainItem], k: int = 8
) -> Tuple[numpy.ndarray, List[dict]]:
    """What a student learns from this (assistant) model: its aspect logits (S × 3,
    for ``spans``) and, per chain item, its top-k next-token logits along the chain
    (teacher-forced). Computed once; stored with the training docs."""
    net, inputs, r = _inference_batch(model, docs, spans, chains)
    image, image_mask = inputs[2], inputs[3]
    net.eval()
    with torch.inference_mode():
        _, span_logits, _, span_hidden, doc_hidden = net._classify(*inputs)
        topk = []
        if r is not None:
            prefix = net._prefix(image, image_mask, span_hidden, doc_hidden, r["rows"], r["docs"])
            topk = net.generator.chain_topk(r["prompts"], r["chains"], prefix, k=k)
    return span_logits.float().cpu().numpy(), topk


def _convert_inputs(model: Model, inputs, is_train: bool):
    tokens, *rest, reasoning = inputs
    tokens_t = xp2torch(tokens, requires_grad=is_train)
    device = tokens_t.device

    # Masks, image and rationale arrays are built with numpy; follow the tokens' device.
    def to_torch(a):
        return torch.from_numpy(numpy.ascontiguousarray(a)).to(device)

    others = [to_torch(a) for a in rest]
    if reasoning is not None:
        reasoning = {**reasoning, "rows": to_torch(reasoning["rows"]), "docs": to_torch(reasoning["docs"])}

    def backprop(d_inputs: ArgsKwargs):
        return torch2xp(d_inputs.args[0])

    return ArgsKwargs(args=(tokens_t, *others, reasoning), kwargs={}), backprop


def _convert_outputs(model: Model, inputs_outputs, is_train: bool):
    _, outputs = inputs_outputs
    converted = tuple(torch2xp(t.detach().float()) for t in outputs)

    def backprop(d_outputs):
        # The reasoning loss has no graph when the batch had no chains.
        pairs = [
            (t, xp2torch(model.ops.asarray(d, dtype="float32")).to(t.device).reshape(t.shape))
            for t, d in zip(outputs, d_outputs)
            if t.requires_grad
        ]
        return ArgsKwargs(args=([t for t, _ in pairs],), kwargs={"grad_tensors": [g for _, g in pairs]})

    return converted, backprop
