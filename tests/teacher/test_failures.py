"""The teacher when things go wrong, against a real HTTP server on 127.0.0.1 that
answers badly on purpose: bodies that are not chat completions, refusals, retries,
a dead port, a missing image. Each case was a bug (a crash, a silent gap, a false
exit code or count)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mulcot.cli import app
from spacy_mulcot.doc_model import make_doc, set_aspects
from spacy_mulcot.images import ImageError
from spacy_mulcot.teacher import OpenAICompatible, TeacherError, TeacherItem, TeacherPrompt, TwoStageTeacher
from spacy_mulcot.teacher.component import USER_DATA_KEY, MulcotTeacher, TeacherWarning

from ..helpers import make_image


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    ).encode()


class Server:
    """Answers each POST with ``script(n)`` → (status, content type, body[, headers]);
    n counts requests."""

    def __init__(self, script):
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.requests += 1
                    n = outer.requests
                status, ctype, body, *extra = script(n)
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(script):
        servers.append(Server(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def backend(url, **kwargs):
    return OpenAICompatible("m", base_url=url, api_key_env=None, backoff=0.0, **kwargs)


def items(n):
    return [TeacherItem(f"post {i} about Tesla", "Tesla", "POS") for i in range(n)]


@pytest.mark.parametrize(
    "ctype,body",
    [("text/html", b"<html><body>502 from the proxy</body></html>"), ("application/json", b"{not json")],
)
def test_a_body_that_is_not_a_chat_completion_fails_items_and_stops_the_run(serve, ctype, body):
    server = serve(lambda n: (200, ctype, body))
    runner = TwoStageTeacher(
        backend(server.url, max_concurrency=1), TeacherPrompt("aspect"), max_consecutive_failures=3
    )
    results, report = runner.run(items(10), progress=False)
    assert all(r.status == "failed" for r in results)
    assert "not a chat completion" in results[0].error
    assert report.aborted and server.requests == 3  # not every remaining request


def test_retries_are_counted_even_when_the_request_then_fails(serve):
    # Two 503s, then a refusal: the report must show the two retries.
    server = serve(
        lambda n: (
            (503, "application/json", b'{"error": "busy"}')
            if n <= 2
            else (400, "application/json", b'{"error": "bad"}')
        )
    )
    results, report = TwoStageTeacher(backend(server.url, max_retries=5), TeacherPrompt("aspect")).run(
        items(1), progress=False
    )
    assert results[0].status == "failed" and "(400)" in results[0].error
    assert report.retries == 2 and results[0].retries == 2


def posts(nlp, tmp_path, missing_image=False):
    image = tmp_path / "img.jpg"
    image.write_bytes(make_image())
    a = make_doc(nlp, "Loving the new Tesla", image=str(image))
    set_aspects(a, [{"text": "Tesla", "label": "POS"}])
    b = make_doc(nlp, "Obama meets Merkel", image=str(tmp_path / "gone.jpg") if missing_image else str(image))
    set_aspects(b, [{"text": "Obama", "label": "NEU"}])
    return [a, b]


def test_component_in_a_pipeline_warns_or_raises_when_the_server_is_down(tmp_path):
    nlp = spacy.blank("en")
    dead = {
        "@misc": "mulcot.OpenAICompatible.v1",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": None,
        "max_retries": 0,
    }
    nlp.add_pipe("mulcot_teacher", config={"backend": dead, "cache_path": None, "on_error": "skip"})
    with pytest.warns(TeacherWarning, match=r"2 of 2 items got no chain"):
        docs = list(nlp.pipe(posts(nlp, tmp_path)))
    assert all(s._.rationale is None for d in docs for s in d.spans["aspects"])
    assert docs[0].user_data[USER_DATA_KEY][0]["status"] == "failed"
    nlp.replace_pipe("mulcot_teacher", "mulcot_teacher", config={"backend": dead, "cache_path": None})
    with pytest.raises(TeacherError, match="got no chain"):
        nlp(posts(nlp, tmp_path)[0])
    with pytest.raises(ValueError, match="on_error"):
        nlp.replace_pipe("mulcot_teacher", "mulcot_teacher", config={"backend": dead, "on_error": "ignore"})


def test_missing_image_is_skipped_or_named_by_its_position(serve, tmp_path):
    server = serve(lambda n: (200, "application/json", completion('"Prediction": "positive"')))
    nlp = spacy.blank("en")
    with pytest.warns(DeprecationWarning, match='old word for "skip"'):
        MulcotTeacher(nlp.vocab, backend(server.url), cache_path=None, two_stage=False, on_error="warn")
    teacher = MulcotTeacher(nlp.vocab, backend(server.url), cache_path=None, two_stage=False, on_error="skip")
    with pytest.warns(TeacherWarning, match="1 of 2 items got no chain.*doc 1 .*gone.jpg"):
        a, b = list(teacher.pipe(posts(nlp, tmp_path, missing_image=True)))
    assert a.spans["aspects"][0]._.rationale is not None and server.requests == 1  # the other doc still ran
    assert b.user_data[USER_DATA_KEY][0]["status"] == "failed" and "gone.jpg" in b.user_data[USER_DATA_KEY][0]["error"]
    teacher = MulcotTeacher(nlp.vocab, backend(server.url), cache_path=None, two_stage=False)
    for _ in range(2):  # docs seen before do not shift the position named
        list(teacher.pipe(posts(nlp, tmp_path)[:1]))
    with pytest.raises(ImageError, match=r"doc 1 \('Obama meets Merkel'\).*gone.jpg"):
        list(teacher.pipe(posts(nlp, tmp_path, missing_image=True)))


def write_corpus(nlp, tmp_path, missing_image=False):
    db = DocBin(store_user_data=True)
    for doc in posts(nlp, tmp_path, missing_image):
        db.add(doc)
    db.to_disk(tmp_path / "in.spacy")
    return tmp_path / "in.spacy"


def test_teach_cli_exits_1_when_every_request_is_refused(serve, tmp_path):
    server = serve(lambda n: (400, "application/json", b'{"error": {"message": "model not allowed"}}'))
    source = write_corpus(spacy.blank("en"), tmp_path)
    out = tmp_path / "out.spacy"
    result = CliRunner().invoke(
        app,
        [
            "teach",
            str(source),
            str(out),
            "--model",
            "m",
            "--base-url",
            server.url,
            "--api-key-env",
            "NO_SUCH_KEY_VAR",
            "--cache",
            str(tmp_path / "c.sqlite"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "every one of the 2 items failed" in result.output and not out.exists()
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["stages"]["failed"] == 2 and report["requests"] == 0


def test_teach_cli_skips_a_missing_image_and_honours_openai_base_url(serve, tmp_path, monkeypatch):
    server = serve(lambda n: (200, "application/json", completion('"Prediction": "positive"')))
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # as the openai client itself reads it
    monkeypatch.setenv("MULCOT_KEY", "k")
    source = write_corpus(spacy.blank("en"), tmp_path, missing_image=True)
    out = tmp_path / "out.spacy"
    args = [
        "teach",
        str(source),
        str(out),
        "--model",
        "m",
        "--api-key-env",
        "MULCOT_KEY",
        "--no-two-stage",
        "--cache",
        str(tmp_path / "c.sqlite"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "doc 1" in result.output and "gone.jpg" in result.output and not out.exists()
    result = CliRunner().invoke(app, args + ["--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 items got no chain" in result.output and server.requests == 1
    docs = list(DocBin(store_user_data=True).from_disk(out).get_docs(spacy.blank("en").vocab))
    assert docs[0].spans["aspects"][0]._.rationale_label == "POS" and docs[1].spans["aspects"][0]._.rationale is None


ONE_LINE = (
    '"Text_analysis": "an upbeat post", "Image_analysis": "a shiny car", "Conflict_resolution": "none", '
    '"Final_conclusion": "the writer likes it", "Prediction": "positive"'
)
ONE_LINE_JSON = json.dumps({"Text_analysis": "upbeat", "Final_conclusion": "likes it", "Prediction": "positive"})


@pytest.mark.parametrize("reply", [ONE_LINE, ONE_LINE_JSON, "```json\n" + ONE_LINE_JSON + "\n```"])
def test_one_line_chains_are_read_so_stage_2_is_not_paid_for(serve, reply):
    """Before: no prediction found in these shapes, so each item was 'unmatched' and
    stage 2 asked three more times."""
    server = serve(lambda n: (200, "application/json", completion(reply)))
    results, report = TwoStageTeacher(backend(server.url), TeacherPrompt("aspect")).run(items(1), progress=False)
    assert results[0].status == "stage1" and results[0].label == "POS"
    assert server.requests == 1


def test_retry_after_is_honoured(serve):
    server = serve(
        lambda n: (
            (429, "application/json", b'{"error": "slow down"}', {"Retry-After": "1"})
            if n == 1
            else (200, "application/json", completion('"Prediction": "positive"'))
        )
    )
    import time

    start = time.perf_counter()
    results, report = TwoStageTeacher(backend(server.url), TeacherPrompt("aspect")).run(items(1), progress=False)
    assert results[0].status == "stage1" and report.retries == 1
    assert time.perf_counter() - start >= 0.95  # backoff is 0 here: only Retry-After waits


def test_no_secret_reaches_the_report_the_cache_or_the_output(serve, tmp_path):
    server = serve(lambda n: (200, "application/json", completion('"Prediction": "positive"')))
    url = server.url.replace("http://", "http://alice:s3cret-pass@")
    source = write_corpus(spacy.blank("en"), tmp_path)
    out = tmp_path / "out.spacy"
    args = ["teach", str(source), str(out), "--model", "m", "--base-url", url, "--api-key-env", "MULCOT_KEY"]
    args += ["--no-two-stage", "--cache", str(tmp_path / "c.sqlite")]
    result = CliRunner().invoke(app, args, env={"MULCOT_KEY": "sk-very-secret-key"})
    assert result.exit_code == 0, result.output
    report = out.with_suffix(".report.json").read_text()
    assert "alice:***@" in report
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert b"s3cret-pass" not in data and b"sk-very-secret-key" not in data, path
    assert "s3cret-pass" not in result.output


def test_redact_url():
    from spacy_mulcot.teacher.backends.openai_compatible import redact_url

    assert redact_url("https://u:p@host/v1?api-key=K&model=x") == "https://u:***@host/v1?api-key=***&model=x"
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"
