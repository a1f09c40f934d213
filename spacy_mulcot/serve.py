"""A demo web app around a trained pipeline (Starlette, served by uvicorn).

``GET /`` is a page where a person types a post, uploads an image, optionally names
the aspects, and sees the text with aspects highlighted in polarity colours, the
probabilities, the post's sentiment, the image and (on request) the reasoning chain
per aspect. ``POST /api/analyze`` (a form: ``text``, ``image``, ``aspects``,
``chains``) and ``POST /api/batch`` (JSON: ``{"posts": [{"text", "image": base64,
"aspects": [...]}], "chains": false}``) return the records of
:func:`spacy_mulcot.predict.record`. Uploads are checked for size, declared type and
actual content (decoded with the pixel cap) before the model sees them. Every
request body is bounded by the bytes actually received (a declared length is checked
first, but a chunked upload or a false length is counted as it streams): a request
over the bound is refused with 413 before it is held in memory whole.
"""

import base64
import binascii
import json
import threading
from typing import Any, Dict, List, Optional

from PIL import Image
from spacy.language import Language

from .doc_model import ASPECTS_KEY, AspectNotFoundError, make_doc
from .extras import require
from .images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from .predict import record
from .render import spans_html

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")
MAX_TEXT_CHARS = 5000


class BadInput(ValueError):
    """A request the app refuses, with its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Analyzer:
    """Runs the pipeline for the app: one request at a time (a spaCy pipeline is not
    meant to be called from several threads at once), inputs checked first."""

    def __init__(
        self,
        nlp: Language,
        max_image_bytes: int = 5_000_000,
        max_batch: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        component: str = "mulcot",
        max_request_bytes: int = 20_000_000,
    ):
        self.nlp = nlp
        #: /api/batch's body bound; /api/analyze's is one image and a text, with room
        #: for the form's own bytes.
        self.max_request_bytes = max_request_bytes
        self.max_form_bytes = max_image_bytes + 4 * MAX_TEXT_CHARS + 64_000
        self.max_image_bytes = max_image_bytes
        self.max_batch = max_batch
        self.max_pixels = max_pixels
        self.component = component
        self.has_generator = (
            bool(getattr(nlp.get_pipe(component), "has_generator", False)) if component in nlp.pipe_names else False
        )
        self._lock = threading.Lock()

    def check_image(self, data: Optional[bytes], content_type: Optional[str] = None) -> Optional[Image.Image]:
        """The upload decoded (size, type and content checked), so the pipeline does not
        decode it again; None for no upload."""
        if not data:
            return None
        if len(data) > self.max_image_bytes:
            raise BadInput(f"the image is {len(data)} bytes; the limit is {self.max_image_bytes}", 413)
        if content_type is not None and content_type not in IMAGE_TYPES:
            raise BadInput(f"the upload is {content_type}; send one of {', '.join(IMAGE_TYPES)}", 415)
        try:
            return decode_image(data, max_pixels=self.max_pixels, source="the upload")
        except ImageError as e:
            raise BadInput(str(e), 415 if "not an image" in str(e) else 400) from None

    def doc(self, text: Any, image: Optional[Image.Image], aspects: Optional[List[Any]]):
        if not isinstance(text, str) or not text.strip():
            raise BadInput("'text' must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"'text' has {len(text)} characters; the limit is {MAX_TEXT_CHARS}", 413)
        if aspects is not None and (not isinstance(aspects, list) or not all(isinstance(a, str) for a in aspects)):
            raise BadInput("'aspects' must be a list of strings found in the text")
        try:
            return make_doc(self.nlp, text, image, aspects or None)
        except (AspectNotFoundError, ValueError) as e:
            raise BadInput(str(e)) from None

    def analyze(self, docs: list, chains: bool) -> List[Dict[str, Any]]:
        given = [ASPECTS_KEY in d.spans for d in docs]
        settings = {self.component: {"generate_reasoning": bool(chains and self.has_generator)}}
        with self._lock:
            out = list(self.nlp.pipe(docs, component_cfg=settings))
        results = []
        for doc, was_given in zip(out, given):
            rec = record(doc, was_given)
            rec["html"] = spans_html(doc)
            results.append(rec)
        return results


def create_app(nlp: Language, **settings):
    """The Starlette app for ``nlp`` (see the module docstring)."""
    require("starlette", "serve", "the demo app")
    require("python_multipart", "serve", "image uploads")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    analyzer = Analyzer(nlp, **settings)

    def refused(e: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.replace("{{GENERATOR}}", "true" if analyzer.has_generator else "false"))

    async def analyze(request: Request) -> JSONResponse:
        try:
            await read_bounded(request, analyzer.max_form_bytes, "a post with an image")
        except BadInput as e:
            return refused(e)
        try:
            # Parsed from the bytes read above (Starlette's stream() replays a body read).
            form = await request.form(max_files=1, max_fields=8)
        except Exception as e:  # malformed multipart
            return refused(BadInput(f"not a valid form: {e}"))
        try:
            upload = form.get("image")
            image = None
            if upload is not None and hasattr(upload, "read"):
                data = await upload.read()
                image = analyzer.check_image(data, upload.content_type) if data else None
            aspects_text = str(form.get("aspects") or "")
            aspects = [a.strip() for a in aspects_text.replace("|", ",").split(",") if a.strip()] or None
            doc = analyzer.doc(form.get("text"), image, aspects)
            chains = str(form.get("chains") or "").lower() in ("1", "true", "on", "yes")
        except BadInput as e:
            return refused(e)
        (result,) = await _in_thread(analyzer.analyze, [doc], chains)
        result["reasoning_available"] = analyzer.has_generator
        return JSONResponse(result)

    async def batch(request: Request) -> JSONResponse:
        try:
            raw = await read_bounded(request, analyzer.max_request_bytes, "a batch")
        except BadInput as e:
            return refused(e)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return refused(BadInput('the body must be JSON: {"posts": [...], "chains": false}'))
        try:
            posts = body.get("posts") if isinstance(body, dict) else None
            if not isinstance(posts, list) or not posts:
                raise BadInput("'posts' must be a non-empty list")
            if len(posts) > analyzer.max_batch:
                raise BadInput(f"{len(posts)} posts; the limit per request is {analyzer.max_batch}", 413)
            docs = []
            for i, post in enumerate(posts):
                if not isinstance(post, dict):
                    raise BadInput(f"post {i}: must be an object with 'text'")
                try:
                    image = _b64(post.get("image"), i)
                    docs.append(analyzer.doc(post.get("text"), analyzer.check_image(image), post.get("aspects")))
                except BadInput as e:
                    raise BadInput(f"post {i}: {e}", e.status) from None
        except BadInput as e:
            return refused(e)
        results = await _in_thread(analyzer.analyze, docs, bool(body.get("chains")))
        return JSONResponse({"results": results})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/analyze", analyze, methods=["POST"]),
            Route("/api/batch", batch, methods=["POST"]),
        ]
    )


async def read_bounded(request, limit: int, what: str) -> bytes:
    """The request's body, refused (413) once more than ``limit`` bytes are declared
    or have arrived: counted as it streams, never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadInput(f"Content-Length is not a number: {declared!r}") from None
        if size > limit:
            raise BadInput(f"the request is {size} bytes, over the limit of {limit} for {what}", 413)
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BadInput(f"the request is over the limit of {limit} bytes for {what}", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.body()/form() read from now on
    return body


def _b64(value: Any, index: int) -> Optional[bytes]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput("'image' must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("'image' is not valid base64") from None


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spacy-mulcot demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }
textarea { width: 100%; height: 5em; font: inherit; }
input[type=text] { width: 100%; font: inherit; }
label { display: block; margin: 0.8em 0 0.3em; font-weight: 600; }
button { margin-top: 1em; font: inherit; padding: 0.4em 1.2em; }
[hidden] { display: none !important; }  /* the flex layout below would show a hidden result */
#result { display: flex; flex-wrap: wrap; gap: 1.5em; margin-top: 1.5em; }
#output { flex: 1 1 18em; min-width: 0; overflow-wrap: anywhere; }
#preview { max-width: min(260px, 100%); max-height: 260px; border-radius: 4px; }
input[type=file] { max-width: 100%; }
#aspects-table { width: 100%; }
.hint { font-weight: normal; color: #666; font-size: 0.9em; }
@media (max-width: 480px) { body { margin: 1em auto; } h1 { font-size: 1.5em; } td, th { padding: 0.25em 0.3em; } }
table { border-collapse: collapse; margin-top: 0.8em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
.bar { display: inline-block; height: 0.8em; vertical-align: middle; border-radius: 2px; }
.error { color: #b00020; }
details pre { white-space: pre-wrap; background: #f6f6f6; padding: 0.6em; }
.legend span { padding: 0.1em 0.5em; border-radius: 3px; margin-right: 0.4em; }
</style></head><body>
<h1>spacy-mulcot</h1>
<p>Aspects, their sentiment and the post's, from text and image.
<span class="legend"><span style="background:#7fd67f">POS</span><span style="background:#d0d0d0">NEU</span><span style="background:#f08c8c">NEG</span></span></p>
<form id="form">
<label for="text">Post</label><textarea id="text" name="text" required maxlength="5000"></textarea>
<label for="image">Image (optional)</label><input id="image" name="image" type="file" accept="image/jpeg,image/png,image/webp,image/gif,image/bmp">
<label for="aspects">Aspects (optional, comma-separated; empty: found by the model)</label><input id="aspects" name="aspects" type="text">
<label><input id="chains" name="chains" type="checkbox" value="true"> reasoning chains (slow on a CPU) <span id="chains-why" class="hint"></span></label>
<button id="submit" type="submit">Analyze</button>
</form>
<div id="status"></div>
<div id="result" hidden><img id="preview" alt="the post's image" hidden><div id="output"></div></div>
<script>
const generator = {{GENERATOR}};
if (!generator) {
  document.getElementById("chains").disabled = true;
  document.getElementById("chains-why").textContent =
    "— not available: this model has no chain writer (a pipeline trained with a generator, e.g. configs/assistant_cpu.cfg, has one)";
}
const COLORS = {POS: "#3a9e3a", NEU: "#9a9a9a", NEG: "#d04848"};
function showError(message) {
  const status = document.getElementById("status");
  status.className = "error"; status.textContent = message;
  document.getElementById("output").innerHTML = "";
  document.getElementById("result").hidden = true;
}
function esc(s) { const d = document.createElement("div"); d.textContent = s == null ? "" : String(s); return d.innerHTML; }
function bars(scores) {
  return Object.entries(scores).map(([k, v]) =>
    `${esc(k)} <span class="bar" style="width:${Math.round(v * 80)}px;background:${COLORS[k] || "#7aa6d8"}"></span> ${v.toFixed(2)}`).join("<br>");
}
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("status");
  status.className = ""; status.textContent = "Analyzing…";
  let response, data;
  try {
    response = await fetch("/api/analyze", {method: "POST", body: new FormData(event.target)});
  } catch (err) {
    showError("The server could not be reached: is `serve` still running?"); return;
  }
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok || data === null) {
    showError((data && data.error) ? `Not analyzed: ${data.error}` : `Not analyzed: the server answered ${response.status} ${response.statusText}`);
    return;
  }
  status.textContent = "";
  const file = document.getElementById("image").files[0];
  const preview = document.getElementById("preview");
  if (file) { preview.src = URL.createObjectURL(file); preview.hidden = false; } else { preview.hidden = true; }
  let rows = data.aspects.map(a => `<tr><td>${esc(a.text)}</td><td>${esc(a.polarity)}</td><td>${bars(a.scores)}</td></tr>`).join("");
  let chains = data.aspects.filter(a => a.reasoning).map(a =>
    `<details><summary>why “${esc(a.text)}” is ${esc(a.polarity)}</summary><pre>${esc(a.reasoning)}</pre></details>`).join("");
  if (data.reasoning) { chains += `<details><summary>why the post is ${esc(data.sentiment)}</summary><pre>${esc(data.reasoning)}</pre></details>`; }
  document.getElementById("output").innerHTML =
    `<div id="highlighted">${data.html}</div>` +
    `<p><b>Post sentiment: ${esc(data.sentiment)}</b><br>${bars(data.sentiment_scores)}</p>` +
    (rows ? `<table id="aspects-table"><tr><th>aspect</th><th>polarity</th><th>probabilities</th></tr>${rows}</table>` : "<p>No aspects found.</p>") +
    chains + (data.image_error ? `<p class="error">image: ${esc(data.image_error)}</p>` : "");
  document.getElementById("result").hidden = false;
});
</script></body></html>
"""
