"""Optional dependencies, grouped as pip extras so a plain install stays light:
``teacher`` (openai), ``lora`` (peft, now also a dependency), ``report`` (matplotlib), ``serve`` (starlette,
uvicorn, python-multipart), ``package`` (build), ``scale`` (ray); ``all`` has every one."""

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or say which extra to install for ``what``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{what} needs the {module.split('.')[0]!r} package: pip install 'spacy-mulcot[{extra}]'"
        ) from e
