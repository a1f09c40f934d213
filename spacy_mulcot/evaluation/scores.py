"""Classification scores for ``mulcot``, computed the way the MABSA literature reports them.

- MATE (aspect extraction): P/R/F1 over exact aspect spans (character offsets), on
  docs where ``mulcot`` extracted the aspects itself.
- JMASA (joint): P/R/F1 over (span, polarity) pairs on the same docs.
- MASC (aspect sentiment): accuracy and macro-F1 over the gold aspects, on docs
  whose aspects were given to the model.
- MSC (post sentiment): accuracy and macro-F1 of ``doc.cats`` on docs whose
  reference has polarity cats.

``doc.spans["aspects"].attrs["source"]`` ("given" / "predicted") tells the two kinds
of doc apart, so one evaluation corpus may hold both (``mulcot.Corpus.v1`` with
``given_aspects = "both"``). A metric without docs of its kind is None, and spaCy
leaves it out.
"""

from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy
from spacy.scorer import PRFScore
from spacy.training import Example

from ..doc_model import ASPECTS_KEY
from ..labels import POLARITIES

DEFAULT_SCORE_WEIGHTS: Dict[str, Optional[float]] = {
    "mulcot_jmasa_f": 0.3,
    "mulcot_masc_macro_f": 0.3,
    "mulcot_masc_acc": 0.2,
    "mulcot_mate_f": 0.2,
    "mulcot_mate_p": 0.0,
    "mulcot_mate_r": 0.0,
    "mulcot_jmasa_p": 0.0,
    "mulcot_jmasa_r": 0.0,
    "mulcot_msc_acc": 0.0,
    "mulcot_msc_macro_f": 0.0,
    "mulcot_msc_weighted_f": 0.0,
}

#: Metric keys in the order tables show them.
METRICS = (
    "mulcot_masc_acc",
    "mulcot_masc_macro_f",
    "mulcot_mate_p",
    "mulcot_mate_r",
    "mulcot_mate_f",
    "mulcot_jmasa_p",
    "mulcot_jmasa_r",
    "mulcot_jmasa_f",
    "mulcot_msc_acc",
    "mulcot_msc_macro_f",
    "mulcot_msc_weighted_f",
)


def _label_f1(gold: Sequence[str], pred: Sequence[str], label: str) -> float:
    tp = sum(g == label and p == label for g, p in zip(gold, pred))
    fp = sum(g != label and p == label for g, p in zip(gold, pred))
    fn = sum(g == label and p != label for g, p in zip(gold, pred))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] = POLARITIES) -> float:
    """Unweighted mean of per-label F1 (a label absent from gold and pred counts 0)."""
    return sum(_label_f1(gold, pred, label) for label in labels) / len(labels)


def weighted_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] = POLARITIES) -> float:
    """Per-label F1 weighted by the label's share of gold (scikit-learn's "weighted"):
    the F1 that MVSA papers report."""
    if not gold:
        return 0.0
    return sum(_label_f1(gold, pred, label) * sum(g == label for g in gold) for label in labels) / len(gold)


def score_mulcot(examples: Iterable[Example], spans_key: str = ASPECTS_KEY, **kwargs: Any) -> Dict[str, Any]:
    """All mulcot metrics for a set of examples (see the module docstring)."""
    mate, jmasa = PRFScore(), PRFScore()
    per_label = {label: PRFScore() for label in POLARITIES}
    masc_gold: List[str] = []
    masc_pred: List[str] = []
    msc_gold: List[str] = []
    msc_pred: List[str] = []
    n_extracted = 0
    for eg in examples:
        ref, pred = eg.reference, eg.predicted
        if all(label in ref.cats for label in POLARITIES) and all(label in pred.cats for label in POLARITIES):
            msc_gold.append(max(POLARITIES, key=lambda l: ref.cats[l]))
            msc_pred.append(max(POLARITIES, key=lambda l: pred.cats[l]))
        if spans_key not in ref.spans or spans_key not in pred.spans:
            continue
        gold = {(s.start_char, s.end_char): s.label_ for s in ref.spans[spans_key]}
        guess = {(s.start_char, s.end_char): s.label_ for s in pred.spans[spans_key]}
        if pred.spans[spans_key].attrs.get("source") == "given":
            for offsets, label in gold.items():
                masc_gold.append(label)
                masc_pred.append(guess.get(offsets, ""))
            continue
        n_extracted += 1
        mate.score_set(set(guess), set(gold))
        jmasa.score_set(set(guess.items()), set(gold.items()))
        for label, prf in per_label.items():
            prf.score_set({k for k, v in guess.items() if v == label}, {k for k, v in gold.items() if v == label})
    scores: Dict[str, Any] = {}
    for name, prf in (("mate", mate), ("jmasa", jmasa)):
        for part in ("p", "r", "f"):
            value = {"p": prf.precision, "r": prf.recall, "f": prf.fscore}[part]
            scores[f"mulcot_{name}_{part}"] = value if n_extracted else None
    scores["mulcot_jmasa_per_type"] = {k: v.to_dict() for k, v in per_label.items()} if n_extracted else None
    if masc_gold:
        scores["mulcot_masc_acc"] = sum(g == p for g, p in zip(masc_gold, masc_pred)) / len(masc_gold)
        scores["mulcot_masc_macro_f"] = macro_f1(masc_gold, masc_pred)
    else:
        scores["mulcot_masc_acc"] = scores["mulcot_masc_macro_f"] = None
    if msc_gold:
        scores["mulcot_msc_acc"] = sum(g == p for g, p in zip(msc_gold, msc_pred)) / len(msc_gold)
        scores["mulcot_msc_macro_f"] = macro_f1(msc_gold, msc_pred)
        scores["mulcot_msc_weighted_f"] = weighted_f1(msc_gold, msc_pred)
    else:
        scores["mulcot_msc_acc"] = scores["mulcot_msc_macro_f"] = scores["mulcot_msc_weighted_f"] = None
    # spaCy's own names, so `spacy evaluate MODEL DATA --spans-key aspects` shows them:
    # the joint (span + polarity) figures as the span scores, per polarity as per type.
    if n_extracted:
        for part in ("p", "r", "f"):
            scores[f"spans_{spans_key}_{part}"] = scores[f"mulcot_jmasa_{part}"]
        scores[f"spans_{spans_key}_per_type"] = scores["mulcot_jmasa_per_type"]
    return scores


def masc_scores(gold: Sequence[str], predicted: Sequence[Optional[str]]) -> Dict[str, Any]:
    """Accuracy and macro-F1 (%) over POS/NEU/NEG, and the confusion matrix (rows gold,
    columns predicted; an unreadable prediction (None) counts as wrong and has no column)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    index = {label: i for i, label in enumerate(POLARITIES)}
    confusion = numpy.zeros((len(POLARITIES), len(POLARITIES)), dtype=int)
    for g, p in zip(gold, predicted):
        if p in index:
            confusion[index[g], index[p]] += 1
    return {
        "mulcot_masc_acc": round(100.0 * sum(g == p for g, p in zip(gold, predicted)) / len(gold), 2) if gold else None,
        "mulcot_masc_macro_f": round(100.0 * macro_f1(gold, predicted), 2) if gold else None,
        "confusion": confusion.tolist(),
    }
