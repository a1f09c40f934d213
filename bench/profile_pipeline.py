"""Where a doc's time goes in a trained ``mulcot`` pipeline: a table of stages.

Each stage is timed *exclusively* (a stage called inside another is not counted
twice): spaCy's tokenizer, wordpiece tokenization and alignment, the transformer's
forward pass, reading + decoding images, resizing + normalising them, the image
encoder, the ``mulcot`` input assembly (hashed features, padding, image keys), its
network (fusion + heads), BIO decoding and setting annotations; "other" is the rest
of the wall time (spaCy's and our Python loops, conversions). Aspects are extracted
(nothing given), images encoded, the image cache off. Decoding runs inline by default
so that its time is attributed (``--decode-threads 2`` shows the overlapped run).

    python bench/profile_pipeline.py training/mulcot_cpu/model-best \\
        corpus/twitter2015/sentence/test.spacy --output metrics/profile.json
"""

import time
from collections import defaultdict
from functools import wraps
from pathlib import Path
from typing import Dict, List, Optional

import spacy
import torch
import typer
from _report import machine

import spacy_mulcot.bio as bio
import spacy_mulcot.model.architectures as architectures
from spacy_mulcot.atomic import write_json
from spacy_mulcot.components.mulcot import Mulcot
from spacy_mulcot.images import ImageRef
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.readers.corpus import make_example


class StageTimer:
    """Exclusive wall time per stage: entering a stage pauses the one it runs in."""

    def __init__(self):
        self.seconds: Dict[str, float] = defaultdict(float)
        self.stack: List[List] = []  # [stage, started]

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stack:
            parent = self.stack[-1]
            self.seconds[parent[0]] += now - parent[1]
        self.stack.append([stage, now])

    def exit(self) -> None:
        now = time.perf_counter()
        stage, started = self.stack.pop()
        self.seconds[stage] += now - started
        if self.stack:
            self.stack[-1][1] = now

    def wrap_property(self, owner, attr: str, stage: str) -> None:
        getter = getattr(owner, attr).fget
        box = type("Box", (), {"get": staticmethod(getter)})
        self.wrap(box, "get", stage)
        setattr(owner, attr, property(lambda obj: box.get(obj)))

    def wrap(self, owner, attr: str, stage: str) -> None:
        original = getattr(owner, attr)

        @wraps(original)
        def timed(*args, **kwargs):
            self.enter(stage)
            try:
                return original(*args, **kwargs)
            finally:
                self.exit()

        setattr(owner, attr, timed)


def instrument(nlp, timer: StageTimer) -> None:
    if "transformer" in nlp.pipe_names:  # the fast student has none: its CNN runs in "mulcot inputs"
        import spacy_transformers.layers.transformer_model as trf

        timer.wrap(trf, "huggingface_tokenize", "wordpiece tokenization")
        timer.wrap(trf, "get_alignment_via_offset_mapping", "wordpiece alignment")
        hf = nlp.get_pipe("transformer").model.layers[0].shims[0]._model
        hf.register_forward_pre_hook(lambda *_: timer.enter("transformer forward"))
        hf.register_forward_hook(lambda *_: timer.exit())
    # load_keyed reads + decodes (the current code); older code read in .key, decoded in .load
    if hasattr(ImageRef, "load_keyed"):
        timer.wrap(ImageRef, "load_keyed", "image read + decode")
    else:
        timer.wrap(ImageRef, "load", "image read + decode")
        timer.wrap_property(ImageRef, "key", "image read + decode")  # it read and hashed the file
    encoder = nlp.get_pipe("mulcot_image").encoder
    if hasattr(encoder, "prepare"):  # resizing moved out of preprocess (into the decode threads)
        timer.wrap(encoder, "prepare", "image resize + normalise")
    timer.wrap(encoder, "preprocess", "image resize + normalise")
    timer.wrap(encoder, "forward", "image encoder")
    timer.wrap(architectures, "_net_inputs", "mulcot inputs (features, padding, image keys)")
    net = architectures.net_shim(nlp.get_pipe("mulcot").model).net
    timer.wrap(net, "classify", "mulcot network (fusion + heads)")
    timer.wrap(bio, "decode", "BIO decoding")
    timer.wrap(Mulcot, "set_annotations", "mulcot set_annotations")


def main(
    model: Path = typer.Argument(..., help="Trained pipeline folder"),
    corpus: Path = typer.Argument(..., help="Sentence-view .spacy corpus"),
    n: int = typer.Option(512, help="Posts to profile"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
    decode_threads: int = typer.Option(0, help="mulcot_image decode threads (0: inline, attributable)"),
    image_dir: Optional[Path] = typer.Option(None, help="Re-root image paths"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the table"),
):
    overrides = {"components": {"mulcot_image": {"decode_threads": decode_threads}}} if decode_threads else {}
    nlp = spacy.load(model, config=overrides)
    posts = list(read_docbin(corpus, nlp))[:n]
    image = nlp.get_pipe("mulcot_image")

    def fresh():
        image.clear_cache()
        return [make_example(d, given_aspects=False, image_dir=image_dir, rationales=False).predicted for d in posts]

    quiet = {"mulcot": {"generate_reasoning": False}}
    for _ in nlp.pipe(fresh()[:batch_size], batch_size=batch_size, component_cfg=quiet):  # warm-up
        pass
    timer = StageTimer()
    start = time.perf_counter()
    list(nlp.tokenizer.pipe(d.text for d in posts))
    timer.seconds["spaCy tokenizer"] = time.perf_counter() - start
    instrument(nlp, timer)
    docs = fresh()
    start = time.perf_counter()
    for _ in nlp.pipe(docs, batch_size=batch_size, component_cfg=quiet):
        pass
    wall = time.perf_counter() - start
    seconds = dict(timer.seconds)
    seconds["other (spaCy + Python loops)"] = wall - sum(v for k, v in seconds.items() if k != "spaCy tokenizer")
    total = wall + seconds["spaCy tokenizer"]
    rows = [
        {
            "stage": k,
            "seconds": round(v, 3),
            "ms/doc": round(1000 * v / len(posts), 3),
            "share %": round(100 * v / total, 1),
        }
        for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])
    ]
    result = {
        "model": str(model),
        "n_posts": len(posts),
        "batch_size": batch_size,
        "decode_threads": decode_threads,
        "docs_per_s": round(len(posts) / total, 1),
        "stages": rows,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
    }
    columns = ["stage", "seconds", "ms/doc", "share %"]
    typer.echo("| " + " | ".join(columns) + " |\n|---|---:|---:|---:|")
    for row in rows:
        typer.echo("| " + " | ".join(str(row[c]) for c in columns) + " |")
    typer.echo(f"\n{len(posts)} posts, {result['docs_per_s']} docs/s (tokenizer included)")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, result)


if __name__ == "__main__":
    typer.run(main)
