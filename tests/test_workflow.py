"""The distillation workflow: the report's pieces, the small CLI steps, and the whole
``all`` workflow run end to end through weasel's ``project_run`` on handwritten
Twitter-format data with a tiny generator (the way explosion's projects test themselves)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.doc_model import make_doc
from spacy_mulcot.evaluation.scores import masc_scores
from spacy_mulcot.evaluation.tables import markdown_table
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.report import write_report

from .helpers import make_image

ROOT = Path(__file__).resolve().parents[1]
HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"
WORDS = {0: "negative", 1: "neutral", 2: "positive"}
POSTS = [
    ("$T$ is everything tonight", "Chuck Bass", 2),
    ("traffic on $T$ is a nightmare again", "I-95", 0),
    ("$T$ announced the schedule for next week", "NASA", 1),
    ("so proud of $T$ after that win", "Serena", 2),
    ("$T$ lost again , what a mess", "Arsenal", 0),
    ("$T$ opens a new store downtown", "Apple", 1),
]


def chain(aspect: str, label: int) -> str:
    return (
        f'"Text_analysis": "the post talks about {aspect}"\n"Image_analysis": "a plain coloured picture"\n'
        f'"Conflict_resolution": "no conflict"\n"Final_conclusion": "the poster is {WORDS[label]}"\n'
        f'"Prediction": {WORDS[label]}'
    )


@pytest.fixture(scope="module")
def twitter_dir(tmp_path_factory) -> Path:
    """Twitter-2015's layout: .tsv per split, images/, reasoning/{dev,test}.json."""
    root = tmp_path_factory.mktemp("data") / "twitter2015"
    (root / "images").mkdir(parents=True)
    (root / "reasoning").mkdir()
    for s, split in enumerate(("train", "dev", "test")):
        rows, chains = [], []
        for i, (text, aspect, label) in enumerate(POSTS):
            image = f"{split}{i}.jpg"
            (root / "images" / image).write_bytes(make_image((40 * i, 200 - 30 * i, 60 * s)))
            rows.append(f"{i}\t{label}\t{image}\t{text}\t{aspect}")
            chains.append(
                {
                    "text": text.replace("$T$", aspect),
                    "aspect": aspect,
                    "image_path": image,
                    "label": WORDS[label],
                    "cot": chain(aspect, label),
                }
            )
        (root / f"{split}.tsv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
        if split != "train":  # as published: no teacher chains for train
            (root / "reasoning" / f"{split}.json").write_text(json.dumps(chains))
    return root


# ---- report pieces --------------------------------------------------------------


def test_masc_scores_by_hand():
    scores = masc_scores(["POS", "POS", "NEG", "NEU"], ["POS", "NEG", "NEG", None])
    assert scores["mulcot_masc_acc"] == 50.0
    # F1: POS 2/3, NEG 2/3, NEU 0 → macro 4/9
    assert scores["mulcot_masc_macro_f"] == pytest.approx(44.44, abs=0.01)
    assert scores["confusion"] == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]  # the unreadable one is in no cell
    with pytest.raises(ValueError, match="gold labels but"):
        masc_scores(["POS"], [])


def test_plots_and_tables_tell_the_truth():
    from spacy_mulcot.report import accuracy_range, corpus_label

    low, high = accuracy_range([(74.3, 0.0), (74.7, 0.0)])
    assert high - low >= 10 and low < 74.3 and high > 74.7  # a 0.4-point gap stays small
    assert accuracy_range([(50.0, 1.0), (90.0, 2.0)]) == (47.0, 94.0)  # the error bars and a 2-point margin
    records = [
        {
            "name": "a",
            "corpus": "c/test.spacy",
            "n_aspects": 9,
            "scores": {"mulcot_masc_acc": 74.3},
            "scores_std": {"mulcot_masc_acc": 0.8},
        },
        {"name": "b", "corpus": "c/test.spacy", "n_aspects": 9, "scores": {"mulcot_masc_acc": 74.7}},
    ]
    assert corpus_label(records) == "c/test.spacy, 9 aspects"
    table = markdown_table(records)
    assert "| a | – | 74.30 ± 0.80 |" in table and "| b | – | 74.70 |" in table


def test_report_writes_table_and_plots(tmp_path):
    records = [
        {
            "name": "zero-shot",
            "n_posts": 4,
            "n_aspects": 5,
            "params_m": 134.5,
            "confusion": [[1, 0, 0], [0, 1, 1], [1, 0, 1]],
            "scores": {"mulcot_masc_acc": 60.0, "mulcot_masc_macro_f": 55.5},
            "reasoning": {"bleu4": 3.2, "n_chains": 5},
            "reasoning_posts": 4,
        },
        {
            "name": "student",
            "n_posts": 4,
            "n_aspects": 5,
            "params_m": 60.1,
            "confusion": [[2, 0, 0], [0, 2, 0], [0, 0, 1]],
            "scores": {"mulcot_masc_acc": 100.0, "mulcot_masc_macro_f": 100.0, "mulcot_mate_f": 80.0},
            "docs_per_s": 3.5,
        },
    ]
    paths = write_report(records, tmp_path / "report")
    for key in ("confusion", "size"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[key].stat().st_size > 5000
    md = paths["markdown"].read_text()
    assert "![MASC confusion](confusion.png)" in md and "![Size vs accuracy](size_vs_accuracy.png)" in md
    rows = [line for line in markdown_table(records).splitlines() if line.startswith("| ") and "System" not in line]
    assert rows[0].startswith("| zero-shot | 134.5 | 60.00 | 55.50 | – |")  # no MATE for a prompted LM
    assert rows[1].startswith("| student | 60.1 | 100.00 | 100.00 | 80.00 |")
    assert json.loads(paths["json"].read_text()) == records
    with pytest.raises(ValueError, match="no system records"):
        write_report([], tmp_path / "empty")


def test_report_cli_refuses_missing_records(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope.json"), "--output-dir", str(tmp_path)])
    assert result.exit_code != 0 and "missing records" in result.output


def test_sample_and_teacher_skip_cli(tmp_path):
    nlp = spacy.blank("en")
    docs = [make_doc(nlp, f"post number {i}") for i in range(10)]
    from spacy.tokens import DocBin

    source = tmp_path / "all.spacy"
    DocBin(docs=docs, store_user_data=True).to_disk(source)
    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(source), str(tmp_path / "s.spacy"), "--n", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    texts = [d.text for d in read_docbin(tmp_path / "s.spacy", nlp)]
    assert len(texts) == 4 and texts == sorted(texts, key=lambda t: int(t.split()[-1]))  # order kept
    again = runner.invoke(app, ["sample", str(source), str(tmp_path / "s2.spacy"), "--n", "4", "--seed", "1"])
    assert again.exit_code == 0 and [d.text for d in read_docbin(tmp_path / "s2.spacy", nlp)] == texts
    assert runner.invoke(app, ["sample", str(source), str(tmp_path / "all2.spacy"), "--n", "0"]).exit_code == 0
    assert len(list(read_docbin(tmp_path / "all2.spacy", nlp))) == 10
    assert runner.invoke(app, ["sample", str(source), str(tmp_path / "x.spacy"), "--n", "-1"]).exit_code != 0
    skipped = runner.invoke(app, ["teach", str(source), str(tmp_path / "t.spacy"), "--backend", "none"])
    assert skipped.exit_code == 0 and "teacher skipped" in skipped.output
    assert [d.text for d in read_docbin(tmp_path / "t.spacy", nlp)] == [d.text for d in docs]
    no_model = runner.invoke(app, ["teach", str(source), str(tmp_path / "t2.spacy")])
    assert no_model.exit_code != 0 and "--model is required" in no_model.output


# ---- the whole workflow ---------------------------------------------------------


@pytest.mark.slow
def test_project_all_end_to_end(twitter_dir, tiny_lm_path, tmp_path):
    from weasel.cli.run import project_run

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    shutil.copytree(ROOT / "configs", project / "configs")
    overrides = {
        "vars.data_dir": str(twitter_dir.parent),
        "vars.sample": 5,
        "vars.generator": str(tiny_lm_path),
        "vars.zero_shot_model": str(tiny_lm_path),
        "vars.student_layers": 1,
        "vars.steps": 3,
        "vars.warmup_steps": 1,
        "vars.eval_frequency": 1,
        "vars.max_new_tokens": 12,
        "vars.report_sample": 2,
        "vars.augment_attempts": 1,
        "vars.classifier_steps": 2,
        "vars.classifier_eval_frequency": 1,
        "vars.fold_steps": 2,
        "vars.student_steps": 3,
        "vars.student_eval_frequency": 1,
    }
    project_run(project, "all", overrides=overrides)

    corpus = project / "corpus" / "twitter2015" / "run"
    nlp = spacy.blank("en")
    assert len(list(read_docbin(corpus / "test.spacy", nlp))) == 5  # the sample
    report = json.loads((corpus / "joint" / "train_augmented.report.json").read_text())
    assert report["aspects"] == 5 and report["generated"] == 5  # train posts had no chains; one attempt each
    # The ladder: two fold teachers, each labelling the half it never saw and its variants.
    augmented = list(read_docbin(corpus / "joint" / "train_augmented.spacy", nlp))
    heldout = [list(read_docbin(corpus / "folds" / f"fold-{i}" / "heldout.spacy", nlp)) for i in (0, 1)]
    assert sorted(d.text for part in heldout for d in part) == sorted(d.text for d in augmented)
    for i in (0, 1):
        teacher_cfg = spacy.util.load_config(project / "training" / f"fold_teacher_{i}" / "model-best" / "config.cfg")
        assert teacher_cfg["components"]["mulcot"]["model"]["use_rationale"] is False  # chains state the label
    soft = list(read_docbin(corpus / "transfer" / "train_soft.spacy", nlp))
    assert len(soft) == 6 * len(augmented)  # each post and 5 variants
    assert all(s._.soft_labels is not None for d in soft for s in d.spans["aspects"])
    oof = json.loads((project / "metrics" / "soft_labels_oof.json").read_text())  # the labels, kept as a file
    assert oof["n_posts"] == len(augmented) and oof["n_aspects"] == sum(len(d.spans["aspects"]) for d in augmented)
    records = json.loads((project / "metrics" / "report" / "report.json").read_text())
    assert [r["name"] for r in records] == ["zero-shot", "assistant", "student", "student-control"]
    assistant, student, control = records[1], records[2], records[3]
    assert student["params"] < assistant["params"]  # no transformer text encoder, narrower fusion
    assert control["params"] == student["params"]  # the same student, trained on hard labels alone
    student_cfg = spacy.util.load_config(project / "training" / "student" / "model-best" / "config.cfg")
    control_cfg = spacy.util.load_config(project / "training" / "student_control" / "model-best" / "config.cfg")
    assert student_cfg["components"]["mulcot"]["distill_weight"] == 0.5
    assert control_cfg["components"]["mulcot"]["distill_weight"] == 0
    assert student_cfg["components"]["mulcot"]["model"]["generator"]["lora"]["r"] == 8
    for r in records:
        assert r["scores"]["mulcot_masc_acc"] is not None and r["reasoning"]["n_chains"] >= 2
        assert r["reasoning_docs_per_s"] > 0
    assert student["scores"]["mulcot_mate_f"] is not None
    for png in ("confusion.png", "size_vs_accuracy.png"):
        assert (project / "metrics" / "report" / png).read_bytes()[:4] == b"\x89PNG"
    wheels = list((project / "packages" / "en_mulcot_student-0.1.0" / "dist").glob("*.whl"))
    assert len(wheels) == 1
    # The packaged student is a working pipeline: aspects, labels and chains for a new post.
    student_nlp = spacy.load(project / "training" / "student" / "model-best")
    post = make_doc(
        student_nlp,
        "so proud of Serena after that win",
        image=str(twitter_dir / "images" / "test3.jpg"),
        aspects=["Serena"],
    )
    out = student_nlp(post)
    span = out.spans["aspects"][0]
    assert span.label_ in ("POS", "NEU", "NEG") and set(out.cats) == {"POS", "NEU", "NEG"}
    explained = next(student_nlp.pipe([post], component_cfg={"mulcot": {"generate_reasoning": True}}))
    assert explained.spans["aspects"][0]._.reasoning  # its chain writer, the base LM loaded by name
    # The reference classifier, trained on the full (here: handwritten) data, and its test record.
    classifier = spacy.load(project / "training" / "mulcot_cpu" / "model-best")
    assert classifier.pipe_names == ["transformer", "mulcot_image", "mulcot"]
    record = json.loads((project / "metrics" / "mulcot_cpu_test.json").read_text())
    assert record["scores"]["mulcot_masc_acc"] is not None and record["n_posts"] == len(POSTS)
    # meta.json leaves out what had no data (Twitter has no post labels) instead of 0.0.
    performance = json.loads((project / "training" / "mulcot_cpu" / "model-best" / "meta.json").read_text())[
        "performance"
    ]
    assert "mulcot_masc_acc" in performance and "mulcot_msc_acc" not in performance
    # spaCy's own evaluate shows the joint span scores under its span columns.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "evaluate",
            str(project / "training" / "mulcot_cpu" / "model-best"),
            str(project / "corpus" / "twitter2015" / "sentence" / "test.spacy"),
            "--spans-key",
            "aspects",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "SPAN F" in out.stdout and "POS" in out.stdout  # per polarity
