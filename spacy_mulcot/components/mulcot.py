"""The ``mulcot`` component: aspects, their sentiment and the post's sentiment.

A doc that arrives with ``doc.spans["aspects"]`` gets those aspects classified (MASC);
otherwise aspects are extracted with BIO tags and then classified (MATE + JMASA).
Post-level sentiment (MSC) always goes to ``doc.cats``. With a generator in the
model, each aspect (and the post) also gets a chain of thought in ``span._.reasoning``
/ ``doc._.reasoning``, learnt jointly from the reference's ``_.rationale`` chains
(``L = L_cls + reasoning_weight · L_reasoning``).
"""

import random
import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import minibatch
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from .. import bio, workers
from ..architectures import extract_and_classify, generate_reasoning, generator_of, net_shim
from ..data_classes import JointScores, ModelInput, ReasoningItem
from ..doc_model import ASPECTS_KEY
from ..errors import NoGeneratorError
from ..labels import POLARITIES
from ..losses import Distillation, cross_entropy, distill_rows, log_softmax, soft_cross_entropy, softmax
from ..reasoning import force_prediction
from ..reasoning.generator import DECODERS, PendingGenerator, generator_from_folder
from ..scorer import DEFAULT_SCORE_WEIGHTS, score_mulcot

REASONING_TARGETS = ("aspects", "post", "both")
#: Settings that come from the pipeline config, not from the trained state: a
#: ``spacy.load(path, config={...})`` override must win over the saved ``cfg`` file.
_CONFIG_SETTINGS = (
    "generate_reasoning",
    "reasoning_targets",
    "max_new_tokens",
    "generation_batch_size",
    "generation_dtype",
    "generation_decoder",
    "generation_temperature",
    "guarantee_label",
)

#: Extension values a span keeps when ``mulcot`` relabels it (spaCy keys span
#: extension data by offsets *and* label, so they must be copied over).
_SPAN_EXTENSIONS = ("rationale", "rationale_label", "reasoning", "soft_labels", "chain_topk")

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "mulcot.JointSentimentModel.v1"
hidden_width = 256
attention_heads = 4
dropout = 0.1
fusion = "dual"
use_image = true
use_rationale = true
image_dropout = 0.2
rationale_dropout = 0.3
rationale_encoder = "all-MiniLM-L6-v2"

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[model.features]
@architectures = "spacy.MultiHashEmbed.v2"
width = 64
attrs = ["NORM", "SHAPE", "PREFIX", "SUFFIX"]
rows = [5000, 1000, 2500, 2500]
include_static_vectors = false
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "mulcot",
    assigns=["doc.spans", "doc.cats", "span._.sentiment_scores"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": ASPECTS_KEY,
        "tag_weight": 1.0,
        "aspect_weight": 1.0,
        "doc_weight": 0.5,
        "balance_aspects": 0.0,
        "reasoning_weight": 1.0,
        "max_reasoning_items": 4,
        "generate_reasoning": True,
        "reasoning_targets": "both",
        "max_new_tokens": 320,
        "generation_batch_size": 64,
        "generation_dtype": "auto",
        "generation_decoder": "auto",
        "generation_temperature": 0.0,
        "guarantee_label": False,
        "distill_weight": 0.0,
        "distill_temperature": 2.0,
        "scorer": {"@scorers": "mulcot.scorer.v1"},
    },
    default_score_weights=DEFAULT_SCORE_WEIGHTS,
)
def make_mulcot(
    nlp: Language,
    name: str,
    model: Model,
    spans_key: str,
    tag_weight: float,
    aspect_weight: float,
    doc_weight: float,
    balance_aspects: float,
    reasoning_weight: float,
    max_reasoning_items: int,
    generate_reasoning: bool,
    reasoning_targets: str,
    max_new_tokens: int,
    generation_batch_size: int,
    generation_dtype: Optional[str],
    generation_decoder: str,
    generation_temperature: float,
    guarantee_label: bool,
    distill_weight: float,
    distill_temperature: float,
    scorer: Optional[Callable],
) -> "Mulcot":
    """Joint multimodal aspect extraction and sentiment (LRSA fusion, MulCoT-RD heads).

    spans_key: the span group holding aspects (given or predicted).
    tag_weight / aspect_weight / doc_weight: weights of the three losses.
    balance_aspects: weight each aspect polarity by (frequency)^-balance_aspects in
        the aspect loss, frequencies counted at initialize (0: unweighted; 0.5: the
        square root of inverse frequency, which lifts macro-F1 on skewed data).

    The rest matters only when the model has a generator:
    reasoning_weight: ``w`` in ``L = L_cls + w · L_reasoning``.
    max_reasoning_items: at most this many chains per update (a random subset; 0: all):
        the LM's forward/backward dominates the step time.
    generate_reasoning: write chains at prediction time (off: the generator is never run;
        also settable per call: ``nlp.pipe(texts, component_cfg={"mulcot":
        {"generate_reasoning": True}})``).
    reasoning_targets: "aspects", "post" or "both".
    max_new_tokens / generation_batch_size / generation_dtype: greedy decoding limits,
        chains decoded together, and the LM copy's type ("auto": bf16 where the CPU runs
        it natively, ~2x faster there, else fp32; "bfloat16" forces it and warns where it
        is emulated, 4-5x slower; null or "float32": the trained weights as they are).
    generation_decoder: "auto" decodes Llama/Qwen2 LMs (SmolLM2 included) with the
        project's continuous-batching decoder (a preallocated KV cache; a finished
        chain's row takes the next prompt), other LMs with transformers' ``generate``;
        "generate" always uses ``generate`` (sub-batches of similar prompt length).
    guarantee_label: rewrite each chain's ``Prediction`` to the classifier's label, so
        chain and classifier always agree.
    distill_weight / distill_temperature: λ and T of MulCoT-RD's distillation loss,
        ``(1 − λ)·CE(hard) + λ·T²·KL(assistant_T ‖ student_T)``, for aspects with stored
        ``span._.soft_labels`` and chains with ``span._.chain_topk`` (made by
        ``python -m spacy_mulcot soft-targets``); 0: hard labels only.
    """
    Distillation(distill_weight, distill_temperature)  # refuses λ outside [0, 1], T <= 0
    if reasoning_targets not in REASONING_TARGETS:
        raise ValueError(f"reasoning_targets must be one of {REASONING_TARGETS}, got {reasoning_targets!r}")
    if generation_decoder not in DECODERS:
        raise ValueError(f"generation_decoder must be one of {DECODERS}, got {generation_decoder!r}")
    return Mulcot(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        tag_weight=tag_weight,
        aspect_weight=aspect_weight,
        doc_weight=doc_weight,
        balance_aspects=balance_aspects,
        reasoning_weight=reasoning_weight,
        max_reasoning_items=max_reasoning_items,
        generate_reasoning=generate_reasoning,
        reasoning_targets=reasoning_targets,
        max_new_tokens=max_new_tokens,
        generation_batch_size=generation_batch_size,
        generation_dtype=generation_dtype,
        generation_decoder=generation_decoder,
        generation_temperature=generation_temperature,
        guarantee_label=guarantee_label,
        distill_weight=distill_weight,
        distill_temperature=distill_temperature,
        scorer=scorer,
    )


@dataclass
class MulcotPrediction:
    """What ``predict`` found for a batch."""

    spans: List[List[Tuple[int, int]]]
    given: List[bool]
    span_probs: List[numpy.ndarray]  # per doc: n_spans × 3
    doc_probs: numpy.ndarray  # B × 3
    span_chains: Optional[List[List[Optional[str]]]] = None  # per doc, per span
    doc_chains: Optional[List[Optional[str]]] = None


class Mulcot(TrainablePipe):
    """Joint aspect extraction, aspect sentiment and post sentiment from text, image
    and (optionally) rationale."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "mulcot",
        *,
        spans_key: str = ASPECTS_KEY,
        tag_weight: float = 1.0,
        aspect_weight: float = 1.0,
        doc_weight: float = 0.5,
        balance_aspects: float = 0.0,
        reasoning_weight: float = 1.0,
        max_reasoning_items: int = 4,
        generate_reasoning: bool = True,
        reasoning_targets: str = "both",
        max_new_tokens: int = 320,
        generation_batch_size: int = 64,
        generation_dtype: Optional[str] = "auto",
        generation_decoder: str = "auto",
        generation_temperature: float = 0.0,
        guarantee_label: bool = False,
        distill_weight: float = 0.0,
        distill_temperature: float = 2.0,
        scorer: Optional[Callable] = score_mulcot,
    ):
        workers.install()  # nlp.pipe(n_process=N): each worker gets its own torch threads
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg = {
            "spans_key": spans_key,
            "tag_weight": tag_weight,
            "aspect_weight": aspect_weight,
            "doc_weight": doc_weight,
            "balance_aspects": balance_aspects,
            "aspect_class_weights": [1.0] * len(POLARITIES),
            "labels": list(POLARITIES),
            "reasoning_weight": reasoning_weight,
            "max_reasoning_items": max_reasoning_items,
            "generate_reasoning": generate_reasoning,
            "reasoning_targets": reasoning_targets,
            "max_new_tokens": max_new_tokens,
            "generation_batch_size": generation_batch_size,
            "generation_dtype": generation_dtype,
            "generation_decoder": generation_decoder,
            "generation_temperature": generation_temperature,
            "guarantee_label": guarantee_label,
            "distill_weight": distill_weight,
            "distill_temperature": distill_temperature,
        }
        #: λ and T, given to the model once: its chain loss reads them from there.
        self.distillation = Distillation(float(distill_weight), float(distill_temperature))
        if "has_generator" in model.attrs:  # mulcot.JointSentimentModel.v1
            net_shim(model).set_distillation(self.distillation)
        self._warned_no_features = False
        self._rng = random.Random(0)
        self._settings = {key: self.cfg[key] for key in _CONFIG_SETTINGS}

    # Serialization is TrainablePipe's (cfg, vocab, model): the model's shim carries
    # the generator LM's config and tokenizer in its bytes, so bytes and disk rebuild
    # the generator alike. Inference settings come from the config on load.

    def from_disk(self, path, *, exclude=tuple()):
        generator = generator_of(self.model)
        legacy = Path(path) / "generator"
        if generator is not None and (legacy / "config.json").exists():
            # Pipelines saved before the shim carried the LM's config kept it here.
            net_shim(self.model).set_generator(generator_from_folder(legacy, generator.settings))
        super().from_disk(path, exclude=exclude)
        self.cfg.update(self._settings)
        self._require_generator_loaded()
        return self

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        super().from_bytes(bytes_data, exclude=exclude)
        self.cfg.update(self._settings)
        self._require_generator_loaded()
        return self

    def _require_generator_loaded(self) -> None:
        """A generator whose LM could not be found stands in until the saved pipeline's
        own copy replaces it (load) or training starts (initialize); still there after
        either, the name was wrong: say so now, not at the first chain."""
        generator = generator_of(self.model)
        if isinstance(generator, PendingGenerator):
            generator._fail()

    @property
    def has_generator(self) -> bool:
        return generator_of(self.model) is not None

    def __call__(self, doc: Doc, **settings) -> Doc:
        return next(iter(self.pipe([doc], **settings)))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128, **settings):
        """As TrainablePipe.pipe; ``settings`` (any of ``generate_reasoning``,
        ``reasoning_targets``, ``max_new_tokens``, ``generation_batch_size``,
        ``generation_dtype``, ``generation_decoder``, ``generation_temperature``,
        ``guarantee_label``) override
        the config for this call, e.g. ``nlp.pipe(texts, component_cfg={"mulcot":
        {"generate_reasoning": True}})``."""
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs, **settings))
                yield from docs
            except Exception as e:
                error_handler(self.name, self, docs, e)

    def _settings_for(self, overrides: Dict[str, object]) -> Dict[str, object]:
        """The inference settings for one call: the config's, with ``overrides``."""
        unknown = sorted(set(overrides) - set(_CONFIG_SETTINGS))
        if unknown:
            raise TypeError(
                f"[{self.name}] unknown setting(s) {unknown}; per-call settings are {list(_CONFIG_SETTINGS)}"
            )
        settings = {key: self.cfg[key] for key in _CONFIG_SETTINGS}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if settings["reasoning_targets"] not in REASONING_TARGETS:
            raise ValueError(
                f"reasoning_targets must be one of {REASONING_TARGETS}, got {settings['reasoning_targets']!r}"
            )
        if settings["generation_decoder"] not in DECODERS:
            raise ValueError(f"generation_decoder must be one of {DECODERS}, got {settings['generation_decoder']!r}")
        if overrides.get("generate_reasoning") and not self.has_generator:
            # Asked for by this call (the config's default is on, and harmless without
            # a generator): chains that can never come are an error, not a null each.
            raise NoGeneratorError("this pipeline", self.name)
        return settings

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"]

    # ---- prediction -------------------------------------------------------

    def _check_ready(self, docs: List[Doc], predicting: bool = True) -> None:
        if not self.model.attrs.get("image_width"):
            raise ValueError(
                f"[{self.name}] The component is not initialized. Train it (`spacy train` with a "
                "mulcot config, see configs/), call `nlp.initialize()` before using it, or load a "
                "trained pipeline with `spacy.load`."
            )
        if predicting and _listens_to_transformer(self.model):
            # In training the listener gets the transformer's output from its update.
            for doc in docs:
                if not hasattr(doc._, "trf_data") or doc._.trf_data is None:
                    raise ValueError(
                        f"[{self.name}] No transformer output on the doc. `mulcot` listens to a "
                        "`transformer` component: add one before it (`nlp.add_pipe('transformer', "
                        "before='mulcot')`) or start from configs/mulcot_cpu.cfg."
                    )
        if not self._warned_no_features and self.model.attrs.get("use_image"):
            # A doc whose image mulcot_image could not load (on_error="skip") was already
            # reported there (doc._.image_error): only a missing featurizer is warned about.
            if any(d._.image is not None and d._.image_features is None and d._.image_error is None for d in docs):
                self._warned_no_features = True
                warnings.warn(
                    f"[{self.name}] Docs have an image but no image features: put `mulcot_image` "
                    f"before `{self.name}` (and, for training, list it in [training] "
                    "annotating_components). Continuing without the image."
                )

    def predict(self, docs: Iterable[Doc], **overrides) -> MulcotPrediction:
        """Aspects (given or extracted), their and the post's polarity distributions and,
        when generating, the chains; ``overrides``: per-call settings (see ``pipe``)."""
        docs = list(docs)
        settings = self._settings_for(overrides)
        n_labels = len(self.labels)
        if not docs:
            return MulcotPrediction([], [], [], numpy.zeros((0, n_labels), dtype="float32"))
        self._check_ready(docs)
        if any(len(doc) == 0 for doc in docs):
            # Empty docs carry no evidence: no aspects and uniform post sentiment.
            full = [i for i, doc in enumerate(docs) if len(doc)]
            part = self.predict([docs[i] for i in full], **overrides) if full else None
            result = MulcotPrediction(
                spans=[[] for _ in docs],
                given=[self.spans_key in doc.spans for doc in docs],
                span_probs=[numpy.zeros((0, n_labels), dtype="float32") for _ in docs],
                doc_probs=numpy.full((len(docs), n_labels), 1.0 / n_labels, dtype="float32"),
            )
            if part is not None and part.span_chains is not None:
                result.span_chains = [[] for _ in docs]
                result.doc_chains = [None] * len(docs)
            for j, i in enumerate(full):
                result.spans[i] = part.spans[j]
                result.span_probs[i] = part.span_probs[j]
                result.doc_probs[i] = part.doc_probs[j]
                if result.span_chains is not None:
                    result.span_chains[i] = part.span_chains[j]
                    result.doc_chains[i] = part.doc_chains[j]
            return result
        key = self.spans_key
        given = [key in doc.spans for doc in docs]
        spans = [[(s.start, s.end) for s in doc.spans[key]] if g else [] for doc, g in zip(docs, given)]
        if all(given):
            scores: JointScores = self.model.predict(ModelInput(docs, spans))
        else:

            def decode(i: int, tag_logits: numpy.ndarray):
                return bio.decode(log_softmax(tag_logits), outside=[t.is_space for t in docs[i]])

            spans, scores = extract_and_classify(
                self.model, docs, [s if g else None for s, g in zip(spans, given)], decode
            )
        span_probs = softmax(self.model.ops.to_numpy(scores.spans))
        per_doc, start = [], 0
        for doc_spans in spans:
            per_doc.append(span_probs[start : start + len(doc_spans)])
            start += len(doc_spans)
        doc_probs = softmax(self.model.ops.to_numpy(scores.docs))
        prediction = MulcotPrediction(spans=spans, given=given, span_probs=per_doc, doc_probs=doc_probs)
        if settings["generate_reasoning"] and self.has_generator:
            self._write_chains(docs, prediction, settings)
        return prediction

    def _write_chains(self, docs: List[Doc], prediction: MulcotPrediction, settings: Dict[str, object]) -> None:
        """Generate the chains for the batch's aspects and/or posts (one batched pass),
        each explaining the classifier's decision for its item."""
        targets = settings["reasoning_targets"]
        items: List[ReasoningItem] = []
        for i, doc_spans in enumerate(prediction.spans):
            if targets in ("aspects", "both"):
                items.extend(
                    ReasoningItem(doc=i, span=j, label=self.labels[int(prediction.span_probs[i][j].argmax())])
                    for j in range(len(doc_spans))
                )
            if targets in ("post", "both"):
                items.append(ReasoningItem(doc=i, label=self.labels[int(prediction.doc_probs[i].argmax())]))
        temperature = float(settings["generation_temperature"])
        chains = generate_reasoning(
            self.model,
            ModelInput(docs, prediction.spans, items),
            batch_size=settings["generation_batch_size"],
            dtype=settings["generation_dtype"],
            decoder=settings["generation_decoder"],
            max_new_tokens=settings["max_new_tokens"],
            greedy=temperature <= 0.0,
            temperature=max(temperature, 1e-5),
        )
        prediction.span_chains = [[None] * len(s) for s in prediction.spans]
        prediction.doc_chains = [None] * len(docs)
        for item, chain in zip(items, chains):
            if settings["guarantee_label"]:
                chain = force_prediction(chain, item.label)
            if item.is_post:
                prediction.doc_chains[item.doc] = chain
            else:
                prediction.span_chains[item.doc][item.span] = chain

    def set_annotations(self, docs: Iterable[Doc], predictions: MulcotPrediction) -> None:
        key = self.spans_key
        for i, doc in enumerate(docs):
            old = list(doc.spans[key]) if predictions.given[i] else []
            group = SpanGroup(doc, name=key, attrs={"source": "given" if predictions.given[i] else "predicted"})
            for j, (start, end) in enumerate(predictions.spans[i]):
                probs = predictions.span_probs[i][j]
                span = Span(doc, start, end, label=self.labels[int(probs.argmax())])
                if old:
                    for ext in _SPAN_EXTENSIONS:
                        value = getattr(old[j]._, ext)
                        if value is not None:
                            setattr(span._, ext, value)
                span._.sentiment_scores = {label: float(p) for label, p in zip(self.labels, probs)}
                if predictions.span_chains is not None:
                    span._.reasoning = predictions.span_chains[i][j]
                group.append(span)
            doc.spans[key] = group
            if predictions.doc_chains is not None and predictions.doc_chains[i] is not None:
                doc._.reasoning = predictions.doc_chains[i]
            doc.cats.update({label: float(p) for label, p in zip(self.labels, predictions.doc_probs[i])})

    # ---- training ---------------------------------------------------------

    def _gold(self, example: Example) -> Tuple[Optional[List[Tuple[int, int, str]]], Optional[numpy.ndarray]]:
        """Gold aspects (on the predicted doc's tokens) and the doc target distribution.

        Aspects are None when the reference has no aspect annotation. The doc target is
        the reference's cats when it has polarity cats, else the mean of its aspects'
        one-hot polarities (Twitter-2015 has no post labels), else None.
        """
        ref = example.reference
        aspects = None
        if self.spans_key in ref.spans:
            aligned = example.get_aligned_spans_y2x(list(ref.spans[self.spans_key]), allow_overlap=True)
            aspects = []
            for span in aligned:
                if span.label_ not in self.labels:
                    raise ValueError(
                        f"[{self.name}] Aspect {span.text!r} in {ref.text[:60]!r} has label {span.label_!r}; "
                        f"expected one of {self.labels}"
                    )
                aspects.append((span.start, span.end, span.label_))
        target = None
        if all(label in ref.cats for label in self.labels):
            target = numpy.array([ref.cats[label] for label in self.labels], dtype="float32")
        elif aspects:
            target = numpy.zeros((len(self.labels),), dtype="float32")
            for *_, label in aspects:
                target[self.labels.index(label)] += 1.0
        if target is not None:
            total = target.sum()
            target = target / total if total > 0 else None
        return aspects, target

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "Mulcot.update")
        if not examples:
            return losses
        docs = [eg.predicted for eg in examples]
        self._check_ready(docs, predicting=False)
        golds = [self._gold(eg) for eg in examples]
        spans = [[(s, e) for s, e, _ in (aspects or [])] for aspects, _ in golds]
        set_dropout_rate(self.model, drop)
        chains = self._chain_items(examples, golds) if self.has_generator and self.cfg["reasoning_weight"] else []
        scores, backprop = self.model.begin_update(ModelInput(docs, spans, chains))
        loss, d_scores = self._loss(examples, scores, golds)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        if chains:
            key = f"{self.name}_reasoning"
            losses[key] = losses.get(key, 0.0) + scores.reasoning_loss
        return losses

    def _reference_spans(self, example: Example, aspects) -> List[Optional[Span]]:
        """The reference span behind each gold aspect (matched by character offsets;
        None where there is none): where its chain and soft targets live, since spaCy
        keys span extension data on the reference doc."""
        ref, pred = example.reference, example.predicted
        if self.spans_key not in ref.spans:
            return [None] * len(aspects)
        by_offsets = {(s.start_char, s.end_char): s for s in ref.spans[self.spans_key]}
        return [by_offsets.get((pred[start:end].start_char, pred[start:end].end_char)) for start, end, _ in aspects]

    def _chain_items(self, examples: List[Example], golds) -> List[ReasoningItem]:
        """The reference chains to learn in this batch: each gold aspect's
        ``span._.rationale`` and the post's ``doc._.rationale`` (a random subset of at
        most ``max_reasoning_items``)."""
        targets = self.cfg["reasoning_targets"]
        items = []
        for i, (eg, (aspects, target)) in enumerate(zip(examples, golds)):
            ref = eg.reference
            if aspects and targets in ("aspects", "both"):
                for j, span in enumerate(self._reference_spans(eg, aspects)):
                    if span is not None and span._.rationale:
                        # Gold: what a label_in_prompt generator explains if the chain names no label.
                        items.append(ReasoningItem(i, j, span._.rationale, span._.chain_topk, aspects[j][2]))
            if ref._.rationale and targets in ("post", "both"):
                gold = self.labels[int(target.argmax())] if target is not None else None
                items.append(ReasoningItem(i, None, ref._.rationale, ref._.chain_topk, gold))
        limit = self.cfg["max_reasoning_items"]
        if limit and len(items) > limit:
            items = [items[k] for k in sorted(self._rng.sample(range(len(items)), limit))]
        return items

    def get_loss(self, examples: Iterable[Example], scores: JointScores) -> Tuple[float, JointScores]:
        """Weighted cross-entropy of tags, aspect polarities (on gold aspects) and post
        sentiment; ``scores`` must come from the gold aspects, as ``update`` makes them."""
        examples = list(examples)
        return self._loss(examples, scores, [self._gold(eg) for eg in examples])

    def _loss(self, examples, scores: JointScores, golds) -> Tuple[float, JointScores]:
        ops = self.model.ops
        labels = self.labels
        # Tags: mean over the tokens of docs with aspect annotation.
        n_tokens = sum(len(eg.predicted) for eg, (aspects, _) in zip(examples, golds) if aspects is not None)
        d_tags, tag_loss = [], 0.0
        for eg, (aspects, _), logits in zip(examples, golds, scores.tags):
            logits = ops.to_numpy(logits)
            if aspects is None or not len(logits):
                d_tags.append(ops.alloc2f(*logits.shape))
                continue
            target = bio.encode(len(eg.predicted), [(s, e) for s, e, _ in aspects])
            loss, grad = cross_entropy(logits, target)
            tag_loss += loss / n_tokens
            d_tags.append(ops.asarray2f(grad * (self.cfg["tag_weight"] / n_tokens)))
        # Aspect sentiment: mean over the spans.
        span_targets = numpy.array(
            [labels.index(label) for aspects, _ in golds for *_, label in (aspects or [])], dtype="int64"
        )
        span_logits = ops.to_numpy(scores.spans)
        if len(span_targets) != len(span_logits):
            raise ValueError(f"{len(span_logits)} span scores for {len(span_targets)} gold aspects")
        span_loss, d_spans = 0.0, numpy.zeros_like(span_logits)
        if len(span_targets):
            # Class-weighted mean (plain mean when all weights are 1).
            weights = numpy.asarray(self.cfg["aspect_class_weights"], dtype="float32")[span_targets]
            span_loss, d_spans = cross_entropy(span_logits, span_targets, weights)
            span_loss /= weights.sum()
            d_spans /= weights.sum()
            span_loss, d_spans = self._distill_spans(examples, golds, span_logits, span_loss, d_spans)
            d_spans *= self.cfg["aspect_weight"]
        # Post sentiment: soft-target cross-entropy over docs that have a target.
        doc_logits = ops.to_numpy(scores.docs)
        d_docs = numpy.zeros_like(doc_logits)
        doc_loss = 0.0
        rows = [i for i, (_, target) in enumerate(golds) if target is not None]
        if rows:
            doc_loss, d_rows = soft_cross_entropy(doc_logits[rows], numpy.stack([golds[i][1] for i in rows]))
            d_docs[rows] = d_rows * self.cfg["doc_weight"]
        w = self.cfg["reasoning_weight"]
        total = (
            self.cfg["tag_weight"] * tag_loss
            + self.cfg["aspect_weight"] * span_loss
            + self.cfg["doc_weight"] * doc_loss
            + w * scores.reasoning_loss
        )
        d_scores = JointScores(tags=d_tags, spans=ops.asarray2f(d_spans), docs=ops.asarray2f(d_docs), d_reasoning=w)
        return float(total), d_scores

    def _distill_spans(self, examples, golds, span_logits, hard_loss, d_hard):
        """Mix in KL to the assistant's stored aspect logits (``span._.soft_labels``):
        ``(1 − λ)·CE + λ·T²·KL``; spans without soft labels keep the hard loss only."""
        if not self.distillation.active:
            return hard_loss, d_hard
        soft = [
            span._.soft_labels if span is not None else None
            for eg, (aspects, _) in zip(examples, golds)
            if aspects
            for span in self._reference_spans(eg, aspects)
        ]
        rows = [k for k, v in enumerate(soft) if v is not None]
        if not rows:
            return hard_loss, d_hard
        teacher = numpy.asarray([soft[k] for k in rows], dtype="float32")
        return distill_rows(span_logits, rows, teacher, hard_loss, d_hard, self.distillation)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
    ) -> None:
        validate_get_examples(get_examples, "Mulcot.initialize")
        self._require_generator_loaded()
        if nlp is not None and _listens_to_transformer(self.model):
            if not any(
                getattr(p, "model", None) is not None and p.model.name == "transformer" for _, p in nlp.pipeline
            ):
                raise ValueError(
                    f"[{self.name}] `mulcot` listens to a `transformer` component but the pipeline has "
                    "none. Add one before it (`nlp.add_pipe('transformer', before='mulcot')`) or "
                    "start from configs/mulcot_cpu.cfg."
                )
        if self.cfg["balance_aspects"]:
            self.cfg["aspect_class_weights"] = self._class_weights(get_examples())
        sample = list(islice(get_examples(), 10))
        docs = [eg.predicted for eg in sample]
        if nlp is not None:
            # Upstream feature components (the image featurizer) annotate the sample so
            # the model can learn the input widths; the transformer has no output yet.
            for _, proc in nlp.pipeline:
                if proc is self:
                    break
                if not hasattr(proc, "update") and hasattr(proc, "pipe"):
                    docs = list(proc.pipe(docs))
        self.model.initialize(X=ModelInput(docs, [[] for _ in docs]) if docs else None)

    def _class_weights(self, examples: Iterable[Example]) -> List[float]:
        """(count_c / mean count)^-balance_aspects over the gold aspects, normalised to mean 1."""
        counts = numpy.ones((len(self.labels),), dtype="float64")  # add-one: no division by zero
        for eg in examples:
            if self.spans_key in eg.reference.spans:
                for span in eg.reference.spans[self.spans_key]:
                    if span.label_ in self.labels:
                        counts[self.labels.index(span.label_)] += 1
        weights = (counts / counts.mean()) ** -float(self.cfg["balance_aspects"])
        return [float(w) for w in weights / weights.mean()]

    # The input widths learned at initialize live in the model's attrs, which thinc
    # serializes with it.


def _listens_to_transformer(model: Model) -> bool:
    return any(node.name == "transformer-listener" for node in model.walk())
