"""Chain generation speed of the default generator (SmolLM2-135M-Instruct) inside
``ReasoningGenerator.write_chains`` (what ``mulcot`` calls for a batch's chains):
decoders, batch sizes and dtypes side by side in one run, ratios against the first.

A setting is ``DECODER:BATCH`` — ``generate`` (transformers' ``generate`` on
sub-batches of similar prompt length: the code before the continuous-batching
decoder), ``auto`` (the project's decoder, ``BATCH`` rows decoding side by side) or
``base`` (the ``FastDecoder`` of another ``decoding.py``, ``--base-decoder``: an
earlier commit's, measured side by side with this one).
Real pipeline prompts (post text and aspect, 4 image prefix tokens + the condition
token), greedy decoding, a fixed number of new tokens per chain (stops suppressed
until then) so every setting does the same work; tokens/s counts generated tokens
and includes the prompts' prefill. ``--stop-at-eos``: chains end where the LM ends
them (lengths vary, as in use; what continuous batching is for). Median of
``--runs``, settings interleaved.

    python bench/generation_speed.py corpus/twitter2015/sentence/test.spacy --output metrics/generation_speed.json
    git show 24ad84b:spacy_mulcot/reasoning/decoding.py > /tmp/decoding_24ad84b.py
    python bench/generation_speed.py ... --settings base:64,auto:64 --base-decoder /tmp/decoding_24ad84b.py
"""

import importlib.util
import statistics
import time
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer
from _report import emit
from transformers import AutoModelForCausalLM, AutoTokenizer

from spacy_mulcot.generation import GenerationSettings
from spacy_mulcot.hub import resolve_model_path
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.reasoning import ReasoningGenerator, build_prompt


def main(
    corpus: Path = typer.Argument(..., help=".spacy corpus (post texts and aspects)"),
    n_docs: int = typer.Option(64, help="Chains per run"),
    new_tokens: int = typer.Option(256, help="Tokens generated per chain (teacher chains: median 266)"),
    runs: int = typer.Option(3, help="Runs per setting (median)"),
    settings: str = typer.Option(
        "generate:16,generate:64,auto:16,auto:64", help="DECODER:BATCH settings, comma-separated; the first is the base"
    ),
    dtypes: str = typer.Option("bfloat16", help="LM dtypes (comma-separated: bfloat16, float32)"),
    stop_at_eos: bool = typer.Option(
        False, help="Chains end at EOS (lengths vary, as in use: tokens/s counts the chains' tokens)"
    ),
    base_decoder: Optional[Path] = typer.Option(None, help="decoding.py whose FastDecoder the `base` setting runs"),
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
    grid = [(decoder, int(batch)) for decoder, batch in (s.split(":") for s in settings.split(","))]
    torch.manual_seed(0)
    regions = torch.randn(len(docs), 49, 1280)
    condition = torch.randn(len(docs), 256)
    has_image = torch.ones(len(docs), dtype=torch.bool)
    lm = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    gen = ReasoningGenerator(lm, tokenizer, condition_width=256).eval()
    with torch.inference_mode():
        prefix = gen.prefix(regions, has_image, condition)
    copies = {dtype: gen.lm_for_inference(dtype) for dtype in dtypes.split(",")}
    bases = {}
    if any(decoder == "base" for decoder, _ in grid):
        if base_decoder is None:
            raise typer.BadParameter("the `base` setting needs --base-decoder")
        spec = importlib.util.spec_from_file_location("base_decoding", base_decoder)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        bases = {dtype: module.FastDecoder(copy) for dtype, copy in copies.items()}
    own = gen.decoder_for

    def run_setting(copy, dtype, decoder, batch):
        # `base`: write_chains' own path with the other FastDecoder in place of this one.
        gen.decoder_for = (lambda lm: bases[dtype]) if decoder == "base" else own
        settings = GenerationSettings(
            chain_batch_size=batch, decoder="generate" if decoder == "generate" else "auto", max_new_tokens=new_tokens
        )
        return gen.write_chains(prompts, prefix, settings, lm=copy, min_new_tokens=None if stop_at_eos else new_tokens)

    def count(chains):
        return sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in chains)  # + the stop

    results, outputs = [], {}
    for run in range(runs):
        for dtype, copy in copies.items():
            for decoder, batch in grid:
                start = time.perf_counter()
                chains = run_setting(copy, dtype, decoder, batch)
                seconds = time.perf_counter() - start
                outputs[(dtype, decoder, batch)] = chains
                tokens = count(chains) if stop_at_eos else len(docs) * new_tokens
                results.append(
                    {
                        "dtype": dtype,
                        "decoder": decoder,
                        "batch": batch,
                        "run": run,
                        "seconds": seconds,
                        "tokens": tokens,
                    }
                )
                typer.echo(f"run {run + 1} {dtype} {decoder}:{batch}: {tokens / seconds:.1f} tokens/s", err=True)
    table, base = [], None
    for dtype in copies:
        reference = outputs[(dtype, *grid[0])]
        for decoder, batch in grid:
            mine = [r for r in results if (r["dtype"], r["decoder"], r["batch"]) == (dtype, decoder, batch)]
            rate = statistics.median(r["tokens"] / r["seconds"] for r in mine)
            chains = outputs[(dtype, decoder, batch)]
            row = {
                "dtype": dtype,
                "decoder": decoder,
                "batch": batch,
                "tokens_per_s": round(rate, 1),
                "seconds": round(statistics.median(r["seconds"] for r in mine), 2),
                "tokens": mine[-1]["tokens"],
                # bf16 rounding differs between decoders and batch shapes: how many chains match the base's.
                "chains_equal_to_base": sum(a == b for a, b in zip(chains, reference)),
            }
            base = base or row["tokens_per_s"]
            row["ratio_vs_first"] = round(row["tokens_per_s"] / base, 2)
            table.append(row)
    report = {
        "n_docs": len(docs),
        "new_tokens": new_tokens,
        "stop_at_eos": stop_at_eos,
        "runs": runs,
        "table": table,
    }
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
