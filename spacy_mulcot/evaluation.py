"""Evaluating a trained pipeline on a ``.spacy`` corpus with images.

``spacy evaluate`` rebuilds each doc from its text (spaCy's own corpus reader), so the
image and given aspects never reach the pipeline; this reads with
``mulcot.Corpus.v1`` in both modes instead, so every metric is reported.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Union

from spacy.language import Language

from .readers.corpus import MulcotCorpus

#: Metric keys in the order tables show them.
METRICS = (
    "mulcot_masc_acc", "mulcot_masc_macro_f", "mulcot_mate_p", "mulcot_mate_r", "mulcot_mate_f",
    "mulcot_jmasa_p", "mulcot_jmasa_r", "mulcot_jmasa_f", "mulcot_msc_acc", "mulcot_msc_macro_f",
)


def evaluate_pipeline(
    nlp: Language,
    corpus: Union[str, Path],
    *,
    image_dir: Optional[Union[str, Path]] = None,
    rationales: bool = False,
    batch_size: int = 64,
) -> Dict[str, Any]:
    """All mulcot metrics (as percentages) plus the raw spaCy scores.

    rationales: let the pipeline read the corpus's teacher chains. Off by default:
        published chains were written knowing the gold label.
    """
    reader = MulcotCorpus(corpus, given_aspects="both", image_dir=image_dir, rationales=rationales)
    examples = list(reader(nlp))
    scores = nlp.evaluate(examples, batch_size=batch_size)
    percent = {k: (round(100 * scores[k], 2) if scores.get(k) is not None else None) for k in METRICS}
    n_posts = len(examples) // 2
    n_aspects = sum(len(eg.reference.spans["aspects"]) for eg in examples[::2] if "aspects" in eg.reference.spans)
    return {"scores": percent, "n_posts": n_posts, "n_gold_aspects": n_aspects, "speed_words_per_s": scores.get("speed")}
