"""The README's results table: our test-set figures beside the published anchors.

    python bench/results_table.py metrics/mulcot_cpu_test.json metrics/mulcot_cpu_text_only_test.json \
        metrics/mulcot_cpu_no_fusion_test.json --output metrics/results.md
"""
import json
from pathlib import Path
from typing import List, Optional

import typer

#: Published Twitter-2015 test figures (MASC acc / macro-F1, MATE F1, JMASA F1).
ANCHORS = [
    ("TomBERT (Yu & Jiang 2019), published", 77.2, 71.8, None, None),
    ("text-only BART (Ling et al. 2022), published", None, None, None, 63.9),
    ("VLP-MABSA (Ling et al. 2022), published", 78.6, 73.8, 85.7, 66.6),
]


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


def main(
    results: List[Path] = typer.Argument(..., help="JSON files written by bench/mulcot_benchmark.py"),
    output: Optional[Path] = typer.Option(None, help="Write the Markdown table here too"),
):
    lines = [
        "| system | MASC acc | MASC macro-F1 | MATE F1 | JMASA P | JMASA R | JMASA F1 | docs/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, acc, f1, mate, jmasa in ANCHORS:
        lines.append(f"| {name} | {_fmt(acc)} | {_fmt(f1)} | {_fmt(mate)} | – | – | {_fmt(jmasa)} | – | – |")
    for path in results:
        if not path.exists():
            typer.echo(f"skipping {path}: not found", err=True)
            continue
        r = json.loads(path.read_text())
        s = r["scores"]
        lines.append(
            f"| {r['name']} | {_fmt(s['mulcot_masc_acc'])} | {_fmt(s['mulcot_masc_macro_f'])} | {_fmt(s['mulcot_mate_f'])} "
            f"| {_fmt(s['mulcot_jmasa_p'])} | {_fmt(s['mulcot_jmasa_r'])} | {_fmt(s['mulcot_jmasa_f'])} "
            f"| {r['docs_per_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    table = "\n".join(lines)
    typer.echo(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table + "\n")


if __name__ == "__main__":
    typer.run(main)
