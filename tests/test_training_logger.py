"""``mulcot.ConsoleLogger.v1``: spaCy's training table with readable score headers."""

import io
from pathlib import Path

import spacy
from spacy.training import loggers
from spacy.util import registry

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_headers_drop_the_component_prefix_and_the_rest_is_spacys():
    config = spacy.util.load_config(CONFIGS / "mulcot_cpu.cfg")
    assert config["training"]["logger"]["@loggers"] == "mulcot.ConsoleLogger.v1"
    nlp = spacy.blank("en", config={"training": {"score_weights": {"mulcot_masc_macro_f": 0.5, "mulcot_jmasa_f": 0.5}}})
    make_logger = registry.loggers.get("mulcot.ConsoleLogger.v1")
    original = loggers.setup_table
    out = io.StringIO()
    log_step, finalize = make_logger(progress_bar=None)(nlp, stdout=out, stderr=io.StringIO())
    header = out.getvalue().splitlines()[0].split()
    assert header == ["E", "#", "MASC_MACRO_F", "JMASA_F", "SCORE"]
    assert loggers.setup_table is original  # patched only while the header is made
    log_step({"epoch": 0, "step": 10, "losses": {}, "other_scores": {"mulcot_masc_macro_f": 0.5, "mulcot_jmasa_f": 0.25},
              "score": 0.375, "checkpoints": []})  # fmt: skip
    finalize()
    assert out.getvalue().splitlines()[-1].split() == ["0", "10", "50.00", "25.00", "0.38"]
