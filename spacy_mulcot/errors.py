"""Errors a user can meet outside the readers (those are in ``readers/errors.py``), and
the one ``on_error`` vocabulary every reader, component and command uses."""

#: What to do with bad input, everywhere: "raise" stops with an error that names it;
#: "skip" leaves it out (counted and reported).
ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str, owner: str = "") -> None:
    """A ``ValueError`` unless ``on_error`` is one of :data:`ON_ERROR`."""
    if on_error not in ON_ERROR:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}on_error must be one of {ON_ERROR}, got {on_error!r}")


class NoGeneratorError(ValueError):
    """Chains were asked of a pipeline whose ``mulcot`` component has no generator."""

    def __init__(self, pipeline: str, component: str = "mulcot"):
        super().__init__(
            f"{pipeline}: its {component!r} component has no reasoning generator, so it cannot write chains. "
            "Train one with a generator (configs/assistant_cpu.cfg: `python -m spacy project run assistant`) "
            "and use that, or ask without chains (no --chains, generate_reasoning=False)."
        )
