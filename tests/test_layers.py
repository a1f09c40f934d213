"""The import graph runs one way: a module may import its own layer and the layers
below it, never one above (function-level imports included). The layers are the
ones docs/architecture.md draws; a new top-level module must be placed here."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "spacy_mulcot"

#: Bottom to top.
LAYERS = [
    # 0: plain data and helpers
    {"about", "labels", "errors", "generation", "atomic", "cache", "compute", "extras", "data_classes", "bio",
     "chains", "images", "doc_model", "losses", "workers", "hub", "pipelines"},
    # 1: pure torch modules, image encoders, the chain writer
    {"layers", "encoders", "reasoning", "rationale"},
    # 2: the thinc boundary; reading data into docs
    {"model", "readers"},
    # 3: pipeline components and scoring
    {"components", "scorer", "evaluation", "static_vectors", "training_logger"},
    # 4: workflows built on components
    {"teacher", "distill", "predict", "render", "report", "results", "experiments", "serve", "engines", "shipped"},
    # 5: entry points
    {"registry", "commands", "cli", "__init__", "__main__"},
]  # fmt: skip
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    """(line, imported top-level part) for every project import in ``path``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts if path.name == "__init__.py" else parts[:-1]
    if path.name == "__init__.py":
        package = package[:-1] if package[-1] == "__init__" else package
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            names = [node.module] if node.module else [a.name for a in node.names]
            for name in names:
                yield node.lineno, _top(".".join(base + name.split(".")))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spacy_mulcot."):
            yield node.lineno, _top(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("spacy_mulcot."):
                    yield node.lineno, _top(alias.name)


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_top_level_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in FILES}
    assert not tops - set(RANK), f"place these in LAYERS: {sorted(tops - set(RANK))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path):
    own = _top("spacy_mulcot." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = [(line, target) for line, target in _imports(path) if RANK[target] > RANK[own]]
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}, layer {RANK[own]}) imports upward: {upward}"
