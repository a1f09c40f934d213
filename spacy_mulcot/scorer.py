"""``mulcot.scorer.v1``: the registered scorer (the metrics live in
:mod:`spacy_mulcot.evaluation.scores`)."""

from .evaluation.scores import DEFAULT_SCORE_WEIGHTS, score_mulcot

__all__ = ["DEFAULT_SCORE_WEIGHTS", "score_mulcot", "make_mulcot_scorer", "omit_unweighted_scores_v1"]


def make_mulcot_scorer():
    return score_mulcot


def omit_unweighted_scores_v1():
    """``mulcot.OmitUnweightedScores.v1``, a ``[training] before_to_disk`` callback: the
    metrics whose score weight is null (a metric without data, such as MSC on
    Twitter) leave meta.json's ``performance`` instead of showing as 0.0 there."""

    def before_to_disk(nlp):
        weights = nlp.config["training"]["score_weights"]
        performance = nlp.meta.get("performance", {})
        for key, weight in weights.items():
            if weight is None:
                performance.pop(key, None)
        return nlp

    return before_to_disk
