"""Loading a pipeline without importing every spaCy plugin installed beside it.

``spacy.load`` builds a ``Language``, whose ``__init__`` imports the module of every
``spacy_factories`` entry point in the environment, whether the pipeline uses it or
not: with spacy-transformers installed, a pipeline without a transformer still pays
for importing transformers (~2.5 s of a ~3 s load on 2 cores). :func:`load_pipeline`
loads a saved pipeline folder importing only the plugins whose factories its config
names (registered names then resolve by entry point, one at a time, as usual).
"""

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Union


def pipeline_factories(path: Union[str, Path]) -> set:
    """The factory names a saved pipeline's ``config.cfg`` uses."""
    from thinc.api import Config

    config = Config().from_disk(Path(path) / "config.cfg", interpolate=False)
    components = config.get("components", {})
    return {str(block["factory"]) for block in components.values() if isinstance(block, dict) and "factory" in block}


@contextmanager
def only_factories(names: Iterable[str]) -> Iterator[None]:
    """Inside, ``Language`` imports the entry points of ``names`` only (a name that is
    no entry point is spaCy's own). Where spaCy has no such registry (another spaCy
    version), nothing changes."""
    import spacy

    registry = getattr(spacy.util.registry, "_entry_point_factories", None)
    if registry is None or not hasattr(registry, "get_entry_point"):
        yield
        return
    wanted = sorted(set(names))

    def get_all() -> dict:
        found = {name: registry.get_entry_point(name) for name in wanted}
        return {name: func for name, func in found.items() if func is not None}

    registry.get_all = get_all  # shadows the class's method on this one registry
    try:
        yield
    finally:
        del registry.get_all


def load_pipeline(model: Union[str, Path], **kwargs: Any):
    """``spacy.load(model, **kwargs)``; for a pipeline folder, importing only the plugins
    its components need. An installed package name goes to ``spacy.load`` as is."""
    import spacy

    path = Path(model)
    if not (path / "config.cfg").is_file():
        return spacy.load(model, **kwargs)
    with only_factories(pipeline_factories(path)):
        return spacy.load(path, **kwargs)
