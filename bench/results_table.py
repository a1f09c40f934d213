"""The README's results table: our test-set figures beside the published anchors,
in the project's one table format (``spacy_mulcot.evaluation.tables``).

    python bench/results_table.py metrics/mulcot_cpu_test.json metrics/mulcot_cpu_text_only_test.json \
        metrics/mulcot_cpu_no_fusion_test.json --output metrics/results.md
"""

import json
from pathlib import Path
from typing import List, Optional

import typer

from spacy_mulcot.atomic import write_text
from spacy_mulcot.evaluation.tables import ANCHORS, CLASSIFICATION_COLUMNS, markdown_table


def main(
    results: List[Path] = typer.Argument(..., help="JSON files written by bench/mulcot_benchmark.py"),
    output: Optional[Path] = typer.Option(None, help="Write the Markdown table here too"),
):
    records = list(ANCHORS)
    for path in results:
        if not path.exists():
            typer.echo(f"skipping {path}: not found", err=True)
            continue
        records.append(json.loads(path.read_text()))
    table = markdown_table(records, CLASSIFICATION_COLUMNS)
    typer.echo(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text(output, table + "\n")


if __name__ == "__main__":
    typer.run(main)
