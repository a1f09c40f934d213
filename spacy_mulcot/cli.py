"""Command line: ``python -m spacy_mulcot convert ...`` and friends (typer).

The app and its callback live here; each command group lives in ``commands/`` (a thin
typer layer over the library) and is registered below, every command wrapped so that a
user's error ends in one line (``--debug`` for the traceback)."""

import typer

from .commands import corpus, distill, evaluate, experiments, predict, teach
from .commands.common import STATE, user_errors

app = typer.Typer(help="spacy-mulcot: multimodal aspect sentiment with reasoning, for spaCy.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert datasets to .spacy files (DocBin with user data).", no_args_is_help=True)
app.add_typer(convert_app, name="convert")


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (also: MULCOT_DEBUG=1)", is_eager=True
    ),
) -> None:
    """spacy-mulcot: multimodal aspect sentiment with reasoning, for spaCy."""
    STATE["debug"] = debug  # set on every invocation (the process may run several)


for _name, _func in corpus.CONVERT_COMMANDS.items():
    convert_app.command(_name)(user_errors(_func))
for _module in (corpus, teach, distill, evaluate, predict, experiments):
    for _name, _func in _module.COMMANDS.items():
        app.command(_name)(user_errors(_func))


if __name__ == "__main__":  # pragma: no cover - after every command is registered
    app(prog_name="python -m spacy_mulcot.cli")
