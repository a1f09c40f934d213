"""The assistant's generator (SmolLM2-135M): chain tokens/s in training (teacher-forced
forward + backward, as ``mulcot`` trains it) and in generation, for each compute-type
setting, side by side in one process.

    python bench/generator_speed.py corpus/twitter2015/sentence/dev.spacy --settings auto,bfloat16,float32
    # an AVX2-only CPU, reproduced on an AVX-512 one (oneDNN capped, "auto" follows it):
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/generator_speed.py corpus/twitter2015/sentence/dev.spacy

Chains are the corpus's teacher chains (cut to ``--max-chain-tokens``), prompts as the
pipeline builds them; the image prefix is random (its cost is the same for every
setting). "auto" is what the configs now ship; "bfloat16" was the default before.
"""

import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit  # noqa: E402


def main(
    corpus: Path = typer.Argument(..., help="A .spacy corpus with chains (span._.rationale), e.g. Twitter-2015 dev"),
    settings: str = typer.Option("auto,bfloat16", help="Comma-separated dtype settings to compare"),
    model: str = typer.Option("SmolLM2-135M-Instruct", help="Generator LM (name or path)"),
    batch: int = typer.Option(3, help="Chains per training step (max_reasoning_items of the assistant config)"),
    steps: int = typer.Option(4, help="Training steps timed per setting and run"),
    runs: int = typer.Option(2, help="Interleaved runs per setting"),
    max_chain_tokens: int = typer.Option(400, help="Training chains cut to this many tokens"),
    gen_prompts: int = typer.Option(16, help="Prompts decoded per generation run (0: skip generation)"),
    new_tokens: int = typer.Option(48, help="Tokens generated per prompt"),
    output: Optional[Path] = typer.Option(None, help="JSON report"),
):
    import spacy
    import torch

    from spacy_mulcot.compute import cpu_label, describe_cpu, resolve_dtype
    from spacy_mulcot.doc_model import ASPECTS_KEY
    from spacy_mulcot.generation import GenerationSettings
    from spacy_mulcot.readers import read_docbin
    from spacy_mulcot.reasoning import build_prompt, reasoning_generator_v1

    warnings.simplefilter("ignore")
    nlp = spacy.blank("en")
    items = []
    for doc in read_docbin(corpus, nlp):
        for span in doc.spans.get(ASPECTS_KEY, []):
            if span._.rationale:
                items.append((doc.text, span.text, span.label_, span._.rationale))
    if len(items) < batch * steps:
        raise typer.BadParameter(f"{corpus} has {len(items)} chains; need {batch * steps}")
    torch.manual_seed(0)
    names = settings.split(",")
    gens = {name: reasoning_generator_v1(model, train_dtype=name, max_chain_tokens=max_chain_tokens) for name in names}
    first = gens[names[0]]
    prefix_width = first.lm.get_input_embeddings().embedding_dim
    prompts = [build_prompt(first.tokenizer, t, a, lab or None) for t, a, lab, _ in items]
    chains = [c for *_, c in items]
    n_tokens = [
        min(len(first.tokenizer(c, add_special_tokens=False)["input_ids"]), max_chain_tokens) + 1 for c in chains
    ]
    results = {name: {"train_s": [], "gen_s": []} for name in names}
    for run in range(runs):
        for name in names:
            gen = gens[name]
            gen.train()
            opt = torch.optim.SGD(gen.lm.parameters(), lr=0.0)  # timing only: weights stay
            start = time.perf_counter()
            for step in range(steps):
                rows = slice(step * batch, (step + 1) * batch)
                prefix = torch.randn(batch, 5, prefix_width, requires_grad=True)
                loss = gen.loss(prompts[rows], chains[rows], prefix)
                loss.backward()
                opt.zero_grad()
            results[name]["train_s"].append(time.perf_counter() - start)
            if gen_prompts:
                gen.eval()
                prefix = torch.randn(gen_prompts, 5, prefix_width)
                lm = gen.lm_for_inference(name)
                start = time.perf_counter()
                settings = GenerationSettings(chain_batch_size=gen_prompts, max_new_tokens=new_tokens)
                gen.write_chains(prompts[:gen_prompts], prefix, settings, lm=lm, min_new_tokens=new_tokens)
                results[name]["gen_s"].append(time.perf_counter() - start)
            typer.echo(f"run {run + 1} {name}: train {results[name]['train_s'][-1]:.1f} s", err=True)
    train_tokens = sum(n_tokens[: batch * steps])
    report = {
        "corpus": str(corpus),
        "cpu": describe_cpu(),
        "cpu_label": cpu_label(),
        "batch": batch,
        "steps": steps,
        "train_chain_tokens": train_tokens,
        "settings": {},
    }
    for name in names:
        resolved = resolve_dtype(name, setting="bench")
        train_s = statistics.median(results[name]["train_s"])
        row = {"resolves_to": resolved, "train_chain_tokens_per_s": round(train_tokens / train_s, 1), **results[name]}
        if gen_prompts:
            row["gen_tokens_per_s"] = round(gen_prompts * new_tokens / statistics.median(results[name]["gen_s"]), 1)
        report["settings"][name] = row
        typer.echo(
            f"{name} (→ {resolved}): training {row['train_chain_tokens_per_s']} chain tokens/s"
            + (f", generation {row['gen_tokens_per_s']} tokens/s" if gen_prompts else ""),
            err=True,
        )
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
