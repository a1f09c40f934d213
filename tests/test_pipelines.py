"""Loading a pipeline folder imports only the plugins its components use."""

import subprocess
import sys

import spacy

from spacy_mulcot.pipelines import load_pipeline, only_factories, pipeline_factories
from spacy_mulcot.shipped import model_path

from .helpers import build_nlp


def test_the_shipped_model_loads_without_importing_transformers():
    code = (
        "import sys\n"
        "from spacy_mulcot.pipelines import load_pipeline\n"
        "from spacy_mulcot.shipped import model_path\n"
        "from spacy_mulcot import make_doc\n"
        "nlp = load_pipeline(model_path())\n"
        "doc = nlp(make_doc(nlp, 'Obama meets Merkel in Berlin'))\n"
        "print(len(doc.spans['aspects']), 'transformers' in sys.modules, 'spacy_transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n_aspects, transformers, spacy_transformers = out.stdout.split()
    assert int(n_aspects) > 0 and transformers == spacy_transformers == "False"


def test_a_folder_loads_the_same_pipeline_as_spacy_load_and_the_registry_is_restored(tmp_path):
    nlp = build_nlp()
    nlp.initialize()
    nlp.to_disk(tmp_path / "model")
    assert pipeline_factories(tmp_path / "model") == {"transformer", "mulcot_image", "mulcot"}
    registry = spacy.util.registry._entry_point_factories
    lean = load_pipeline(tmp_path / "model")
    assert "get_all" not in vars(registry)  # the class's method again
    assert lean.pipe_names == spacy.load(tmp_path / "model").pipe_names
    with only_factories(["mulcot"]):
        assert set(registry.get_all()) == {"mulcot"}
    assert "get_all" not in vars(registry)
    assert load_pipeline(model_path()).pipe_names == ["mulcot_image", "mulcot"]
