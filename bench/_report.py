"""What every benchmark script records about the run and how it writes its JSON."""

import json
import platform
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from spacy_mulcot.atomic import write_json


def machine() -> str:
    """The CPU and the torch threads the figures were measured with."""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def write_report(report: Dict[str, Any], output: Optional[Path]) -> None:
    """Write ``report`` as indented JSON to ``output`` (if given), making its folder."""
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, report)


def emit(report: Dict[str, Any], output: Optional[Path]) -> None:
    """Add the machine and torch version to ``report``, print it as JSON and write it."""
    report.update(machine=machine(), torch=torch.__version__)
    print(json.dumps(report, indent=2))
    write_report(report, output)
