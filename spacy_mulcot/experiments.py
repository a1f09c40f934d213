"""The multi-seed runner: train a named recipe once per seed, score it on dev and
test, and keep what outlives the run.

Per seed, in stages, each ending in a file, so an interrupted seed resumes at the
first stage without one (an interrupted *training* restarts that seed's training):

1. ``train``: ``python -m spacy train CONFIG`` with the recipe's overrides and
   ``--system.seed N`` into ``$MULCOT_CACHE/runs/RECIPE/KEY/seed-N/model-*``; wall and
   CPU seconds in ``train.json``;
2. ``dev`` / ``test``: ``python -m spacy_mulcot benchmark`` on the best checkpoint
   (all scores, docs/s, parameters, peak memory);
3. ``results/RECIPE/seed-N.json``: the small record that is committed (scores, speed,
   train time, commit, CPU, config hash, command). A seed whose record exists is skipped.

KEY is a hash of the config text, the overrides and the code's commit: a changed
config or code trains anew. ``--code REF`` trains another commit's code (a git worktree
in the cache, imported first on ``PYTHONPATH``) with the same environment: the way to
measure a change side by side with ``main`` as it was.
"""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import srsly

from .atomic import write_json
from .cache import cache_dir
from .compute import describe_cpu

#: The project's root (recipes, configs, results/ live here in a checkout).
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = ROOT / "configs" / "recipes.yml"
DEFAULT_RESULTS = ROOT / "results"


@dataclass
class Recipe:
    name: str
    config: str
    train: str
    dev: str
    test: str
    dataset: str = "twitter2015"
    description: str = ""
    overrides: Dict[str, Any] = field(default_factory=dict)
    #: Static vectors to distil and pass as paths.vectors: {"model": encoder, "dims": n}
    vectors: Optional[Dict[str, Any]] = None
    #: With a generator: posts whose chains are written and scored per split (0: all of
    #: them, hundreds of chains: hours on 2 cores)
    reasoning_sample: int = 32

    @property
    def vectors_dims(self) -> int:
        """The static vectors' width (64 unless the recipe says)."""
        return int((self.vectors or {}).get("dims", 64))

    def vectors_path(self, corpus_dir: Path) -> Optional[Path]:
        """Where the recipe's static vectors live (made from its train and dev corpora)."""
        if not self.vectors:
            return None
        model = str(self.vectors["model"]).replace("/", "_")
        return corpus_dir / "vectors" / f"{self.dataset}-{model}-{self.vectors_dims}"


def load_recipes(path: Path = DEFAULT_RECIPES) -> Dict[str, Recipe]:
    """The recipes of a YAML file (see ``configs/recipes.yml``), checked for their keys."""
    data = srsly.read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping of recipe names to recipes")
    recipes = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: recipe {name!r} is not a mapping")
        unknown = set(spec) - set(Recipe.__dataclass_fields__)
        missing = {"config", "train", "dev", "test"} - set(spec)
        if unknown or missing:
            raise ValueError(f"{path}: recipe {name!r}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        vectors = spec.get("vectors")
        if vectors is not None and (not isinstance(vectors, dict) or "model" not in vectors):
            raise ValueError(f"{path}: recipe {name!r}: vectors must be a mapping with 'model' (and 'dims')")
        recipes[name] = Recipe(name=name, **{**spec, "overrides": dict(spec.get("overrides") or {})})
    return recipes


def git_commit(root: Path) -> str:
    """The checkout's commit (with ``-dirty`` when tracked files differ), or "unknown"."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD"], capture_output=True).returncode
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def code_root(ref: Optional[str]) -> Path:
    """This checkout (ref None), or a worktree of ``ref`` in the cache (made once)."""
    if not ref:
        return ROOT
    commit = _git(ROOT, "rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = cache_dir() / "worktrees" / commit[:12]
    if not (tree / "spacy_mulcot").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), commit],
            capture_output=True,
            text=True,
            check=True,
        )
    _shadow_metadata(tree, commit)
    return tree


def _shadow_metadata(tree: Path, commit: str) -> None:
    """Give the worktree its own package metadata (``entry_points.txt`` from its
    ``setup.cfg``). Registries resolve names through entry points *before* what
    modules register, and ``importlib.metadata`` keeps the first distribution of a name
    on ``sys.path``: with the worktree first, an entry point that moved between the two
    commits resolves to the worktree's function, not to this checkout's."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(tree / "setup.cfg", encoding="utf-8")
    info = tree / f"spacy_mulcot-0+{commit[:12]}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: spacy-mulcot\nVersion: 0+{commit[:12]}\n", encoding="utf-8"
    )
    groups = parser["options.entry_points"] if parser.has_section("options.entry_points") else {}
    lines = []
    for group, body in groups.items():
        lines.append(f"[{group}]")
        lines += [line.strip() for line in body.strip().splitlines() if line.strip()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


#: Runs a module with a code root first on sys.path, ahead of the working directory
#: (``python -m`` puts the working directory first, which would import this checkout's
#: package instead of the worktree's; the working directory must stay, since corpora
#: store image paths relative to it).
_LAUNCH = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); module = sys.argv[2]; "
    "sys.argv = [module] + sys.argv[3:]; runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def module_cmd(code: Path, module: str, *args: str) -> List[str]:
    """``python -m MODULE ARGS`` importing from ``code`` first."""
    return [sys.executable, "-c", _LAUNCH, str(code), module, *args]


def config_hash(recipe: Recipe, code: Path) -> str:
    """The producing config's hash (text + overrides), recorded with every result."""
    text = (code / recipe.config).read_text(encoding="utf-8")
    spec = [text, recipe.overrides] + ([recipe.vectors] if recipe.vectors else [])
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def run_key(recipe: Recipe, code: Path, commit: str) -> str:
    """What the trained models depend on: the config's hash and the code's commit."""
    return hashlib.sha256(f"{config_hash(recipe, code)} {commit}".encode()).hexdigest()[:12]


def _override_args(overrides: Dict[str, Any]) -> List[str]:
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args


def ensure_corpora(recipe: Recipe, corpus_dir: Path, data_dir: Optional[Path], log=print) -> None:
    """Convert the recipe's dataset from ``data_dir`` when its corpora are missing."""
    paths = [corpus_dir / p for p in (recipe.train, recipe.dev, recipe.test)]
    if all(p.exists() for p in paths):
        return
    if data_dir is None or not (data_dir / recipe.dataset).exists():
        missing = [str(p) for p in paths if not p.exists()]
        raise FileNotFoundError(
            f"recipe {recipe.name!r} needs {missing}; give --data-dir with {recipe.dataset}/ to convert it"
        )
    source, target = data_dir / recipe.dataset, corpus_dir / recipe.dataset
    log(f"converting {source} → {target}")
    convert = [sys.executable, "-m", "spacy_mulcot", "convert"]
    if recipe.dataset.startswith("mvsa"):
        # MVSA: a JSON list per split; without an image folder, text only.
        for split in ("train", "dev", "test"):
            _run(convert + ["mvsa", str(source / f"{split}.json"), str(target / f"{split}.spacy")], ROOT, None)
    else:
        if not (target / "sentence" / "dev.spacy").exists():
            _run(convert + ["twitter", str(source), str(target)], ROOT, None)
        if any(p.parent == target / "joint" and not p.exists() for p in paths):
            # The joint split (as project.yml's `split`): 70% of dev, whose posts carry the
            # teacher chains, joins train; 30% of dev is held out to pick checkpoints.
            log(f"splitting {target / 'sentence' / 'dev.spacy'} → {target / 'joint'}")
            split = [sys.executable, "-m", "spacy_mulcot", "split", str(target / "sentence" / "dev.spacy")]
            split += [str(target / "joint"), "--add", str(target / "sentence" / "train.spacy")]
            _run(split + ["--holdout", "0.3", "--seed", "0"], ROOT, None)


def ensure_vectors(recipe: Recipe, corpus_dir: Path, log=print) -> Optional[Path]:
    """Distil the recipe's static vectors (``static-vectors``) when they are missing."""
    path = recipe.vectors_path(corpus_dir)
    if path is None or (path / "vocab").exists():
        return path
    log(f"distilling static vectors from {recipe.vectors['model']} → {path}")
    cmd = [sys.executable, "-m", "spacy_mulcot", "static-vectors", str(recipe.vectors["model"]), str(path)]
    cmd += ["--dims", str(recipe.vectors_dims)]
    for corpus in (recipe.train, recipe.dev):
        cmd += ["--corpus", str(corpus_dir / corpus)]
    _run(cmd, ROOT, None)
    return path


def _run(cmd: List[str], cwd: Path, log_path: Optional[Path], env: Optional[dict] = None) -> Dict[str, float]:
    """Run ``cmd``; its output to ``log_path``; wall and CPU seconds (the child's own)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    if log_path is None:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
    else:
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        output = log_path.read_text(encoding="utf-8", errors="replace")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        where = f" (log: {log_path})" if log_path else ""
        raise RuntimeError(f"command failed with exit {proc.returncode}{where}: {' '.join(cmd)}\n{output[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def _write_atomic(path: Path, data: dict) -> None:
    write_json(path, data)


def _compact(record: dict) -> dict:
    """What a results file keeps of a benchmark record (no confusion details or paths)."""
    keys = ("scores", "n_posts", "n_aspects", "params_m", "docs_per_s", "peak_rss_mb")
    return {k: record[k] for k in keys if k in record}


def run_seed(
    recipe: Recipe,
    seed: int,
    *,
    name: str,
    corpus_dir: Path,
    results_dir: Path,
    code: Path,
    commit: str,
    log=print,
) -> Dict[str, Any]:
    """One seed, resumed from its last finished stage; returns the results record."""
    out = results_dir / name / f"seed-{seed}.json"
    run = cache_dir() / "runs" / name / run_key(recipe, code, commit) / f"seed-{seed}"
    run.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if code != ROOT:  # the worktree's package for every process these start
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    train_args = [
        "train",
        str(code / recipe.config),
        "--output",
        str(run / "training"),
        "--paths.train",
        str((corpus_dir / recipe.train).resolve()),
        "--paths.dev",
        str((corpus_dir / recipe.dev).resolve()),
        "--system.seed",
        str(seed),
        *_override_args(recipe.overrides),
    ]
    vectors = recipe.vectors_path(corpus_dir)
    if vectors is not None:
        train_args += ["--paths.vectors", str(vectors.resolve())]
    train_json = run / "train.json"
    if not train_json.exists():
        shutil.rmtree(run / "training", ignore_errors=True)  # an interrupted training starts over
        log(f"[{name} seed {seed}] training ({run / 'train.log'})")
        timing = _run(module_cmd(code, "spacy", *train_args), Path.cwd(), run / "train.log", env)
        _write_atomic(train_json, timing)
    timing = json.loads(train_json.read_text())
    model = run / "training" / "model-best"
    scores = {}
    for split in ("dev", "test"):
        path = run / f"{split}.json"
        if not path.exists():
            log(f"[{name} seed {seed}] scoring {split}")
            args = ["benchmark", str(model), str((corpus_dir / getattr(recipe, split)).resolve())]
            args += [
                "--name",
                f"{name}-{seed}",
                "--reasoning-sample",
                str(recipe.reasoning_sample),
                "--output",
                str(path),
            ]
            _run(module_cmd(code, "spacy_mulcot", *args), Path.cwd(), run / f"{split}.log", env)
        scores[split] = _compact(json.loads(path.read_text()))
    record = {
        "recipe": recipe.name,
        "name": name,
        "dataset": recipe.dataset,
        "seed": seed,
        "description": recipe.description,
        "config": recipe.config,
        "config_hash": config_hash(recipe, code),
        "overrides": recipe.overrides,
        "vectors": recipe.vectors,
        "commit": commit,
        "cpu": describe_cpu(),
        "train": timing,
        "dev": scores["dev"],
        "test": scores["test"],
        "command": " ".join(["python", "-m", "spacy", *train_args]).replace(str(code) + "/", ""),
        "cache": str(run),
    }
    _write_atomic(out, record)
    log(f"[{name} seed {seed}] → {out}")
    return record


def run_experiment(
    recipe_name: str,
    seeds: Iterable[int],
    *,
    recipes_path: Path = DEFAULT_RECIPES,
    corpus_dir: Path = Path("corpus"),
    data_dir: Optional[Path] = None,
    results_dir: Path = DEFAULT_RESULTS,
    code_ref: Optional[str] = None,
    name: Optional[str] = None,
    force: bool = False,
    log=print,
) -> List[Dict[str, Any]]:
    """Run ``recipe_name`` for every seed without a results file (all with ``force``)."""
    recipes = load_recipes(recipes_path)
    if recipe_name not in recipes:
        raise KeyError(f"no recipe {recipe_name!r} in {recipes_path}; known: {', '.join(sorted(recipes))}")
    recipe = recipes[recipe_name]
    code = code_root(code_ref)
    commit = git_commit(code)
    name = name or (recipe.name if not code_ref else f"{recipe.name}@{commit[:7]}")
    if not (code / recipe.config).exists():
        raise FileNotFoundError(f"{code / recipe.config} does not exist (recipe {recipe.name!r})")
    ensure_corpora(recipe, corpus_dir, data_dir, log=log)
    ensure_vectors(recipe, corpus_dir, log=log)
    records = []
    for seed in seeds:
        out = results_dir / name / f"seed-{seed}.json"
        if out.exists() and not force:
            log(f"[{name} seed {seed}] done before: {out}")
            records.append(json.loads(out.read_text()))
            continue
        if force:
            run = cache_dir() / "runs" / name / run_key(recipe, code, commit) / f"seed-{seed}"
            shutil.rmtree(run, ignore_errors=True)
        records.append(
            run_seed(
                recipe,
                seed,
                name=name,
                corpus_dir=corpus_dir,
                results_dir=results_dir,
                code=code,
                commit=commit,
                log=log,
            )
        )
    return records
