"""Reasoning quality and generation speed of a trained ``mulcot`` pipeline with a generator.

Quality: on a random sample of test posts (given aspects, as in MASC), each aspect's
generated chain is compared with the teacher's chain (``span._.rationale`` of the
reference): BLEU-4, ROUGE-L, METEOR (no WordNet, offline), MiniLM cosine, Distinct-1/2
of the generated chains, and label consistency (chain Prediction vs classifier vs gold),
without and with the label guarantee (``force_prediction``, what ``guarantee_label``
does to each chain).

Speed: the ``mulcot`` component alone on pre-featurised docs (transformer and image
done once), chains of a fixed length (EOS ignored, so every setting does the same
work), one-by-one vs batched, fp32 vs bf16; median of ``--runs``, side by side.

    python bench/reasoning_benchmark.py training/reasoning/model-best \\
        corpus/twitter2015/sentence/test.spacy --sample 120 --output metrics/reasoning_test.json
"""

import random
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import typer
from _report import machine, write_report
from tqdm import tqdm

from spacy_mulcot.chains import parse_chain
from spacy_mulcot.evaluation.reasoning import label_consistency, reasoning_metrics
from spacy_mulcot.model import generator_of
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example
from spacy_mulcot.reasoning import force_prediction


def main(
    model: Path = typer.Argument(..., help="Trained pipeline with a generator"),
    corpus: Path = typer.Argument(..., help="Test .spacy corpus with teacher chains on the aspects"),
    sample: int = typer.Option(120, help="Random posts for the quality metrics (0: all)"),
    seed: int = typer.Option(0, help="Sampling seed"),
    max_new_tokens: int = typer.Option(320, help="Chain length limit for the quality run"),
    speed_docs: int = typer.Option(8, help="Posts for the speed comparison"),
    speed_tokens: int = typer.Option(64, help="Tokens per chain in the speed comparison"),
    runs: int = typer.Option(3, help="Runs per speed setting (median); 0 skips the speed part"),
    quality: bool = typer.Option(True, help="Run the quality part (off: speed only)"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    nlp = spacy.load(model)
    pipe = nlp.get_pipe("mulcot")
    generator = generator_of(pipe.model)
    if generator is None:
        raise typer.BadParameter(f"{model} has no reasoning generator")
    gold = [d for d in read_docbin(corpus, nlp) if len(d.spans.get("aspects", []))]
    if sample and sample < len(gold):
        gold = random.Random(seed).sample(gold, sample)
    inputs = [make_example(d, given_aspects=True, rationales=False).predicted for d in gold]

    report = {"model": str(model), "corpus": str(corpus), "machine": machine(), "sample_seed": seed}
    if quality:
        report["quality"] = _quality(nlp, gold, inputs, max_new_tokens)
    if runs:
        report["speed"] = _speed(nlp, pipe, generator, inputs[:speed_docs], speed_tokens, runs)
    write_report(report, output)


def _quality(nlp, gold, inputs, max_new_tokens):
    settings = {"generate_reasoning": True, "targets": "aspects", "max_new_tokens": max_new_tokens}
    start = time.perf_counter()
    docs = list(
        tqdm(
            nlp.pipe(inputs, batch_size=32, component_cfg={"mulcot": settings}),
            total=len(inputs),
            desc="chains",
            unit="post",
        )
    )
    seconds = time.perf_counter() - start
    generated, references, classifier, labels, has_image, examples = [], [], [], [], [], []
    for doc, ref in zip(docs, gold):
        for span, ref_span in zip(doc.spans["aspects"], ref.spans["aspects"]):
            if not ref_span._.rationale:
                continue
            generated.append(span._.reasoning or "")
            references.append(ref_span._.rationale)
            classifier.append(span.label_)
            labels.append(ref_span.label_)
            has_image.append(doc._.image_features is not None)
            if len(examples) < 5:
                examples.append(
                    {
                        "text": doc.text,
                        "aspect": span.text,
                        "gold": ref_span.label_,
                        "classifier": span.label_,
                        "chain": span._.reasoning,
                        "teacher": ref_span._.rationale,
                    }
                )
    metrics = reasoning_metrics(generated, references, classifier, labels)
    guaranteed = [force_prediction(c, l) for c, l in zip(generated, classifier)]
    metrics["with_guarantee"] = label_consistency(guaranteed, classifier, labels)
    parsed = [parse_chain(c) for c in generated]
    metrics["complete_sections"] = 100.0 * sum(p.complete for p in parsed) / max(1, len(parsed))
    with_image = [p for p, h in zip(parsed, has_image) if h]
    metrics["image_analysis_when_image"] = (
        100.0 * sum(bool(p.sections.get("Image_analysis")) for p in with_image) / max(1, len(with_image))
    )
    quality = {
        "posts": len(gold),
        "aspects": len(generated),
        "seconds": seconds,
        "aspects_per_second": len(generated) / seconds,
        "metrics": metrics,
        "examples": examples,
        "chains": [{"chain": c, "classifier": k, "gold": g} for c, k, g in zip(generated, classifier, labels)],
    }
    typer.echo({k: (round(v, 2) if isinstance(v, float) else v) for k, v in metrics.items()}, err=True)
    return quality


def _speed(nlp, pipe, generator, inputs, speed_tokens, runs):
    """The mulcot component alone, fixed-length chains, one-by-one vs batched, fp32 vs bf16."""
    pre = list(nlp.pipe(inputs, disable=["mulcot"]))
    n_items = sum(len(d.spans["aspects"]) for d in pre)
    eos = generator.lm.generation_config.eos_token_id
    generator.lm.generation_config.eos_token_id = None
    rows = []
    try:
        for run in range(runs):
            for dtype in (None, "bfloat16"):
                for batch in (1, 16):
                    settings = {
                        "generate_reasoning": True,
                        "targets": "aspects",
                        "max_new_tokens": speed_tokens,
                        "dtype": dtype or "float32",
                        "chain_batch_size": batch,
                    }
                    start = time.perf_counter()
                    list(pipe.pipe([d.copy() for d in pre], batch_size=len(pre), **settings))
                    secs = time.perf_counter() - start
                    rows.append({"dtype": dtype or "float32", "batch": batch, "run": run, "seconds": secs})
                    typer.echo(
                        f"run {run + 1} {dtype or 'float32'} batch {batch}: {n_items * speed_tokens / secs:.1f} tokens/s",
                        err=True,
                    )
    finally:
        generator.lm.generation_config.eos_token_id = eos
    speed = []
    for dtype in ("float32", "bfloat16"):
        for batch in (1, 16):
            secs = statistics.median(r["seconds"] for r in rows if r["dtype"] == dtype and r["batch"] == batch)
            speed.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "median_seconds": secs,
                    "tokens_per_s": n_items * speed_tokens / secs,
                    "docs_per_s": len(pre) / secs,
                }
            )
    base = next(s for s in speed if s["dtype"] == "float32" and s["batch"] == 1)["median_seconds"]
    for s in speed:
        s["speedup_vs_fp32_one_by_one"] = base / s["median_seconds"]
    for s in speed:
        typer.echo(
            f"{s['dtype']:>8} batch {s['batch']:>2}: {s['tokens_per_s']:.1f} tok/s, {s['docs_per_s']:.2f} docs/s, x{s['speedup_vs_fp32_one_by_one']:.1f}"
        )
    return {
        "posts": len(pre),
        "chains": n_items,
        "tokens_per_chain": speed_tokens,
        "runs": runs,
        "settings": speed,
        "raw": rows,
    }


if __name__ == "__main__":
    typer.run(main)
