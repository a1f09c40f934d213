"""Reasoning metrics as MulCoT-RD reports them, from maintained packages where they exist.

- BLEU-4: sacrebleu's corpus BLEU (its standard 13a tokenisation).
- ROUGE-L: Google's ``rouge-score`` (F-measure, stemming on), averaged over chains.
- METEOR: NLTK's implementation with exact and Porter-stem matching. NLTK's WordNet
  synonym stage needs a corpus download, which is not possible offline, so the
  synonym module is off; scores are therefore a little lower than with WordNet.
- Cosine: all-MiniLM-L6-v2 mean-pooled embeddings of generated vs reference chain.
- Distinct-1/2: distinct n-grams / all n-grams over the generated chains.
- Label consistency: the chain's ``Prediction`` vs the classifier's label vs gold.
"""

from typing import Dict, Optional, Sequence

import numpy

from ..chains import parse_chain


class _NoWordNet:
    """Stands in for NLTK's WordNet reader: no synonyms (offline)."""

    def synsets(self, *args, **kwargs) -> list:
        return []


def bleu4(generated: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(generated), [list(references)]).score)


def rouge_l(generated: Sequence[str], references: Sequence[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, gen)["rougeL"].fmeasure for gen, ref in zip(generated, references)]
    return 100.0 * float(numpy.mean(scores)) if scores else 0.0


def meteor(generated: Sequence[str], references: Sequence[str]) -> float:
    from nltk.translate.meteor_score import meteor_score

    wordnet = _NoWordNet()
    scores = [meteor_score([ref.split()], gen.split(), wordnet=wordnet) for gen, ref in zip(generated, references)]
    return 100.0 * float(numpy.mean(scores)) if scores else 0.0


def distinct_n(generated: Sequence[str], n: int) -> float:
    grams = [
        tuple(words[i : i + n]) for text in generated for words in [text.split()] for i in range(len(words) - n + 1)
    ]
    return 100.0 * len(set(grams)) / len(grams) if grams else 0.0


def embedding_cosine(generated: Sequence[str], references: Sequence[str], encoder=None) -> float:
    from ..rationale import RationaleEncoder

    encoder = encoder or RationaleEncoder("all-MiniLM-L6-v2")
    a = encoder._embed(list(generated))
    b = encoder._embed(list(references))
    return 100.0 * float((a * b).sum(axis=1).mean()) if len(a) else 0.0


def label_consistency(
    generated: Sequence[str], classifier: Sequence[str], gold: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Shares (in %) of chains whose Prediction matches the classifier / gold; a chain
    without a readable Prediction counts as a mismatch."""
    predicted = [parse_chain(chain).prediction for chain in generated]
    out = {
        "chain_vs_classifier": 100.0 * float(numpy.mean([p == c for p, c in zip(predicted, classifier)]))
        if predicted
        else 0.0,
        "chain_unparsed": 100.0 * float(numpy.mean([p is None for p in predicted])) if predicted else 0.0,
    }
    if gold is not None:
        out["chain_vs_gold"] = (
            100.0 * float(numpy.mean([p == g for p, g in zip(predicted, gold)])) if predicted else 0.0
        )
        out["classifier_vs_gold"] = (
            100.0 * float(numpy.mean([c == g for c, g in zip(classifier, gold)])) if predicted else 0.0
        )
    return out


def reasoning_metrics(
    generated: Sequence[str],
    references: Sequence[str],
    classifier: Optional[Sequence[str]] = None,
    gold: Optional[Sequence[str]] = None,
    with_cosine: bool = True,
) -> Dict[str, float]:
    """Every metric above for aligned lists of generated and reference chains."""
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated chains but {len(references)} references")
    result: Dict[str, float] = {
        "bleu4": bleu4(generated, references),
        "rouge_l": rouge_l(generated, references),
        "meteor_no_wordnet": meteor(generated, references),
        "distinct_1": distinct_n(generated, 1),
        "distinct_2": distinct_n(generated, 2),
    }
    if with_cosine:
        result["cosine_minilm"] = embedding_cosine(generated, references)
    if classifier is not None:
        result.update(label_consistency(generated, classifier, gold))
    return result
