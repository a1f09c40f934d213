"""Soft labels as a small JSON file: what a student needs from the assistant, kept
without the assistant or the labelled ``.spacy`` corpus.

``export_soft_labels`` writes the aspect logits (and optionally the BIO tag logits) of
soft-labelled posts with where they came from (the producing runs' config hashes,
commits and commands); ``apply_soft_labels`` puts them back on a corpus by matching
each post's text and image name and each aspect's characters, so a student trains on
them later without retraining the assistant. Format ``spacy-mulcot.soft-labels.v1``.
"""

import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

from ..doc_model import ASPECTS_KEY, post_key
from ..labels import POLARITIES

FORMAT = "spacy-mulcot.soft-labels.v1"

PostKey = Tuple[str, Optional[str]]


def export_soft_labels(
    docs: Iterable[Doc],
    *,
    producers: Sequence[Dict[str, Any]] = (),
    command: str = "",
    tags: bool = False,
    temperature_note: str = "raw logits (T = 1): divide by T before the softmax",
) -> Dict[str, Any]:
    """The soft labels of ``docs`` as a JSON-ready dict. Every gold aspect must carry
    ``span._.soft_labels`` (a post without aspects is kept, with none); ``tags`` adds
    ``doc._.tag_soft_labels``, which every post must then carry."""
    posts: List[Dict[str, Any]] = []
    for n, doc in enumerate(docs):
        aspects = []
        for span in doc.spans.get(ASPECTS_KEY, []):
            logits = span._.soft_labels
            if logits is None:
                raise ValueError(
                    f"post {n} ({doc.text[:50]!r}): aspect {span.text!r} has no soft labels; "
                    "label the corpus with `python -m spacy_mulcot soft-targets` first"
                )
            if len(logits) != len(POLARITIES):
                raise ValueError(f"post {n}: {len(logits)} logits for aspect {span.text!r}, expected {len(POLARITIES)}")
            aspects.append(
                {
                    "start": span.start_char,
                    "end": span.end_char,
                    "text": span.text,
                    "label": span.label_,
                    "logits": [round(float(v), 4) for v in logits],
                }
            )
        text, image = post_key(doc)
        post: Dict[str, Any] = {"text": text, "image": image, "aspects": aspects}
        if tags:
            rows = doc._.tag_soft_labels
            if rows is None or len(rows) != len(doc):
                raise ValueError(f"post {n} ({doc.text[:50]!r}): no tag logits for each of its {len(doc)} tokens")
            post["tags"] = [[round(float(v), 3) for v in row] for row in rows]
        posts.append(post)
    if not posts:
        raise ValueError("no posts to export")
    return {
        "format": FORMAT,
        "labels": list(POLARITIES),
        "logits": temperature_note,
        "producers": list(producers),
        "command": command,
        "n_posts": len(posts),
        "n_aspects": sum(len(p["aspects"]) for p in posts),
        "posts": posts,
    }


def dumps(data: Dict[str, Any]) -> str:
    """The file's text: the header indented, then one compact line per post (small,
    and a changed post is a one-line diff)."""
    header = {k: v for k, v in data.items() if k != "posts"}
    head = json.dumps(header, indent=2, ensure_ascii=False)[:-2]  # without the closing "\n}"
    lines = ",\n".join("    " + json.dumps(post, ensure_ascii=False, separators=(",", ":")) for post in data["posts"])
    return f'{head},\n  "posts": [\n{lines}\n  ]\n}}\n'


def apply_soft_labels(data: Dict[str, Any], docs: Sequence[Doc], *, strict: bool = True) -> Dict[str, int]:
    """Set ``span._.soft_labels`` (and ``doc._.tag_soft_labels`` where the file has
    them) on the aspects of ``docs`` that the file covers; returns the counts. With
    ``strict``, an aspect of ``docs`` the file lacks is an error (a post the file lacks
    is not: it keeps its hard label)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a soft-label file (format {data.get('format')!r}, expected {FORMAT!r})")
    if list(data.get("labels", [])) != list(POLARITIES):
        raise ValueError(f"the file's labels {data.get('labels')} differ from this version's {list(POLARITIES)}")
    index: Dict[PostKey, Dict[str, Any]] = {}
    for post in data["posts"]:
        index[(post["text"], post.get("image"))] = post
    counts = {"posts": 0, "aspects": 0, "posts_missing": 0, "tags": 0}
    for doc in docs:
        post = index.get(post_key(doc))
        if post is None:
            counts["posts_missing"] += 1
            continue
        by_chars = {(a["start"], a["end"]): a for a in post["aspects"]}
        for span in doc.spans.get(ASPECTS_KEY, []):
            found = by_chars.get((span.start_char, span.end_char))
            if found is None:
                if strict:
                    raise ValueError(
                        f"aspect {span.text!r} ({span.start_char}-{span.end_char}) of {doc.text[:50]!r} "
                        "is not in the soft-label file"
                    )
                continue
            span._.soft_labels = list(found["logits"])
            counts["aspects"] += 1
        if "tags" in post:
            if len(post["tags"]) != len(doc):
                raise ValueError(
                    f"{len(post['tags'])} tag rows in the file for {doc.text[:50]!r}, which has {len(doc)} tokens "
                    "(another tokenizer?)"
                )
            doc._.tag_soft_labels = [list(row) for row in post["tags"]]
            counts["tags"] += 1
        counts["posts"] += 1
    if not counts["posts"]:
        raise ValueError("no post of the corpus is in the soft-label file (other data, or other image names?)")
    return counts
