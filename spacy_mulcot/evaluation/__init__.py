"""Evaluation, in one place: classification scores (the registered scorer's),
chain metrics, whole-system records and the one results table format.

- :mod:`.scores` — MATE / MASC / JMASA / MSC as the literature reports them;
- :mod:`.reasoning` — BLEU-4, ROUGE-L, METEOR, cosine, distinct-n, label consistency;
- :mod:`.systems` — a pipeline's or a zero-shot LM's record on a corpus, throughput;
- :mod:`.tables` — the Markdown results table (report, bench/, README).
"""

from .scores import DEFAULT_SCORE_WEIGHTS, METRICS, macro_f1, masc_scores, score_mulcot

__all__ = ["DEFAULT_SCORE_WEIGHTS", "METRICS", "macro_f1", "masc_scores", "score_mulcot"]
