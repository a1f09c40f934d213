"""Errors a user can meet outside the readers (those are in ``readers/errors.py``)."""


class NoGeneratorError(ValueError):
    """Chains were asked of a pipeline whose ``mulcot`` component has no generator."""

    def __init__(self, pipeline: str, component: str = "mulcot"):
        super().__init__(
            f"{pipeline}: its {component!r} component has no reasoning generator, so it cannot write chains. "
            "Train one with a generator (configs/assistant_cpu.cfg: `python -m spacy project run assistant`) "
            "and use that, or ask without chains (no --chains, generate_reasoning=False)."
        )
