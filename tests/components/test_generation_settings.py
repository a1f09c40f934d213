"""The generation settings: declared once (a dataclass), the config block's keys are
its fields, overridden per call by the same names, refused in words when wrong."""

import dataclasses
import re

import pytest
import spacy

from spacy_mulcot.generation import DECODERS, TARGETS, GenerationSettings, names

SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "width": 32,
    "depth": 1,
    "embed_size": 500,
    "window_size": 1,
    "maxout_pieces": 2,
    "subword_features": True,
    "pretrained_vectors": None,
}


def _nlp(**generation):
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image")
    model = {"use_rationale": False, "rationale_encoder": None, "tok2vec": SMALL_TOK2VEC}
    nlp.add_pipe("mulcot", config={"model": model, "generation": generation})
    return nlp


def test_the_config_block_is_the_settings_object_field_for_field():
    default = dict(spacy.blank("en").get_factory_meta("mulcot").default_config["generation"])  # a copy
    assert default.pop("@misc") == "mulcot.GenerationSettings.v1"
    assert tuple(default) == names() == tuple(f.name for f in dataclasses.fields(GenerationSettings))
    assert default == dataclasses.asdict(GenerationSettings())  # each default written once, here


def test_config_values_reach_the_component_and_cfg_keeps_trained_state_only():
    nlp = _nlp(max_new_tokens=12, targets="aspects")
    pipe = nlp.get_pipe("mulcot")
    assert pipe.generation == GenerationSettings(max_new_tokens=12, targets="aspects")
    assert not set(names()) & set(pipe.cfg)
    assert nlp.config["components"]["mulcot"]["generation"]["max_new_tokens"] == 12


def test_per_call_overrides_use_the_same_names_and_leave_the_config_alone():
    pipe = _nlp().get_pipe("mulcot")
    call = pipe.settings_for({"max_new_tokens": 7, "temperature": 0.5, "dtype": None})
    assert (call.max_new_tokens, call.temperature, call.greedy) == (7, 0.5, False)
    assert call.dtype == "auto"  # None means "as configured"
    assert pipe.generation == GenerationSettings()
    with pytest.raises(TypeError, match="unknown generation setting.*generation_batch_size.*chain_batch_size"):
        pipe.settings_for({"generation_batch_size": 4})


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"targets": "sentences"}, re.escape(f"targets must be one of {TARGETS}")),
        ({"decoder": "fast"}, re.escape(f"decoder must be one of {DECODERS}")),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"max_new_tokens": 0}, "must be >= 1"),
        ({"chain_batch_size": 0}, "must be >= 1"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
    ],
)
def test_bad_values_are_refused_when_the_pipeline_is_built_and_per_call(bad, message):
    with pytest.raises(ValueError, match=message):
        _nlp(**bad)
    with pytest.raises(ValueError, match=message):
        _nlp().get_pipe("mulcot").settings_for(bad)


def test_an_unknown_key_in_the_block_is_a_config_error():
    from thinc.api import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="max_tokens"):
        _nlp(max_tokens=10)


def test_a_pipeline_saved_with_settings_in_its_cfg_loads_with_a_warning(tmp_path):
    import srsly

    nlp = _nlp()
    nlp.initialize()
    nlp.to_disk(tmp_path / "model")
    cfg_path = tmp_path / "model" / "mulcot" / "cfg"
    cfg = srsly.read_json(cfg_path)
    srsly.write_json(cfg_path, {**cfg, "max_new_tokens": 256, "generation_decoder": "generate"})
    with pytest.warns(UserWarning, match="max_new_tokens, generation_decoder.*generation] block"):
        loaded = spacy.load(tmp_path / "model")
    pipe = loaded.get_pipe("mulcot")
    assert "max_new_tokens" not in pipe.cfg and pipe.generation == GenerationSettings()
