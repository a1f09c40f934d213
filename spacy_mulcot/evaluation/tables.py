"""One results table format for the project: the report's, bench/'s and the README's.

A record is a dict as written by :mod:`.systems` (``name``, ``scores``, ``reasoning``,
``params_m``, ``docs_per_s``, …); a figure a system does not have shows as "–".
"""

from typing import Any, Dict, Sequence, Tuple

#: Table columns: (record key path, header, format).
COLUMNS = (
    ("params_m", "Params (M)", "{:.1f}"),
    ("scores.mulcot_masc_acc", "MASC acc", "{:.2f}"),
    ("scores.mulcot_masc_macro_f", "MASC mF1", "{:.2f}"),
    ("scores.mulcot_mate_f", "MATE F1", "{:.2f}"),
    ("scores.mulcot_jmasa_f", "JMASA F1", "{:.2f}"),
    ("reasoning.bleu4", "BLEU-4", "{:.1f}"),
    ("reasoning.rouge_l", "ROUGE-L", "{:.1f}"),
    ("reasoning.meteor_no_wordnet", "METEOR*", "{:.1f}"),
    ("reasoning.cosine_minilm", "Cosine", "{:.1f}"),
    ("reasoning.distinct_2", "Distinct-2", "{:.1f}"),
    ("reasoning.chain_vs_gold", "Chain = gold %", "{:.1f}"),
    ("docs_per_s", "docs/s", "{:.2f}"),
    ("reasoning_docs_per_s", "docs/s with chains", "{:.3f}"),
    ("peak_rss_mb", "Peak MB", "{:.0f}"),
)


#: Published Twitter-2015 test figures, as records (for the README's comparison).
ANCHORS = (
    {"name": "TomBERT (Yu & Jiang 2019), published", "scores": {"mulcot_masc_acc": 77.2, "mulcot_masc_macro_f": 71.8}},
    {"name": "text-only BART (Ling et al. 2022), published", "scores": {"mulcot_jmasa_f": 63.9}},
    {
        "name": "VLP-MABSA (Ling et al. 2022), published",
        "scores": {"mulcot_masc_acc": 78.6, "mulcot_masc_macro_f": 73.8, "mulcot_mate_f": 85.7, "mulcot_jmasa_f": 66.6},
    },
)

#: The classification columns (no chains): what bench/results_table.py shows.
CLASSIFICATION_COLUMNS: Tuple[Tuple[str, str, str], ...] = (
    ("scores.mulcot_masc_acc", "MASC acc", "{:.2f}"),
    ("scores.mulcot_masc_macro_f", "MASC mF1", "{:.2f}"),
    ("scores.mulcot_mate_f", "MATE F1", "{:.2f}"),
    ("scores.mulcot_jmasa_p", "JMASA P", "{:.2f}"),
    ("scores.mulcot_jmasa_r", "JMASA R", "{:.2f}"),
    ("scores.mulcot_jmasa_f", "JMASA F1", "{:.2f}"),
    ("params_m", "Params (M)", "{:.1f}"),
    ("docs_per_s", "docs/s", "{:.1f}"),
    ("peak_rss_mb", "Peak MB", "{:.0f}"),
)


def get(record: Dict[str, Any], path: str):
    value: Any = record
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def markdown_table(records: Sequence[Dict[str, Any]], columns: Sequence[Tuple[str, str, str]] = COLUMNS) -> str:
    """One row per system; "–" where a system has no such figure (a zero-shot LM
    extracts no aspects); "mean ± std" where the record has ``scores_std`` (seeds)."""
    header = "| System | " + " | ".join(h for _, h, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for r in records:
        cells = []
        for path, _, fmt in columns:
            value = get(r, path)
            cell = fmt.format(value) if isinstance(value, (int, float)) else "–"
            # Over seeds: a record's scores are means, scores_std their standard deviations.
            std = get(r, path.replace("scores.", "scores_std.", 1)) if path.startswith("scores.") else None
            cells.append(cell + (f" ± {fmt.format(std)}" if isinstance(std, (int, float)) and cell != "–" else ""))
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
