"""``mulcot.JointSentimentModel.v1``: thinc glue around :class:`JointSentimentNet`.

The model maps a :class:`~spacy_mulcot.data_classes.ModelInput` (docs, aspect spans
per doc, reasoning items to learn) to :class:`JointScores`. Token vectors come from
``tok2vec`` (a spacy-transformers listener by default), optionally concatenated with
hashed lexical ``features`` (spaCy's MultiHashEmbed: ``SHAPE`` restores the casing an
uncased encoder loses). Image regions come from ``doc._.image_features``; rationale
units from ``doc._.rationale`` and the aspects' ``span._.rationale``. The PyTorch part
is held by a :class:`MulcotShim` (network + generator, and their serialization); its
first linear layers are lazy, so input widths are learned at ``initialize``.

With a generator, items with chains are learnt: the reasoning loss comes back in
``JointScores.reasoning_loss`` and its gradient (``JointScores.d_reasoning``, the weight ``w``) flows into the
fused representation. :func:`write_chains` writes chains at inference and
:func:`chain_soft_targets` gives what a student distils.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, concatenate, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

from ..chains import parse_chain
from ..data_classes import JointScores, ModelInput, NetBatch, ReasoningBatch, ReasoningItem, SpanList, span_offsets
from ..doc_model import ASPECTS_KEY
from ..generation import GenerationSettings
from ..labels import POLARITIES
from ..layers import JointSentimentNet
from ..rationale import RationaleEncoder
from ..reasoning import ReasoningGenerator, build_prompt
from .gemm import use_torch_gemm
from .shim import MulcotShim

__all__ = [
    "JointScores",
    "ModelInput",
    "ReasoningItem",
    "joint_sentiment_model_v1",
    "net_shim",
    "generator_of",
    "has_generator",
    "write_chains",
    "predict_joint",
    "chain_soft_targets",
]


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
) -> Model[ModelInput, JointScores]:
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
    use_torch_gemm(embed)  # thinc's CPU matrix products on torch's threads (CNN tok2vec: ~3x)
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
    # thinc's PyTorch forward with our shim (as spacy-transformers' HFWrapper does).
    wrapper = Model(
        "pytorch",
        pytorch_forward,
        attrs={"convert_inputs": _convert_inputs, "convert_outputs": _convert_outputs},
        shims=[MulcotShim(net)],
        dims={"nI": None, "nO": None},
    )
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


def net_shim(model: Model) -> MulcotShim:
    """The shim that owns the model's network and generator."""
    return model.layers[1].shims[0]


def has_generator(model: Model) -> bool:
    """Whether the model was built with a reasoning generator (none is loaded to tell)."""
    return bool(model.attrs.get("has_generator"))


def generator_of(model: Model) -> Optional[ReasoningGenerator]:
    """The model's reasoning generator (built now if it was deferred), or None."""
    if not has_generator(model):
        return None
    return net_shim(model).ready_generator()


def rationale_encoder_of(model: Model) -> Optional[RationaleEncoder]:
    """The model's (shared, lazily created) frozen rationale encoder."""
    name = model.attrs.get("rationale_encoder_name")
    if not name:
        return None
    if model.attrs.get("_rationale_encoder") is None:
        model.attrs["_rationale_encoder"] = RationaleEncoder(name)
    return model.attrs["_rationale_encoder"]


def init(model: Model, X: Optional[ModelInput] = None, Y=None) -> None:
    """Initialise the embedding on sample docs, fix the modality widths and materialise
    the lazy layers with one forward pass."""
    X = _as_input(X) if X is not None else None
    docs = list(X.docs) if X is not None else []
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
        items = [ReasoningItem(doc=0, chain="x")] if model.attrs.get("has_generator") else []
        model.predict(ModelInput(sample, [[] for _ in sample], items))


def _as_input(inputs: ModelInput) -> ModelInput:
    if not isinstance(inputs, ModelInput):
        raise TypeError(f"the mulcot model takes a ModelInput (docs, spans, items), got {type(inputs).__name__}")
    return inputs


def forward(model: Model, inputs: ModelInput, is_train: bool):
    inputs = _as_input(inputs)
    wrapper = model.layers[1]
    ops = model.ops
    tokens, batch, lengths, tokvecs_backprop = _net_inputs(model, inputs.docs, inputs.spans, is_train)
    reasoning = _reasoning_batch(model, inputs) if inputs.items else None
    outputs, backprop_net = wrapper((tokens, batch, reasoning), is_train)
    tag_pad, span_scores, doc_scores, reasoning_loss = outputs
    tags = [tag_pad[i, :n] for i, n in enumerate(lengths)]

    def backprop(d: JointScores) -> ModelInput:
        d_tags = ops.alloc3f(*tag_pad.shape)
        for i, n in enumerate(lengths):
            d_tags[i, :n] = d.tags[i]
        d_padded = backprop_net((d_tags, d.spans, d.docs, d.d_reasoning))
        tokvecs_backprop([d_padded[i, :n] for i, n in enumerate(lengths)])
        return inputs

    scores = JointScores(tags=tags, spans=span_scores, docs=doc_scores, reasoning_loss=float(reasoning_loss))
    return scores, backprop


def _net_inputs(model: Model, docs: List[Doc], spans: List[SpanList], is_train: bool):
    """The padded token vectors, the :class:`NetBatch`, the doc lengths and the
    embedding's backprop for a batch."""
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
    batch = NetBatch(token_mask, image, image_mask, rationale, rationale_mask, span_rows)
    return padded, batch, lengths, bp_tokvecs


def _reasoning_batch(model: Model, inputs: ModelInput) -> ReasoningBatch:
    """Rows into the batch's spans (-1: the post), doc indices and prompts for the
    items; items may hold no chain (generation)."""
    generator = generator_of(model)
    if generator is None:
        raise ValueError("chains were given but the model has no generator (set [model.generator])")
    offsets = span_offsets(inputs.spans)
    rows, prompts = [], []
    for item in inputs.items:
        label = None
        if generator.label_in_prompt:
            # Training: the label the chain argues for; failing that (or at inference) the given one.
            label = (parse_chain(item.chain).prediction if item.chain else None) or item.label
        doc = inputs.docs[item.doc]
        aspect = None
        if not item.is_post:
            start, end = inputs.spans[item.doc][item.span]
            aspect = doc[start:end].text
        rows.append(-1 if item.is_post else int(offsets[item.doc] + item.span))
        prompts.append(build_prompt(generator.tokenizer, doc.text, aspect, label, prompt=generator.prompt))
    return ReasoningBatch(
        rows=numpy.asarray(rows, dtype="int64"),
        docs=numpy.asarray([item.doc for item in inputs.items], dtype="int64"),
        prompts=prompts,
        chains=[item.chain for item in inputs.items],
        soft=[item.soft for item in inputs.items],
    )


#: Asked once the classifier has run: the chain items for the batch's spans and scores
#: (each naming the classifier's label), or none.
ChainRequest = Callable[[List[SpanList], JointScores], List[ReasoningItem]]


def predict_joint(
    model: Model,
    docs: List[Doc],
    spans: List[Optional[SpanList]],
    decode: Optional[Callable[[int, numpy.ndarray], SpanList]] = None,
    request_chains: Optional[ChainRequest] = None,
    settings: Optional[GenerationSettings] = None,
) -> Tuple[List[SpanList], JointScores, List[ReasoningItem], List[str]]:
    """The one inference entrance: aspects, scores and chains in one pass.

    For each doc whose ``spans`` entry is None, ``decode(i, tag_logits)`` (n_tokens × 3,
    numpy) picks its aspects from the tag logits and the span head reads the same fused
    states. Then ``request_chains(spans, scores)`` names the items to explain, and the
    generator writes one chain per item from the prompt (post text, aspect), the image
    prefix and the classifier's vector for the item, which the classifier has already
    computed: it runs once. Returns (spans, scores, items, chains)."""
    lengths = [len(doc) for doc in docs]
    found: List[SpanList] = [list(s) if s is not None else [] for s in spans]
    if decode is None and any(s is None for s in spans):
        raise ValueError("docs without given spans need a decode function")
    shim, tokens, batch, _ = _inference_batch(model, ModelInput(docs, found))

    def extract(tag_logits: torch.Tensor) -> torch.Tensor:
        logits = tag_logits.float().cpu().numpy()
        for i, doc_spans in enumerate(spans):
            if doc_spans is None:
                found[i] = decode(i, logits[i, : lengths[i]])
        rows = [(i, s, e) for i, doc_spans in enumerate(found) for s, e in doc_spans]
        return torch.tensor(rows, dtype=torch.long, device=tag_logits.device).reshape(-1, 3)

    items: List[ReasoningItem] = []

    def reasoning_for(out) -> Optional[ReasoningBatch]:
        scores = _scores(out, lengths)
        items.extend(request_chains(found, scores) if request_chains else [])
        if not items:
            return None
        for item in items:
            if item.label is not None and item.label not in POLARITIES:
                raise ValueError(f"unknown label {item.label!r} for a reasoning item; expected one of {POLARITIES}")
        reasoning = _reasoning_batch(model, ModelInput(docs, found, items))
        reasoning.rows = torch.from_numpy(reasoning.rows).to(out.spans.device)
        reasoning.docs = torch.from_numpy(reasoning.docs).to(out.spans.device)
        return reasoning

    out, chains = shim.infer(
        tokens,
        batch,
        extract=extract if any(s is None for s in spans) else None,
        reasoning_for=reasoning_for if request_chains else None,
        settings=settings or GenerationSettings(),
    )
    return found, _scores(out, lengths), items, chains


def _scores(out, lengths: List[int]) -> JointScores:
    tags = out.tags.float().cpu().numpy()
    return JointScores(
        tags=[tags[i, :n] for i, n in enumerate(lengths)],
        spans=out.spans.float().cpu().numpy(),
        docs=out.docs.float().cpu().numpy(),
    )


def write_chains(model: Model, inputs: ModelInput, settings: GenerationSettings) -> List[str]:
    """One chain per item of ``inputs.items`` for the given spans (``predict_joint``
    with the items fixed in advance)."""
    if not inputs.items:
        return []
    _, _, _, chains = predict_joint(model, inputs.docs, inputs.spans, None, lambda *_: inputs.items, settings)
    return chains


def chain_soft_targets(
    model: Model, inputs: ModelInput, k: int = 8
) -> Tuple[numpy.ndarray, List[numpy.ndarray], List[dict]]:
    """What a student learns from this (assistant) model: its aspect logits (S × 3,
    for ``inputs.spans``), its BIO tag logits per doc (n_tokens × 3) and, per chain
    item, its top-k next-token logits along the chain (teacher-forced). Computed once;
    stored with the training docs."""
    shim, tokens, batch, reasoning = _inference_batch(model, inputs)
    spans, tags, topk = shim.chain_topk(tokens, batch, reasoning, k=k)
    return spans, [tags[i, : len(doc)] for i, doc in enumerate(inputs.docs)], topk


def _inference_batch(model: Model, inputs: ModelInput):
    """The shim and its inputs as tensors, for calling it outside thinc's forward."""
    tokens, batch, _, _ = _net_inputs(model, inputs.docs, inputs.spans, is_train=False)
    reasoning = _reasoning_batch(model, inputs) if inputs.items else None
    args, _ = _convert_inputs(model, (tokens, batch, reasoning), is_train=False)
    return (net_shim(model), *args.args)


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


def _convert_inputs(model: Model, inputs, is_train: bool):
    tokens, batch, reasoning = inputs
    tokens_t = xp2torch(tokens, requires_grad=is_train)
    device = tokens_t.device

    # Masks, image and rationale arrays are built with numpy; follow the tokens' device.
    def to_torch(a):
        return torch.from_numpy(numpy.ascontiguousarray(a)).to(device)

    batch = batch.map(to_torch)
    if reasoning is not None:
        reasoning.rows, reasoning.docs = to_torch(reasoning.rows), to_torch(reasoning.docs)

    def backprop(d_inputs: ArgsKwargs):
        return torch2xp(d_inputs.args[0])

    # The token vectors are the only differentiable input: thinc returns gradients
    # for the tensors among the positional arguments.
    return ArgsKwargs(args=(tokens_t, batch, reasoning), kwargs={}), backprop


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
