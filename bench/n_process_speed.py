"""``nlp.pipe(docs, n_process=N)`` against one process, side by side: docs/s and
whether the aspects and labels are the same.

    python bench/n_process_speed.py training/mulcot_cpu/model-best corpus/twitter2015/sentence/test.spacy
"""

import time
from pathlib import Path

import spacy
import typer

from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder"),
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy corpus"),
    n: int = typer.Option(256, help="Posts"),
    processes: int = typer.Option(2, help="n_process to compare with 1"),
    batch_size: int = typer.Option(32, help="nlp.pipe batch size"),
):
    nlp = spacy.load(model)
    posts = list(read_docbin(corpus, nlp))[:n]
    quiet = {"mulcot": {"generate_reasoning": False}}

    def fresh():
        return [make_example(d, given_aspects=False, rationales=False).predicted for d in posts]

    list(nlp.pipe(fresh()[:batch_size], component_cfg=quiet))  # warm-up
    results = {}
    for n_process in (1, processes):
        start = time.perf_counter()
        out = list(nlp.pipe(fresh(), n_process=n_process, batch_size=batch_size, component_cfg=quiet))
        rate = len(out) / (time.perf_counter() - start)
        results[n_process] = [[(a.text, a.label_) for a in d.spans["aspects"]] for d in out]
        with_features = sum(d._.image_features is not None for d in out)
        typer.echo(f"{n_process} process(es): {rate:.1f} docs/s, {with_features}/{len(out)} with image features")
    typer.echo(f"same aspects and labels: {results[1] == results[processes]}")


if __name__ == "__main__":
    typer.run(main)
