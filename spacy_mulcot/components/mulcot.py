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
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import minibatch
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from .. import bio, workers
from ..data_classes import JointScores, ModelInput
from ..doc_model import ASPECTS_KEY
from ..errors import NoGeneratorError
from ..generation import LEGACY_NAMES, GenerationSettings
from ..labels import POLARITIES
from ..losses import Distillation, log_softmax, softmax
from ..model import has_generator, net_shim, predict_joint
from ..reasoning import PendingGenerator
from ..scorer import DEFAULT_SCORE_WEIGHTS, score_mulcot
from .mulcot_loss import chain_items, class_weights, gold_of, joint_loss
from .mulcot_output import MulcotPrediction, annotate

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
        "distill_weight": 0.0,
        "distill_temperature": 2.0,
        "generation": GenerationSettings().to_config(),
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
    distill_weight: float,
    distill_temperature: float,
    generation: GenerationSettings,
    scorer: Optional[Callable],
) -> "Mulcot":
    """Joint multimodal aspect extraction and sentiment (LRSA fusion, MulCoT-RD heads).

    spans_key: the span group holding aspects (given or predicted).
    tag_weight / aspect_weight / doc_weight: weights of the three losses.
    balance_aspects: weight each aspect polarity by (frequency)^-balance_aspects in
        the aspect loss, frequencies counted at initialize (0: unweighted; 0.5: the
        square root of inverse frequency, which lifts macro-F1 on skewed data).
    reasoning_weight: ``w`` in ``L = L_cls + w · L_reasoning`` (with a generator).
    max_reasoning_items: at most this many chains per update (a random subset; 0: all):
        the LM's forward/backward dominates the step time.
    distill_weight / distill_temperature: λ and T of MulCoT-RD's distillation loss,
        ``(1 − λ)·CE(hard) + λ·T²·KL(assistant_T ‖ student_T)``, for aspects with stored
        ``span._.soft_labels`` and chains with ``span._.chain_topk`` (made by
        ``python -m spacy_mulcot soft-targets``); 0: hard labels only.
    generation: how chains are written at prediction time (the ``[components.mulcot.
        generation]`` block, :class:`~spacy_mulcot.generation.GenerationSettings`);
        each field can be overridden per call: ``nlp.pipe(texts, component_cfg=
        {"mulcot": {"generate_reasoning": True, "max_new_tokens": 96}})``.
    """
    Distillation(distill_weight, distill_temperature)  # refuses λ outside [0, 1], T <= 0
    if not isinstance(generation, GenerationSettings):
        raise TypeError(f'generation must be a "mulcot.GenerationSettings.v1" block, got {generation!r}')
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
        distill_weight=distill_weight,
        distill_temperature=distill_temperature,
        generation=generation,
        scorer=scorer,
    )


class Mulcot(TrainablePipe):
    """Joint aspect extraction, aspect sentiment and post sentiment from text, image
    and (optionally) rationale.

    ``cfg`` holds what training fixed (loss weights, labels, class weights), saved with
    the pipeline; ``generation`` holds how chains are written, from the config."""

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
        distill_weight: float = 0.0,
        distill_temperature: float = 2.0,
        generation: GenerationSettings = GenerationSettings(),
        scorer: Optional[Callable] = score_mulcot,
    ):
        workers.install()  # nlp.pipe(n_process=N): each worker gets its own torch threads
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.generation = generation
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
            "distill_weight": distill_weight,
            "distill_temperature": distill_temperature,
        }
        #: λ and T, given to the model once: its chain loss reads them from there.
        self.distillation = Distillation(float(distill_weight), float(distill_temperature))
        if "has_generator" in model.attrs:  # mulcot.JointSentimentModel.v1
            net_shim(model).set_distillation(self.distillation)
        self._warned_no_features = False
        self._rng = random.Random(0)

    # Serialization is TrainablePipe's (cfg, vocab, model): the model's shim carries
    # the generator LM's config and tokenizer in its bytes, so bytes and disk rebuild
    # the generator alike. The generation settings come from the config on load.

    def from_disk(self, path, *, exclude=tuple()):
        super().from_disk(path, exclude=exclude)
        self._drop_old_settings()
        self._require_generator_loaded()
        return self

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        super().from_bytes(bytes_data, exclude=exclude)
        self._drop_old_settings()
        self._require_generator_loaded()
        return self

    def _drop_old_settings(self) -> None:
        """A pipeline saved before the generation block kept inference settings in its
        cfg; the config's ``generation`` block is what counts now."""
        dropped = [key for key in LEGACY_NAMES if self.cfg.pop(key, None) is not None]
        if dropped:
            warnings.warn(
                f"[{self.name}] this pipeline was saved with generation settings in its cfg "
                f"({', '.join(dropped)}); they are ignored now: the config's "
                f"[components.{self.name}.generation] block holds them (save the pipeline again "
                "to drop them for good)",
                UserWarning,
                stacklevel=3,
            )

    def _require_generator_loaded(self) -> None:
        """A generator whose LM could not be found stands in until the saved pipeline's
        own copy replaces it (load) or training starts (initialize); still there after
        either, the name was wrong: say so now, not at the first chain."""
        generator = net_shim(self.model).generator if has_generator(self.model) else None
        if isinstance(generator, PendingGenerator):
            generator._fail()

    @property
    def has_generator(self) -> bool:
        return has_generator(self.model)

    def __call__(self, doc: Doc, **settings) -> Doc:
        return next(iter(self.pipe([doc], **settings)))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128, **overrides):
        """As TrainablePipe.pipe; ``overrides`` (any field of the generation settings,
        see :class:`~spacy_mulcot.generation.GenerationSettings`) apply to this call
        only, e.g. ``nlp.pipe(texts, component_cfg={"mulcot": {"generate_reasoning":
        True}})``."""
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs, **overrides))
                yield from docs
            except Exception as e:
                error_handler(self.name, self, docs, e)

    def settings_for(self, overrides: Dict[str, object]) -> GenerationSettings:
        """The generation settings for one call: the config's, with ``overrides``."""
        settings = self.generation.updated(overrides, owner=self.name)
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
        settings = self.settings_for(overrides)
        n_labels = len(self.labels)
        if not docs:
            return MulcotPrediction([], [], [], numpy.zeros((0, n_labels), dtype="float32"))
        self._check_ready(docs)
        if any(len(doc) == 0 for doc in docs):
            # Empty docs carry no evidence: no aspects and uniform post sentiment.
            full = [i for i, doc in enumerate(docs) if len(doc)]
            result = MulcotPrediction.empty_docs([self.spans_key in doc.spans for doc in docs], n_labels)
            return result.fill(full, self.predict([docs[i] for i in full], **overrides)) if full else result
        key = self.spans_key
        given = [key in doc.spans for doc in docs]
        spans = [[(s.start, s.end) for s in doc.spans[key]] if g else None for doc, g in zip(docs, given)]

        def decode(i: int, tag_logits: numpy.ndarray):
            return bio.decode(log_softmax(tag_logits), outside=[t.is_space for t in docs[i]])

        made: List[MulcotPrediction] = []

        def request_chains(found, scores: JointScores):
            # Chains explain the classifier's decisions: asked once it has run.
            made.append(self._prediction(found, given, scores))
            return made[0].chain_requests(self.labels, settings.targets)

        writing = settings.generate_reasoning and self.has_generator
        found, scores, items, chains = predict_joint(
            self.model, docs, spans, decode, request_chains if writing else None, settings
        )
        prediction = made[0] if made else self._prediction(found, given, scores)
        if writing:
            prediction.set_chains(items, chains, settings.guarantee_label)
        return prediction

    def _prediction(self, spans, given: List[bool], scores: JointScores) -> MulcotPrediction:
        span_probs = softmax(self.model.ops.to_numpy(scores.spans))
        per_doc, start = [], 0
        for doc_spans in spans:
            per_doc.append(span_probs[start : start + len(doc_spans)])
            start += len(doc_spans)
        doc_probs = softmax(self.model.ops.to_numpy(scores.docs))
        return MulcotPrediction(spans=spans, given=given, span_probs=per_doc, doc_probs=doc_probs)

    def set_annotations(self, docs: Iterable[Doc], predictions: MulcotPrediction) -> None:
        annotate(list(docs), predictions, self.labels, self.spans_key)

    # ---- training ---------------------------------------------------------

    def _gold(self, example: Example):
        return gold_of(example, self.spans_key, self.labels, owner=self.name)

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

    def _chain_items(self, examples: List[Example], golds):
        """The reference chains to learn in this batch (see ``mulcot_loss.chain_items``)."""
        return chain_items(
            examples,
            golds,
            self.spans_key,
            self.labels,
            targets=self.generation.targets,
            limit=self.cfg["max_reasoning_items"],
            rng=self._rng,
        )

    def get_loss(self, examples: Iterable[Example], scores: JointScores) -> Tuple[float, JointScores]:
        """Weighted cross-entropy of tags, aspect polarities (on gold aspects) and post
        sentiment; ``scores`` must come from the gold aspects, as ``update`` makes them."""
        examples = list(examples)
        return self._loss(examples, scores, [self._gold(eg) for eg in examples])

    def _loss(self, examples, scores: JointScores, golds) -> Tuple[float, JointScores]:
        return joint_loss(self.model.ops, examples, scores, golds, self.cfg, self.distillation)

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
            self.cfg["aspect_class_weights"] = class_weights(
                get_examples(), self.spans_key, self.labels, self.cfg["balance_aspects"]
            )
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

    # The input widths learned at initialize live in the model's attrs, which thinc
    # serializes with it.


def _listens_to_transformer(model: Model) -> bool:
    return any(node.name == "transformer-listener" for node in model.walk())
