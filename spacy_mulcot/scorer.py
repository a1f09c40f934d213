"""``mulcot.scorer.v1``: the registered scorer (the metrics live in
:mod:`spacy_mulcot.evaluation.scores`)."""

from .evaluation.scores import DEFAULT_SCORE_WEIGHTS, score_mulcot

__all__ = ["DEFAULT_SCORE_WEIGHTS", "score_mulcot", "make_mulcot_scorer"]


def make_mulcot_scorer():
    return score_mulcot
