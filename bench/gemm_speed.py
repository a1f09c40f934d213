"""thinc's matrix products on BLIS (one thread) against torch (``TorchGemmOps``), side
by side: the same trained pipeline loaded twice, docs/s of ``nlp.pipe`` from text and
image files (image caches cleared every run), runs interleaved, and whether both give
the same aspects and labels on every post.

    python bench/gemm_speed.py corpus/twitter2015/sentence/test.spacy MODEL --runs 6 \\
        --output results/bench/gemm_speed_amd.json
"""

import statistics
from pathlib import Path
from typing import Optional

import spacy
import typer
from _report import emit
from thinc.api import NumpyOps

from spacy_mulcot.compute import describe_cpu
from spacy_mulcot.evaluation.systems import throughput
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example


def main(
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy corpus (text, image paths)"),
    model: Path = typer.Argument(..., help="A trained mulcot pipeline (the fast student: a CNN tok2vec)"),
    runs: int = typer.Option(6, help="Timed runs per variant, interleaved"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
    output: Optional[Path] = typer.Option(None, help="Write the JSON record here"),
):
    variants = {}
    for name in ("blis", "torch"):
        nlp = spacy.load(model)
        if name == "blis":  # thinc's own ops, as before model/gemm.py
            for node in nlp.get_pipe("mulcot").model.layers[0].walk():
                node.ops = NumpyOps()
        variants[name] = (nlp, list(read_docbin(corpus, nlp)))
    quiet = {"mulcot": {"generate_reasoning": False}}
    for nlp, posts in variants.values():  # warm up
        throughput(nlp, posts[:128], runs=1, batch_size=batch_size, component_cfg=quiet)
    rates = {name: [] for name in variants}
    for _ in range(runs):
        for name, (nlp, posts) in variants.items():
            rates[name] += throughput(nlp, posts, runs=1, batch_size=batch_size, component_cfg=quiet)
    found = {}
    for name, (nlp, posts) in variants.items():
        fresh = [make_example(d, given_aspects=False, rationales=False).predicted for d in posts]
        docs = nlp.pipe(fresh, batch_size=batch_size, component_cfg=quiet)
        found[name] = [[(s.start, s.end, s.label_) for s in d.spans.get("aspects", [])] for d in docs]
    medians = {name: statistics.median(r) for name, r in rates.items()}
    emit(
        {
            "corpus": str(corpus),
            "model": str(model),
            "posts": len(found["blis"]),
            "runs": runs,
            "cpu": describe_cpu(),
            "docs_per_s": {name: round(m, 1) for name, m in medians.items()},
            "docs_per_s_runs": {name: [round(r, 1) for r in rs] for name, rs in rates.items()},
            "ratio_torch_to_blis": round(medians["torch"] / medians["blis"], 2),
            "same_aspects_and_labels": sum(a == b for a, b in zip(found["blis"], found["torch"])),
        },
        output,
    )


if __name__ == "__main__":
    typer.run(main)
