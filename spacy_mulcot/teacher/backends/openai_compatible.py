"""``mulcot.OpenAICompatible.v1``: any OpenAI-compatible chat endpoint (OpenAI, vLLM,
Ollama, llama.cpp's server, LM Studio…) through the maintained ``openai`` client.

Images go as base64 data URLs (``send_images``); for text-only models, set
``send_images = false`` and the image is described in words instead. Transient
failures (429, 5xx, timeouts, connection errors) are retried with exponential
backoff, waiting at least as long as the server's ``Retry-After`` says (up to
``max_retry_after`` seconds); other errors (400, 401, 404…) fail the request at once.
Credentials in ``base_url`` (``user:password@``, ``?api-key=…``) never reach a
message, a report or the cache: only the redacted URL is kept.
"""

import base64
import email.utils
import os
import random
import time
from typing import Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...extras import require
from .base import TeacherError, TeacherReply, TeacherRequest

SYSTEM = "You are a careful annotator of sentiment in social-media posts."


class OpenAICompatible:
    """One chat completion per request; ``max_concurrency`` requests may be in flight."""

    name = "openai-compatible"

    def __init__(
        self,
        model: str,
        base_url: Optional[str] = None,
        api_key_env: Optional[str] = "OPENAI_API_KEY",
        max_concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_tokens: int = 512,
        send_images: bool = True,
        system: Optional[str] = SYSTEM,
        max_retry_after: float = 120.0,
    ):
        openai = require("openai", "teacher", "mulcot.OpenAICompatible.v1")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        # As the openai client does: no base_url given → $OPENAI_BASE_URL, else OpenAI.
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not api_key and base_url is None:
            raise ValueError(
                f"The environment variable {api_key_env} is not set. Export your API key there, or point "
                "base_url at a local server (which needs no key)."
            )
        self._openai = openai
        # Our own retry loop (below) counts retries and backs off; the client's is off.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "no-key", timeout=timeout, max_retries=0)
        self.model = model
        #: For messages, reports and the cache key: credentials redacted.
        self.base_url = redact_url(base_url or "https://api.openai.com/v1")
        self.max_retry_after = max_retry_after
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.send_images = send_images
        self.system = system

    @property
    def sees_images(self) -> bool:
        return self.send_images

    def settings(self) -> dict:
        """What, besides the request, changes the reply (part of the cache key)."""
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "images": self.send_images,
            "system": self.system,
        }

    def _messages(self, request: TeacherRequest) -> list:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        if request.image is not None and self.send_images:
            url = f"data:{request.image_mime};base64," + base64.b64encode(request.image).decode("ascii")
            content = [{"type": "text", "text": request.prompt}, {"type": "image_url", "image_url": {"url": url}}]
        else:
            content = request.prompt
        messages.append({"role": "user", "content": content})
        return messages

    def complete(self, request: TeacherRequest) -> TeacherReply:
        openai = self._openai
        kwargs = {
            "model": self.model,
            "messages": self._messages(request),
            "max_tokens": self.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        retries = 0
        while True:
            try:
                response = self.client.chat.completions.create(**kwargs)
                break
            except (
                openai.RateLimitError,
                openai.APITimeoutError,
                openai.APIConnectionError,
                openai.InternalServerError,
            ) as e:
                transient = e
            except openai.APIStatusError as e:
                if e.status_code >= 500:
                    transient = e
                else:
                    raise TeacherError(
                        f"{self.base_url} refused the request ({e.status_code}): {_short(e)}", retries=retries
                    ) from e
            except (openai.APIResponseValidationError, ValueError) as e:
                # A 200 whose body is not a chat completion (invalid JSON, a proxy's page).
                raise _malformed(self.base_url, f"{type(e).__name__}: {_short(e)}", retries) from e
            if retries >= self.max_retries:
                raise TeacherError(
                    f"{self.base_url} failed {retries + 1} times ({type(transient).__name__}: {_short(transient)})",
                    transient=True,
                    retries=retries,
                ) from transient
            # Exponential backoff with jitter, and never shorter than the server asked.
            delay = self.backoff * (2**retries) * (0.5 + random.random())
            asked = retry_after(transient)
            if asked is not None:
                delay = max(delay, min(asked, self.max_retry_after))
            time.sleep(delay)
            retries += 1
        if not isinstance(response, openai.types.chat.ChatCompletion):
            raise _malformed(self.base_url, f"got {type(response).__name__} {_short(repr(response), 80)}", retries)
        if not response.choices or response.choices[0].message.content is None:
            raise TeacherError(f"{self.base_url} returned no text for the request", retries=retries)
        usage = response.usage
        return TeacherReply(
            text=response.choices[0].message.content,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            retries=retries,
        )


def _malformed(base_url: str, what: str, retries: int) -> TeacherError:
    """A reply that is not a chat completion: the server (or a proxy before it) is
    misbehaving, so it counts as transient (enough in a row stop the run)."""
    return TeacherError(
        f"{base_url} answered with something that is not a chat completion ({what}); is base_url an "
        "OpenAI-compatible /v1 endpoint?",
        transient=True,
        retries=retries,
    )


#: Query parameters whose values are secrets (matched case-insensitively, by substring).
_SECRET_PARAMS = ("key", "token", "secret", "password", "signature", "sig", "auth", "credential")


def redact_url(url: str) -> str:
    """``url`` without its secrets: the password of ``user:password@`` and the values
    of query parameters that look like keys or tokens become ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = (user.split(":", 1)[0] + ":***" if ":" in user else "***") + "@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def retry_after(error: Exception) -> Optional[float]:
    """Seconds the server asked to wait (``Retry-After``: seconds or an HTTP date;
    ``retry-after-ms``), or None."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if email.utils.parsedate_tz(value) else None
        return max(0.0, when.timestamp() - time.time()) if when is not None else None


def _short(error: Exception, limit: int = 200) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "…"


#: Registered as ``mulcot.OpenAICompatible.v1``: the class itself, so its arguments are the config's.
openai_compatible_v1 = OpenAICompatible
