"""The zero-shot row of the report: a small local LM prompted like the teacher (stage 1
only, no gold), scored as the trained systems are (``evaluation.systems``)."""

import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..doc_model import ASPECTS_KEY
from ..evaluation.scores import masc_scores
from ..evaluation.systems import peak_rss_mb, reasoning_record, sample_with_chains
from ..readers.corpus import make_example, read_docbin
from .backends.hf_local import HFLocal
from .component import MulcotTeacher


def zero_shot_system(
    model: str,
    corpus: Union[str, Path],
    *,
    name: Optional[str] = None,
    sample: int = 32,
    seed: int = 0,
    max_new_tokens: int = 320,
    dtype: str = "auto",
) -> Dict[str, Any]:
    """A small local LM prompted like the teacher (stage 1 only, no gold), on
    ``sample`` random posts with given aspects: MASC from the label its chain
    predicts, and the chains' reasoning metrics. Text-only models read an
    EfficientNet description of the image, as with the teacher."""
    import spacy

    nlp = spacy.blank("en")
    gold_docs = sample_with_chains(list(read_docbin(corpus, nlp)), sample, seed)
    backend = HFLocal(model, max_new_tokens=max_new_tokens, dtype=dtype)
    teacher = MulcotTeacher(nlp.vocab, backend, two_stage=False, cache_path=None, keep_existing=False)
    teacher.progress = True
    # Given aspects without their labels or chains: the LM sees what a user gives.
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold_docs]
    start = time.perf_counter()
    teacher.annotate(inputs)
    seconds = time.perf_counter() - start
    gold_labels = [s.label_ for d in gold_docs for s in d.spans[ASPECTS_KEY]]
    predicted = [s._.rationale_label for d in inputs for s in d.spans[ASPECTS_KEY]]
    masc = masc_scores(gold_labels, predicted)
    lm_params = sum(p.numel() for p in backend.lm.parameters())
    return {
        "name": name or f"zero-shot {Path(model).name}",
        "kind": "zero-shot",
        "corpus": str(corpus),
        "n_posts": len(gold_docs),
        "n_aspects": len(gold_labels),
        "scores": {"mulcot_masc_acc": masc["mulcot_masc_acc"], "mulcot_masc_macro_f": masc["mulcot_masc_macro_f"]},
        "confusion": masc["confusion"],
        "unreadable_predictions": sum(p is None for p in predicted),
        "params": lm_params,
        "params_m": round(lm_params / 1e6, 2),
        "docs_per_s": round(len(inputs) / seconds, 3) if seconds else None,
        "reasoning_docs_per_s": round(len(inputs) / seconds, 3) if seconds else None,
        "reasoning": reasoning_record(gold_docs, inputs, lambda s: s._.rationale, lambda s: s._.rationale_label),
        "reasoning_posts": len(gold_docs),
        "peak_rss_mb": peak_rss_mb(),
    }
