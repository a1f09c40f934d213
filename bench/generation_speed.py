"""Chain generation speed of the default generator (SmolLM2-135M-Instruct) inside
``ReasoningGenerator``: batch sizes, fp32 vs bf16, side by side in one run (ratios
against the first batch size in fp32).

Greedy decoding, a fixed number of new tokens per chain (EOS ignored) so every setting
does the same work; tokens/s counts generated tokens. Median of ``--runs``.

    python bench/generation_speed.py corpus/twitter2015/sentence/test.spacy --output metrics/generation_speed.json
"""

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer
from _report import machine, write_report
from transformers import AutoModelForCausalLM, AutoTokenizer

from spacy_mulcot.hub import resolve_model_path
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.reasoning import ReasoningGenerator, build_prompt


def main(
    corpus: Path = typer.Argument(..., help=".spacy corpus (post texts and aspects)"),
    n_docs: int = typer.Option(16, help="Chains per run"),
    new_tokens: int = typer.Option(64, help="Tokens generated per chain"),
    runs: int = typer.Option(3, help="Runs per setting (median)"),
    batches: str = typer.Option("1,8,16", help="Batch sizes to compare (comma-separated; the first is the base)"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    nlp = spacy.blank("en")
    docs = [d for _, d in zip(range(n_docs), read_docbin(corpus, nlp))]
    path = resolve_model_path("SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [
        build_prompt(tokenizer, d.text, d.spans["aspects"][0].text if len(d.spans.get("aspects", [])) else None)
        for d in docs
    ]
    sizes = [int(b) for b in batches.split(",")]
    regions = torch.randn(len(docs), 49, 1280)
    has_image = torch.ones(len(docs), dtype=torch.bool)
    results = []
    gens = {}
    for dtype in ("fp32", "bf16"):
        lm = AutoModelForCausalLM.from_pretrained(
            path, torch_dtype=torch.float32 if dtype == "fp32" else torch.bfloat16
        ).eval()
        lm.generation_config.eos_token_id = None  # fixed length: same work in every setting
        gen = ReasoningGenerator(lm, tokenizer).eval()
        gen.image_proj.to(lm.dtype)
        gens[dtype] = gen
    for run in range(runs):
        for dtype, gen in gens.items():
            for batch in sizes:
                start = time.perf_counter()
                with torch.inference_mode():
                    for i in range(0, len(docs), batch):
                        prefix = gen.prefix(regions[i : i + batch].to(gen.lm.dtype), has_image[i : i + batch])
                        gen.generate(
                            prompts[i : i + batch], prefix, max_new_tokens=new_tokens, min_new_tokens=new_tokens
                        )
                seconds = time.perf_counter() - start
                results.append({"dtype": dtype, "batch": batch, "run": run, "seconds": seconds})
                typer.echo(
                    f"run {run + 1} {dtype} batch {batch}: {len(docs) * new_tokens / seconds:.1f} tokens/s", err=True
                )
    table = []
    base = None
    for dtype in gens:
        for batch in sizes:
            secs = statistics.median(r["seconds"] for r in results if r["dtype"] == dtype and r["batch"] == batch)
            row = {
                "dtype": dtype,
                "batch": batch,
                "tokens_per_s": round(len(docs) * new_tokens / secs, 1),
                "docs_per_s": round(len(docs) / secs, 2),
            }
            base = base or row["tokens_per_s"]
            row["ratio_vs_first"] = round(row["tokens_per_s"] / base, 2)
            table.append(row)
    report = {
        "n_docs": len(docs),
        "new_tokens": new_tokens,
        "runs": runs,
        "table": table,
        "machine": machine(),
        "torch": torch.__version__,
    }
    typer.echo(json.dumps(report, indent=2))
    write_report(report, output)


if __name__ == "__main__":
    typer.run(main)
