"""A backend for any server that speaks the OpenAI chat-completions protocol (vLLM,
llama.cpp's ``llama-server``, Ollama, TGI, a hosted API), over the standard library only.

Nothing connects at construction. Each :meth:`~ragehr.llm.base.LLMBackend.generate` call
POSTs ``{base_url}/chat/completions``; connection errors, timeouts, HTTP 429 and 5xx are
retried with exponential backoff (``backoff * 2**attempt`` seconds, or the server's
``Retry-After`` when it sends one, capped at :data:`MAX_RETRY_WAIT`); any other HTTP error
fails at once. Errors are one line naming the host and the status, never the prompt; the
API key is sent as a Bearer header when its environment variable is set and never logged.

Patient text leaves the machine only if you configure a non-loopback ``base_url``; the first
request to each such host in a process logs a WARNING naming the host. Loopback requests
bypass any proxy set in the environment; HTTP redirects are never followed.

Concurrency: ``concurrency`` (default 4) is this backend's
:attr:`~ragehr.llm.base.LLMBackend.concurrency`; batch mode (:mod:`ragehr.pipeline.batch`) and
the eval runner keep that many requests in flight from a thread pool, and a per-URL semaphore
holds every thread of the process to it (servers such as vLLM, llama.cpp's server and Ollama
batch concurrent requests). ``timeout`` bounds each attempt's every blocking socket operation;
a request that still fails after its retries raises for that question only.

This module does not stream, does not call tools or functions, and does not count the chat
template's own tokens (see :meth:`OpenAICompatBackend.token_counter`).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import Any

from ragehr.errors import ConfigError, ModelNotFoundError
from ragehr.llm.base import BackendError, LLMBackend
from ragehr.tokens import EstimateCounter, TokenCounter
from ragehr.types.generation import Generation, GenerationRequest

__all__ = ["MAX_RETRY_WAIT", "HFTokenizerCounter", "OpenAICompatBackend", "is_local_url"]

log = logging.getLogger(__name__)

MAX_RETRY_WAIT = 30.0
"""The longest single wait between attempts, whatever ``Retry-After`` asks for (seconds)."""

_MAX_SERVER_MESSAGE = 200
_QUOTE_WINDOW = 24

_announced: set[str] = set()
_announce_lock = threading.Lock()

_semaphores: dict[str, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine: ``localhost`` or a loopback address
    (127.0.0.0/8, ``::1``, or an IPv4-mapped loopback). Other host names count as non-local
    (nothing is resolved)."""
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _announce(url: str) -> bool:
    """Log, once per host and process, that patient text is about to go to a non-local
    host. Returns whether it logged."""
    if is_local_url(url):
        return False
    host = urllib.parse.urlsplit(url).hostname or "?"
    with _announce_lock:
        if host in _announced:
            return False
        _announced.add(host)
    log.warning("sending patient text to %s (a non-local endpoint you configured)", host)
    return True


def _semaphore_for(base_url: str, concurrency: int) -> threading.BoundedSemaphore:
    """The one semaphore of ``base_url`` in this process; its size is the ``concurrency`` of
    the first backend created for that URL."""
    with _semaphores_lock:
        sem = _semaphores.get(base_url)
        if sem is None:
            sem = _semaphores[base_url] = threading.BoundedSemaphore(concurrency)
        return sem


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx status


def _one_line(text: str, limit: int = _MAX_SERVER_MESSAGE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _quotes_prompt(message: str, request: GenerationRequest) -> bool:
    """Whether ``message`` holds any stretch of prompt text long enough to matter."""
    texts = [m.content for m in request.messages]
    texts.append(request.question)
    flat_texts = [" ".join(t.split()) for t in texts]
    if len(message) < _QUOTE_WINDOW:
        return any(message and message in t for t in flat_texts)
    for i in range(len(message) - _QUOTE_WINDOW + 1):
        window = message[i : i + _QUOTE_WINDOW]
        if any(window in t for t in flat_texts):
            return True
    return False


def _server_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")
    if isinstance(doc, dict):
        err = doc.get("error", doc.get("detail", doc.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return err if isinstance(err, str) else json.dumps(err)
    return json.dumps(doc)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HFTokenizerCounter:
    """Counts tokens with a Hugging Face tokenizer read from a local folder (loaded lazily,
    with ``local_files_only=True``; special tokens are not added)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.name = f"hf:{self.folder.name}"
        self._tok: Any = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> Any:
        with self._lock:
            if self._tok is None:
                try:
                    from transformers import AutoTokenizer
                except ImportError as exc:
                    raise ModelNotFoundError(
                        f"transformers not installed, needed for the tokenizer in {self.folder}: "
                        "pip install 'ragehr[retrieval]'"
                    ) from exc
                try:
                    self._tok = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ModelNotFoundError(
                        f"cannot load a tokenizer from {self.folder}: {type(exc).__name__}"
                    ) from exc
            return self._tok

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer().encode(text, add_special_tokens=False))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class OpenAICompatBackend(LLMBackend):
    """A chat model behind an OpenAI-compatible HTTP endpoint.

    ``base_url`` ends before ``/chat/completions`` (e.g. ``http://127.0.0.1:8000/v1``).
    ``timeout`` is the socket timeout of each attempt (seconds, per blocking operation);
    ``max_retries`` is the number of attempts after the first. ``concurrency`` bounds the
    simultaneous requests to one ``base_url`` across every backend instance of the process.
    ``tokenizer_path``: a local folder holding the model's Hugging Face tokenizer; without it
    token counts are the conservative :class:`~ragehr.tokens.EstimateCounter`."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        concurrency: int = 4,
        context_window: int = 8192,
        tokenizer_path: str | Path | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"openai base_url must be an http(s) URL with a host, got {base_url!r}")
        if not model:
            raise ConfigError("the openai backend needs a model name")
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0 or context_window < 1:
            raise ConfigError(
                "openai backend: concurrency and context_window must be >= 1, max_retries and backoff >= 0, timeout > 0"
            )
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.host = parts.hostname
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.concurrency = int(concurrency)
        self.context_window = int(context_window)
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._counter: TokenCounter | None = None
        self._semaphore = _semaphore_for(self.base_url, self.concurrency)
        handlers: list[Any] = [_NoRedirect()]
        if is_local_url(self.base_url):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def token_counter(self) -> TokenCounter:
        """The Hugging Face tokenizer in ``tokenizer_path`` (``hf:<folder name>``) when given,
        else :class:`~ragehr.tokens.EstimateCounter`. A ``tokenizer_path`` that is not a
        folder with tokenizer files raises :class:`~ragehr.errors.ModelNotFoundError`."""
        if self._counter is None:
            if self.tokenizer_path is None:
                self._counter = EstimateCounter()
            else:
                p = self.tokenizer_path
                if not p.is_dir() or not any((p / f).is_file() for f in _TOKENIZER_FILES):
                    raise ModelNotFoundError(f"no Hugging Face tokenizer in {p}")
                self._counter = HFTokenizerCounter(p)
        return self._counter

    def params(self) -> dict[str, Any]:
        return {"base_url": self.base_url}

    def _body(self, request: GenerationRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _fail(self, problem: str) -> BackendError:
        return BackendError(f"openai backend ({self.host}, model {self.model}): {problem}")

    def _server_problem(self, status: int, body: bytes, request: GenerationRequest) -> str:
        message = _one_line(_server_message(body))
        if message and _quotes_prompt(message, request):
            message = "<server message withheld: it quotes the prompt>"
        return f"HTTP {status}: {message}" if message else f"HTTP {status}"

    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        _announce(self.base_url)
        data = self._body(request)
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            wait: float | None = None
            with self._semaphore:
                req = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
                try:
                    with self._opener.open(req, timeout=self.timeout) as resp:
                        status = resp.status
                        raw = resp.read()
                except urllib.error.HTTPError as exc:
                    try:
                        body = exc.read()
                    except (OSError, HTTPException):
                        body = b""
                    last = self._server_problem(exc.code, body, request)
                    if exc.code != 429 and exc.code < 500:
                        raise self._fail(last) from None
                    wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                except urllib.error.URLError as exc:
                    reason = exc.reason
                    last = (
                        f"timed out after {self.timeout:g} s"
                        if isinstance(reason, TimeoutError)
                        else f"cannot connect ({type(reason).__name__ if isinstance(reason, BaseException) else reason})"
                    )
                except TimeoutError:
                    last = f"timed out after {self.timeout:g} s"
                except (OSError, HTTPException) as exc:
                    last = f"connection failed ({type(exc).__name__})"
                else:
                    return self._parse(status, raw)
            if attempt + 1 < attempts:
                delay = self.backoff * (2**attempt) if wait is None else wait
                delay = min(delay, MAX_RETRY_WAIT)
                log.info(
                    "openai backend (%s): attempt %d/%d failed (%s); retrying in %.2f s",
                    self.host,
                    attempt + 1,
                    attempts,
                    last.split(":", 1)[0],
                    delay,
                )
                time.sleep(delay)
        raise self._fail(f"{last} (after {attempts} attempt{'s' if attempts != 1 else ''})")

    def _parse(self, status: int, raw: bytes) -> Generation:
        try:
            doc = json.loads(raw)
            choice = doc["choices"][0]
            text = choice["message"]["content"]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._fail(f"HTTP {status}: malformed chat completion ({type(exc).__name__})") from None
        usage = doc.get("usage") if isinstance(doc, dict) else None
        usage = usage if isinstance(usage, dict) else {}

        def _int(v: Any) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return Generation(
            text=text,
            backend=self.name,
            model=self.model,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
        )

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(host={self.host!r}, model={self.model!r})"
