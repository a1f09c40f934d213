"""``nlp.pipe(docs, n_process=2)`` with a trained pipeline: it finishes (torch's thread
pool does not survive fork; each worker gets its own), gives the one-process results,
and in-memory images and extension values come back with the docs."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    import spacy
    from PIL import Image
    from spacy_mulcot import make_doc

    nlp = spacy.load(sys.argv[1])
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 30, 30)).save(buf, format="JPEG")
    posts = [
        ("Loving the new #iPhone but the battery is awful", buf.getvalue()),
        ("Great game by Messi tonight", Image.new("RGB", (64, 64), (20, 40, 220))),
        ("Rainy day in London again", None),
        ("The pizza at Joe 's was amazing", buf.getvalue()),
    ]

    def run(n_process):
        docs = [make_doc(nlp, text, image=image) for text, image in posts]
        for doc in docs:
            doc._.rationale = "a user's note on " + doc.text[:10]
        out = []
        for doc in nlp.pipe(docs, n_process=n_process, batch_size=2):
            ref = doc._.image
            out.append({
                "aspects": [(s.text, s.label_, round(max(s._.sentiment_scores.values()), 4)) for s in doc.spans["aspects"]],
                "cats": {k: round(v, 4) for k, v in doc.cats.items()},
                "image_loads": ref is not None and ref.load().size,
                "features": doc._.image_features is not None,
                "rationale": doc._.rationale,
            })
        return out

    print(json.dumps({"one": run(1), "two": run(2)}))
    """
)


def test_two_processes_give_the_one_process_results(trained_model_dir, tmp_path):
    script = tmp_path / "mp.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(trained_model_dir)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["two"] == result["one"]
    assert [r["image_loads"] for r in result["two"]] == [[320, 240], [64, 64], False, [320, 240]]
    assert all(r["rationale"].startswith("a user's note") for r in result["two"])
