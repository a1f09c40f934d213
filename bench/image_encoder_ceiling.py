"""The ceiling of the image encoder alone: EfficientNet-Lite0's network on
already-normalised pixels (no decoding, no resizing), images/s for micro-batch sizes,
weight types, a TorchScript-frozen copy (oneDNN-prepacked convolutions) and input
sizes, side by side in one process, median of ``--runs``.

Why: with every post's image encoded, classification cannot run faster than this
(docs/speed.md).

    python bench/image_encoder_ceiling.py --output metrics/image_encoder_ceiling.json
"""

import json
import statistics
import time
from pathlib import Path
from typing import Optional

import torch
import typer
from _report import machine, write_report

from spacy_mulcot.encoders.efficientnet import EfficientNetLite0Encoder, FusedFeatures


def main(
    n_images: int = typer.Option(64, help="Images per run"),
    runs: int = typer.Option(3, help="Runs per setting (median)"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    torch.manual_seed(0)
    encoder = EfficientNetLite0Encoder()
    fp32 = FusedFeatures(encoder.model, torch.float32).eval().to(memory_format=torch.channels_last)
    settings = {}
    for size in (224, 160):
        pixels = torch.rand(n_images, 3, size, size).contiguous(memory_format=torch.channels_last)
        for micro in (4, 8, 16, 32):
            settings[f"bf16 (default), {size} px, micro-batch {micro}"] = (encoder.features, pixels.bfloat16(), micro)
        if size == 224:
            settings[f"fp32, {size} px, micro-batch 8"] = (fp32, pixels, 8)
            with torch.no_grad():
                for name, net, x in (("bf16", encoder.features, pixels.bfloat16()), ("fp32", fp32, pixels)):
                    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x[:8]).eval()))
                    settings[f"{name} TorchScript-frozen, {size} px, micro-batch 8"] = (frozen, x, 8)
    seconds = {name: [] for name in settings}
    with torch.no_grad():
        for net, x, micro in settings.values():
            net(x[:micro])  # warm-up
        for run in range(runs):
            for name, (net, x, micro) in settings.items():
                start = time.perf_counter()
                for i in range(0, len(x), micro):
                    net(x[i : i + micro])
                seconds[name].append(time.perf_counter() - start)
                typer.echo(f"run {run + 1} {name}: {n_images / seconds[name][-1]:.1f} images/s", err=True)
    table = [
        {"setting": name, "images_per_s": round(n_images / statistics.median(secs), 1)}
        for name, secs in seconds.items()
    ]
    report = {"n_images": n_images, "runs": runs, "table": table, "machine": machine(), "torch": torch.__version__}
    typer.echo(json.dumps(report, indent=2))
    write_report(report, output)


if __name__ == "__main__":
    typer.run(main)
