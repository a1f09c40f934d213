"""The multi-seed runner and the results tables: a recipe trains (real `spacy train`
on handwritten posts), its record lands in results/NAME/seed-N.json, a seed with a
record is skipped, an interrupted seed resumes at its last stage, and the tables are
computed from the records (mean ± std, n)."""

import json

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_mulcot import experiments
from spacy_mulcot.results import load_results, mean_std, render, update_block

from .helpers import gold_docs


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A tiny corpus (4 posts with images), a recipe file, and a private cache."""
    monkeypatch.setenv("MULCOT_CACHE", str(tmp_path / "cache"))
    nlp = spacy.blank("en")
    corpus = tmp_path / "corpus" / "tiny"
    corpus.mkdir(parents=True)
    db = DocBin(store_user_data=True)
    for doc in gold_docs(nlp, tmp_path):
        db.add(doc)
    for split in ("train", "dev", "test"):
        db.to_disk(corpus / f"{split}.spacy")
    recipes = tmp_path / "recipes.yml"
    recipes.write_text(
        """
tiny:
  description: "the reference config, 2 steps"
  config: configs/mulcot_cpu.cfg
  dataset: tiny
  train: tiny/train.spacy
  dev: tiny/dev.spacy
  test: tiny/test.spacy
  overrides:
    training.max_steps: 2
    training.eval_frequency: 1
    training.optimizer.learn_rate.warmup_steps: 1
    training.optimizer.learn_rate.total_steps: 2
    components.mulcot.model.hidden_width: 32
    components.mulcot.model.attention_heads: 2
"""
    )
    return tmp_path, recipes


def test_runner_writes_skips_and_resumes(setup):
    tmp, recipes = setup
    kw = dict(recipes_path=recipes, corpus_dir=tmp / "corpus", results_dir=tmp / "results", log=lambda _: None)
    (record,) = experiments.run_experiment("tiny", [3], **kw)
    path = tmp / "results" / "tiny" / "seed-3.json"
    saved = json.loads(path.read_text())
    assert saved == record
    assert saved["seed"] == 3 and saved["recipe"] == "tiny"
    assert set(saved["test"]["scores"]) >= {"mulcot_masc_acc", "mulcot_mate_f", "mulcot_jmasa_f"}
    assert saved["dev"]["n_posts"] == 4 and saved["test"]["docs_per_s"] > 0
    assert saved["train"]["wall_s"] > 0 and saved["cpu"]["model"] and len(saved["commit"]) >= 7
    assert "--system.seed 3" in saved["command"] and "--training.max_steps 2" in saved["command"]
    run = tmp / "cache" / "runs" / "tiny"
    assert (next(run.iterdir()) / "seed-3" / "training" / "model-best" / "meta.json").exists()

    # a seed with a record is skipped: nothing is trained or scored again
    stamp = path.stat().st_mtime_ns
    experiments.run_experiment("tiny", [3], **kw)
    assert path.stat().st_mtime_ns == stamp

    # interrupted after training and dev scoring: resumes at test scoring, same training
    seed_dir = next(run.iterdir()) / "seed-3"
    train_json = (seed_dir / "train.json").read_text()
    model_stamp = (seed_dir / "training" / "model-best" / "meta.json").stat().st_mtime_ns
    path.unlink()
    (seed_dir / "test.json").unlink()
    (again,) = experiments.run_experiment("tiny", [3], **kw)
    assert (seed_dir / "train.json").read_text() == train_json
    assert (seed_dir / "training" / "model-best" / "meta.json").stat().st_mtime_ns == model_stamp
    assert again["test"]["scores"] == record["test"]["scores"]  # the same model scored again

    # the tables come from the records
    table = render(tmp / "results")
    assert "`tiny`" in table and "| 1 |" in table


def test_runner_refuses_bad_input(setup):
    tmp, recipes = setup
    kw = dict(recipes_path=recipes, results_dir=tmp / "results", log=lambda _: None)
    with pytest.raises(KeyError, match="known: tiny"):
        experiments.run_experiment("nope", [0], corpus_dir=tmp / "corpus", **kw)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        experiments.run_experiment("tiny", [0], corpus_dir=tmp / "elsewhere", **kw)
    bad = tmp / "bad.yml"
    bad.write_text("tiny:\n  config: configs/mulcot_cpu.cfg\n  train: a\n")
    with pytest.raises(ValueError, match="missing"):
        experiments.load_recipes(bad)
    bad.write_text("tiny:\n  config: c.cfg\n  train: a\n  dev: b\n  test: c\n  vectors: all-MiniLM-L6-v2\n")
    with pytest.raises(ValueError, match="vectors must be a mapping"):
        experiments.load_recipes(bad)


def test_a_recipe_with_vectors_makes_them_once_and_passes_them_to_training(setup, monkeypatch):
    tmp, _ = setup
    recipe = experiments.Recipe("v", "c.cfg", "d/train.spacy", "d/dev.spacy", "d/test.spacy", dataset="d",
                                vectors={"model": "org/enc", "dims": 16})  # fmt: skip
    path = recipe.vectors_path(tmp / "corpus")
    assert path == tmp / "corpus" / "vectors" / "d-org_enc-16"
    calls = []
    monkeypatch.setattr(experiments, "_run", lambda cmd, cwd, log, env=None: calls.append(cmd) or {})
    assert experiments.ensure_vectors(recipe, tmp / "corpus", log=lambda _: None) == path
    (cmd,) = calls
    assert cmd[3:] == ["static-vectors", "org/enc", str(path), "--dims", "16",
                       "--corpus", str(tmp / "corpus" / "d/train.spacy"), "--corpus", str(tmp / "corpus" / "d/dev.spacy")]  # fmt: skip
    (path / "vocab").mkdir(parents=True)
    experiments.ensure_vectors(recipe, tmp / "corpus", log=lambda _: None)
    assert len(calls) == 1  # made once
    (tmp / "c.cfg").write_text("[nlp]\n")
    plain = experiments.Recipe("v", "c.cfg", "d/train.spacy", "d/dev.spacy", "d/test.spacy", dataset="d")
    assert experiments.config_hash(plain, tmp) != experiments.config_hash(recipe, tmp)  # vectors are part of it


def _record(name, seed, masc, mate, wall):
    # percent, as `python -m spacy_mulcot benchmark` writes them
    scores = {"mulcot_masc_acc": masc, "mulcot_masc_macro_f": masc - 5, "mulcot_mate_f": mate, "mulcot_jmasa_f": 50.0}
    return {
        "name": name,
        "seed": seed,
        "commit": "abcdef1234",
        "cpu": {"model": "Test CPU", "fast_bf16": False, "avx512": False},
        "train": {"wall_s": wall, "cpu_s": 2 * wall},
        "dev": {"scores": scores},
        "test": {"scores": scores, "docs_per_s": 50.0, "params_m": 30.0},
    }


def test_tables_are_mean_and_std_over_seeds(tmp_path):
    for seed, (masc, mate) in enumerate([(70.0, 80.0), (74.0, 82.0), (72.0, 84.0)]):
        path = tmp_path / "a" / f"seed-{seed}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(_record("a", seed, masc, mate, 600.0)))
    results = load_results(tmp_path)
    assert [r["seed"] for r in results["a"]] == [0, 1, 2]
    table = render(tmp_path)
    assert "| `a` | 3 | 72.0 ± 2.0 | 67.0 ± 2.0 | 82.0 ± 2.0 | 50.0 ± 0.0 |" in table
    assert "| `a` | 3 | 10.0 ± 0.0 | 20.0 ± 0.0 | 50.0 ± 0.0 | 30 | Test CPU (AVX2) | abcdef1 |" in table
    assert mean_std([1.0]) == "1.0" and mean_std([]) == "–" and mean_std([0.01, -0.05]) == "0.0 ± 0.0"
    doc = tmp_path / "README.md"
    doc.write_text("intro\n<!-- results:twitter2015 -->\nold\n<!-- /results:twitter2015 -->\nend\n")
    assert update_block(doc, "twitter2015", table)
    assert "old" not in doc.read_text() and "72.0 ± 2.0" in doc.read_text() and doc.read_text().endswith("end\n")
    assert not update_block(doc, "twitter2015", table)  # unchanged the second time
    with pytest.raises(ValueError, match="results:other"):
        update_block(doc, "other", table)
    (tmp_path / "a" / "seed-3.json").write_text("{not json")
    with pytest.raises(ValueError, match="seed-3.json"):
        load_results(tmp_path)


def test_a_paired_comparison_is_the_mean_of_per_seed_differences(tmp_path):
    def write(name, seed, masc, mate):
        path = tmp_path / name / f"seed-{seed}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(_record(name, seed, masc, mate, 60.0)))

    # b is a over seeds 0-2 minus 1, 3, 2 points of MASC; seed 3 of a has no partner
    for seed, (masc, mate) in enumerate([(70.0, 80.0), (74.0, 82.0), (72.0, 84.0), (99.0, 99.0)]):
        write("a", seed, masc, mate)
    for seed, (masc, mate) in enumerate([(69.0, 80.0), (71.0, 83.0), (70.0, 84.0)]):
        write("b", seed, masc, mate)
    table = render(tmp_path, compare=[("a", "b")])
    assert "| `a` − `b` | 0, 1, 2 | 2.0 ± 1.0 | 2.0 ± 1.0 | −0.3 ± 0.6 | 0.0 ± 0.0 |" in table
    with pytest.raises(ValueError, match="no results named 'c'"):
        render(tmp_path, compare=[("a", "c")])
    write("c", 7, 50.0, 50.0)
    with pytest.raises(ValueError, match="share no seed"):
        render(tmp_path, compare=[("a", "c")])
    from typer.testing import CliRunner

    from spacy_mulcot.cli import app

    doc = tmp_path / "notes.md"
    doc.write_text("<!-- results:ladder -->\n<!-- /results:ladder -->\n")
    args = ["results", str(tmp_path), "--name", "a", "--name", "b", "--compare", "a:b", "--marker", "ladder"]
    out = CliRunner().invoke(app, [*args, "--update", str(doc)])
    assert out.exit_code == 0, out.output
    assert "`a` − `b`" in doc.read_text() and "`c`" not in doc.read_text()
    bad = CliRunner().invoke(app, ["results", str(tmp_path), "--compare", "a-b"])
    assert bad.exit_code != 0 and "A:B" in bad.output


def test_results_tables_are_per_dataset(tmp_path):
    import json

    from spacy_mulcot.results import render

    def record(name, dataset, scores):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        rec = {"name": name, "seed": 0, "train": {"wall_s": 60}, "test": {"scores": scores}, "dev": {"scores": scores}}
        if dataset:
            rec["dataset"] = dataset
        (folder / "seed-0.json").write_text(json.dumps(rec))

    record("old_twitter", None, {"mulcot_masc_acc": 70.0})
    record("mvsa", "mvsa-single", {"mulcot_msc_acc": 71.5, "mulcot_msc_weighted_f": 70.2})
    twitter = render(tmp_path)
    assert "`old_twitter`" in twitter and "`mvsa`" not in twitter and "MASC acc" in twitter
    mvsa = render(tmp_path, dataset="mvsa-single")
    assert "`mvsa` | 1 | 71.5 | 70.2 |" in mvsa and "old_twitter" not in mvsa
    with pytest.raises(ValueError, match="unknown dataset"):
        render(tmp_path, dataset="imdb")


def test_results_plot_is_mean_and_std_per_system(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from spacy_mulcot.cli import app
    from spacy_mulcot.results import plot_records

    for seed, masc in enumerate([70.0, 74.0, 72.0]):
        path = tmp_path / "a" / f"seed-{seed}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(_record("a", seed, masc, 80.0, 600.0)))
    small = _record("small", 0, 68.0, 70.0, 60.0)
    small["test"]["params_m"] = 1.5
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "seed-0.json").write_text(json.dumps(small))
    records = plot_records(tmp_path)
    assert [(r["name"], r["params_m"]) for r in records] == [("a (n=3)", 30.0), ("small (n=1)", 1.5)]
    assert records[0]["scores"]["mulcot_masc_acc"] == pytest.approx(72.0)
    assert records[0]["scores_std"]["mulcot_masc_acc"] == pytest.approx(2.0)
    assert records[1]["scores_std"]["mulcot_masc_acc"] == 0.0
    out = tmp_path / "plots" / "size.png"
    result = CliRunner().invoke(app, ["results", str(tmp_path), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 300
    with pytest.raises(FileNotFoundError, match="mvsa-single"):
        plot_records(tmp_path, dataset="mvsa-single")


@pytest.mark.parametrize("name", sorted(experiments.load_recipes()))
def test_every_shipped_recipe_builds_its_config(name):
    """Each recipe's config with its overrides is a valid config, its pipeline builds
    (a chain writer saved without its base is deferred: no LM is loaded here)."""
    from spacy.util import load_config, load_model_from_config

    recipe = experiments.load_recipes()[name]
    config = load_config(experiments.ROOT / recipe.config, overrides=dict(recipe.overrides), interpolate=False)
    config["paths"]["vectors"] = None  # made per dataset by the runner
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert "mulcot" in nlp.pipe_names


def test_a_worktree_of_another_commit_has_its_own_entry_points(tmp_path, monkeypatch):
    """``--code REF``: the worktree carries its own metadata, first on sys.path, so an
    entry point that moved between commits resolves to the worktree's module."""
    import configparser
    import subprocess
    import sys

    monkeypatch.setenv("MULCOT_CACHE", str(tmp_path / "cache"))
    head = subprocess.run(["git", "-C", str(experiments.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    tree = experiments.code_root("HEAD")
    (info,) = tree.glob("spacy_mulcot-*.dist-info")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(tree / "setup.cfg")
    expected = parser["options.entry_points"]["spacy_architectures"].split()
    assert all(part in (info / "entry_points.txt").read_text() for part in expected if "=" not in part)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib.metadata as m; "
        "print(m.distribution('spacy-mulcot')._path)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tree)], capture_output=True, text=True, check=True)
    assert str(tree) in out.stdout
    subprocess.run(["git", "-C", str(experiments.ROOT), "worktree", "remove", "--force", str(tree)], check=False)
