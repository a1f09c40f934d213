"""``mulcot.ConsoleLogger.v1``: spaCy's console logger with readable score columns.

spaCy's table cuts every header to 13 characters, so ``mulcot_masc_macro_f`` and
``mulcot_jmasa_f`` both print as ``MULCOT_MAS...``/``MULCOT_JMA...``. This logger drops
the component prefix from the headers (``MASC_MACRO_F``, ``JMASA_F``, ``MATE_P``);
scores, their order, the progress bar and the JSONL file are spaCy's own."""

import sys
from pathlib import Path
from typing import IO, Optional, Union

from spacy.training import loggers


def console_logger_v1(
    progress_bar: Optional[str] = "eval",
    console_output: bool = True,
    output_file: Optional[Union[str, Path]] = None,
    prefix: str = "mulcot_",
):
    """spaCy's ``ConsoleLogger.v3`` (same settings) with ``prefix`` cut from the score headers."""
    base = loggers.console_logger_v3(progress_bar=progress_bar, console_output=console_output, output_file=output_file)

    def setup_printer(nlp, stdout: IO = sys.stdout, stderr: IO = sys.stderr):
        original = loggers.setup_table

        def short_table(*, cols, widths, max_width: int = 13):
            cols = [c[len(prefix) :] if prefix and c.startswith(prefix) else c for c in cols]
            return original(cols=cols, widths=widths, max_width=max_width)

        loggers.setup_table = short_table  # only while the header is made
        try:
            return base(nlp, stdout, stderr)
        finally:
            loggers.setup_table = original

    return setup_printer
