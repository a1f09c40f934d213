"""``results/`` → markdown tables (mean ± std over seeds, n): the only source of the
figures README and docs/ quote, so none of them is typed by hand.

``python -m spacy_mulcot results`` prints the tables; ``--update FILE`` rewrites the
block between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in FILE.
"""

import json
import re
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .atomic import write_text

#: (column, split, key in the benchmark record's scores (percent), scale), per dataset
COLUMNS: Sequence[Tuple[str, str, str, float]] = (
    ("MASC acc", "test", "mulcot_masc_acc", 1.0),
    ("MASC macro-F1", "test", "mulcot_masc_macro_f", 1.0),
    ("MATE F1", "test", "mulcot_mate_f", 1.0),
    ("JMASA F1", "test", "mulcot_jmasa_f", 1.0),
    ("dev MASC acc", "dev", "mulcot_masc_acc", 1.0),
    ("dev MASC macro-F1", "dev", "mulcot_masc_macro_f", 1.0),
    ("dev MATE F1", "dev", "mulcot_mate_f", 1.0),
    ("dev JMASA F1", "dev", "mulcot_jmasa_f", 1.0),
)
MSC_COLUMNS: Sequence[Tuple[str, str, str, float]] = (
    ("acc", "test", "mulcot_msc_acc", 1.0),
    ("weighted-F1", "test", "mulcot_msc_weighted_f", 1.0),
    ("macro-F1", "test", "mulcot_msc_macro_f", 1.0),
    ("dev acc", "dev", "mulcot_msc_acc", 1.0),
    ("dev weighted-F1", "dev", "mulcot_msc_weighted_f", 1.0),
)
DATASETS = {
    "twitter2015": ("Twitter-2015 (aspects)", COLUMNS),
    "mvsa-single": ("MVSA-Single (post sentiment, text only)", MSC_COLUMNS),
}


def load_results(results_dir: Path) -> Dict[str, List[dict]]:
    """Every ``results/NAME/seed-N.json``, by NAME, sorted by seed."""
    out: Dict[str, List[dict]] = {}
    for path in sorted(Path(results_dir).glob("*/seed-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        out.setdefault(path.parent.name, []).append(record)
    for records in out.values():
        records.sort(key=lambda r: r.get("seed", 0))
    return out


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """ "m ± s" (sample std; "m" alone for one value)."""
    if not values:
        return "–"
    m = statistics.fmean(values)
    m = 0.0 if round(m, digits) == 0 else m  # no "-0.0"
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _score(record: dict, split: str, key: str) -> Optional[float]:
    value = (record.get(split) or {}).get("scores", {}).get(key)
    return float(value) if value is not None else None


def scores_table(
    results: Dict[str, List[dict]], names: Optional[Sequence[str]] = None, columns: Sequence[tuple] = COLUMNS
) -> str:
    """Scores per recipe: test and dev metrics, mean ± std over seeds."""
    names = list(names) if names else sorted(results)
    header = ["system", "n"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: |" + " ---: |" * len(columns)]
    for name in names:
        records = results.get(name, [])
        cells = [f"`{name}`", str(len(records))]
        for _, split, key, scale in columns:
            values = [v * scale for v in (_score(r, split, key) for r in records) if v is not None]
            cells.append(mean_std(values))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(results: Dict[str, List[dict]], first: str, second: str, columns: Sequence[tuple] = COLUMNS) -> str:
    """``first`` minus ``second``, seed by seed (the seeds both have), mean ± std of the
    differences: what a claim that one recipe beats another rests on, since the two
    share each seed's initialisation and data order."""
    for name in (first, second):
        if name not in results:
            raise ValueError(f"no results named {name!r} to compare (have: {', '.join(sorted(results))})")
    by_seed = [{r.get("seed"): r for r in results[name]} for name in (first, second)]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]), key=lambda s: (s is None, s))
    if not seeds:
        raise ValueError(f"{first!r} and {second!r} share no seed: nothing to pair")
    header = ["difference", "seeds"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * len(columns)]
    cells = [f"`{first}` − `{second}`", ", ".join(str(s) for s in seeds)]
    for _, split, key, scale in columns:
        diffs = []
        for seed in seeds:
            a, b = _score(by_seed[0][seed], split, key), _score(by_seed[1][seed], split, key)
            if a is not None and b is not None:
                diffs.append((a - b) * scale)
        cells.append(mean_std(diffs).replace("-", "−") if diffs else "–")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(results: Dict[str, List[dict]], names: Optional[Sequence[str]] = None) -> str:
    """Training time, docs/s and size per recipe, with the CPU and commits they came from."""
    names = list(names) if names else sorted(results)
    lines = [
        "| system | n | train min (wall) | train CPU-min | test docs/s | params (M) | CPU | commits |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name in names:
        records = results.get(name, [])
        wall = [r["train"]["wall_s"] / 60 for r in records if r.get("train")]
        cpu = [r["train"]["cpu_s"] / 60 for r in records if r.get("train", {}).get("cpu_s") is not None]
        docs = [r["test"]["docs_per_s"] for r in records if (r.get("test") or {}).get("docs_per_s")]
        params = sorted({(r.get("test") or {}).get("params_m") for r in records} - {None})
        cpus = sorted({_cpu_short(r.get("cpu") or {}) for r in records})
        commits = sorted({str(r.get("commit", "?"))[:7] for r in records})
        lines.append(
            f"| `{name}` | {len(records)} | {mean_std(wall)} | {mean_std(cpu)} | {mean_std(docs)} | "
            f"{', '.join(f'{p:g}' for p in params) or '–'} | {'; '.join(cpus)} | {', '.join(commits)} |"
        )
    return "\n".join(lines)


def _cpu_short(cpu: dict) -> str:
    if not cpu:
        return "?"
    kind = "bf16" if cpu.get("fast_bf16") else ("AVX-512" if cpu.get("avx512") else "AVX2")
    if cpu.get("amx"):
        kind += "+AMX"
    return f"{cpu.get('model', '?')} ({kind})"


def dataset_of(records: List[dict]) -> str:
    """The dataset a results name was trained on (files from before the field: Twitter-2015)."""
    return next((r["dataset"] for r in records if r.get("dataset")), "twitter2015")


def render(
    results_dir: Path,
    names: Optional[Sequence[str]] = None,
    dataset: Optional[str] = None,
    compare: Sequence[Tuple[str, str]] = (),
) -> str:
    """The tables for the results names trained on ``dataset`` (None: every aspect-level
    dataset, i.e. all but the post-level ones), and for each ``(a, b)`` of ``compare``
    the paired differences a − b over their shared seeds."""
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; results tables exist for {sorted(DATASETS)}")
    post_level = {d for d, (_, columns) in DATASETS.items() if columns is MSC_COLUMNS}
    results = {
        k: v
        for k, v in load_results(results_dir).items()
        if (dataset_of(v) == dataset if dataset is not None else dataset_of(v) not in post_level)
    }
    if not results:
        raise FileNotFoundError(f"no results/NAME/seed-N.json for {dataset or 'aspect-level data'} under {results_dir}")
    names = [n for n in names if n in results] if names else None
    datasets = sorted({dataset_of(v) for v in results.values()})
    title = "; ".join(DATASETS[d][0] if d in DATASETS else d for d in datasets)
    columns = MSC_COLUMNS if dataset in post_level else COLUMNS
    text = (
        f"{title}, percent, mean ± std over seeds (n = seeds); test scored once per seed on the "
        "best dev checkpoint.\n\n" + scores_table(results, names, columns) + "\n\n" + cost_table(results, names) + "\n"
    )
    for first, second in compare:
        text += "\nPaired by seed (points):\n\n" + paired_table(results, first, second, columns) + "\n"
    return text


def plot_records(results_dir: Path, names: Optional[Sequence[str]] = None, dataset: str = "twitter2015") -> List[dict]:
    """One record per results name of an aspect-level ``dataset``, in the shape the
    report's size plot reads: test MASC accuracy as mean (``scores``) and sample std
    (``scores_std``, 0 for one seed) over seeds, parameters, and the test corpus."""
    results = {k: v for k, v in load_results(results_dir).items() if dataset_of(v) == dataset}
    out = []
    for name in [n for n in names if n in results] if names else sorted(results):
        records = results[name]
        accs = [v for v in (_score(r, "test", "mulcot_masc_acc") for r in records) if v is not None]
        params = [(r.get("test") or {}).get("params_m") for r in records]
        if not accs or not any(params):
            continue
        out.append(
            {
                "name": f"{name} (n={len(accs)})",
                "params_m": next(p for p in params if p),
                "scores": {"mulcot_masc_acc": statistics.fmean(accs)},
                "scores_std": {"mulcot_masc_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0},
                "corpus": f"{DATASETS.get(dataset, (dataset,))[0]} test",
                "n_aspects": (records[0].get("test") or {}).get("n_aspects"),
            }
        )
    if not out:
        raise FileNotFoundError(f"no results with test MASC accuracy for {dataset} under {results_dir}")
    return out


def update_block(path: Path, block: str, text: str) -> bool:
    """Replace the text between ``<!-- results:BLOCK -->`` and ``<!-- /results:BLOCK -->``
    in ``path``; returns whether it changed. A file without the markers is an error."""
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- results:{re.escape(block)} -->\n)(.*?)(<!-- /results:{re.escape(block)} -->)", re.S)
    if not pattern.search(content):
        raise ValueError(f"{path} has no <!-- results:{block} --> … <!-- /results:{block} --> block")
    new = pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(3), content, count=1)
    if new != content:
        write_text(path, new)
    return new != content
