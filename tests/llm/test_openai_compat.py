"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (started in a
thread by each test); no client library is mocked and no traffic leaves loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragehr.errors import ConfigError, ModelNotFoundError
from ragehr.llm import openai_compat
from ragehr.llm.base import BackendError
from ragehr.llm.openai_compat import OpenAICompatBackend, _announce, is_local_url
from ragehr.tokens import EstimateCounter
from ragehr.types.generation import GenerationRequest, Message

SECRET_PROMPT = "Patient Jane Roe, MRN 0012345, was seen for chest pain on 2021-04-02."


class FakeServer:
    """A tiny chat-completions server. ``script`` holds (status, headers, body or None)
    responses to send in order before falling back to a canned 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[tuple[int, dict[str, str], dict | None]] = []
        self.delay = 0.0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                with server.lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    length = int(self.headers.get("Content-Length", 0))
                    body = json.loads(self.rfile.read(length))
                    with server.lock:
                        server.requests.append(body)
                        server.headers.append(dict(self.headers))
                        scripted = server.script.pop(0) if server.script else None
                    if server.delay:
                        time.sleep(server.delay)
                    if self.path != "/v1/chat/completions":
                        scripted = (404, {}, {"error": {"message": f"no route {self.path}"}})
                    if scripted is None:
                        n = len(body["messages"][-1]["content"])
                        scripted = (
                            200,
                            {},
                            {
                                "id": "x",
                                "object": "chat.completion",
                                "model": body["model"],
                                "choices": [
                                    {
                                        "index": 0,
                                        "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": f"len={n}"},
                                    }
                                ],
                                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
                            },
                        )
                    status, headers, payload = scripted
                    data = json.dumps(payload).encode() if payload is not None else b""
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def make(server: FakeServer) -> Callable[..., OpenAICompatBackend]:
    def _make(**kw: object) -> OpenAICompatBackend:
        kw.setdefault("backoff", 0.01)
        # a fresh base_url per backend keeps the process-wide semaphores of tests apart
        return OpenAICompatBackend(base_url=kw.pop("base_url", server.base_url), model="test-model", **kw)  # type: ignore[arg-type]

    return _make


def _request(content: str = SECRET_PROMPT, **kw: object) -> GenerationRequest:
    return GenerationRequest(
        messages=(Message(role="system", content="Be brief."), Message(role="user", content=content)),
        question=content,
        **kw,  # type: ignore[arg-type]
    )


def test_success_and_usage(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    gen = make().generate(_request(max_tokens=32, temperature=0.2, seed=7, stop=("\n\n",)))
    assert gen.text == f"len={len(SECRET_PROMPT)}"
    assert (gen.prompt_tokens, gen.completion_tokens) == (11, 3)
    assert gen.backend == "openai" and gen.model == "test-model" and gen.seconds > 0
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["max_tokens"] == 32
    assert sent["temperature"] == 0.2 and sent["seed"] == 7 and sent["stop"] == ["\n\n"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_missing_usage_is_none(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.append((200, {}, {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}))
    gen = make().generate(_request())
    assert gen.text == "ok" and gen.prompt_tokens is None and gen.completion_tokens is None


def test_malformed_response(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.append((200, {}, {"choices": []}))
    with pytest.raises(BackendError, match="malformed"):
        make().generate(_request())


def test_authorization_header(
    server: FakeServer, make: Callable[..., OpenAICompatBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGEHR_TEST_KEY", raising=False)
    backend = make(api_key_env="RAGEHR_TEST_KEY")
    backend.generate(_request())
    assert "Authorization" not in server.headers[-1]
    monkeypatch.setenv("RAGEHR_TEST_KEY", "sk-test-123")
    backend.generate(_request())
    assert server.headers[-1]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(backend)


def test_503_then_200_is_retried(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.append((503, {}, {"error": {"message": "loading model"}}))
    gen = make(max_retries=2).generate(_request())
    assert gen.text.startswith("len=") and len(server.requests) == 2


def test_429_with_retry_after_zero_is_retried(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.append((429, {"Retry-After": "0"}, {"error": "rate limited"}))
    start = time.perf_counter()
    gen = make(max_retries=1, backoff=5.0).generate(_request())  # Retry-After: 0 beats the backoff
    assert gen.text.startswith("len=") and len(server.requests) == 2
    assert time.perf_counter() - start < 2.0


def test_400_fails_at_once_without_prompt_text(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.append((400, {}, {"error": {"message": "max_tokens is too large:\n  4096 > 2048 " + "x" * 500}}))
    with pytest.raises(BackendError) as info:
        make(max_retries=3).generate(_request())
    msg = str(info.value)
    assert len(server.requests) == 1
    assert "\n" not in msg and "HTTP 400" in msg and "max_tokens is too large" in msg
    assert "Jane Roe" not in msg and SECRET_PROMPT not in msg
    assert len(msg) < 320


def test_server_message_quoting_the_prompt_is_withheld(
    server: FakeServer, make: Callable[..., OpenAICompatBackend]
) -> None:
    server.script.append((422, {}, {"detail": f"cannot parse message: {SECRET_PROMPT}"}))
    with pytest.raises(BackendError) as info:
        make().generate(_request())
    assert "HTTP 422" in str(info.value) and "withheld" in str(info.value)
    assert "Jane Roe" not in str(info.value) and "0012345" not in str(info.value)


def test_5xx_exhausts_retries(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.script.extend([(500, {}, {"error": "boom"})] * 3)
    with pytest.raises(BackendError, match=r"HTTP 500: boom \(after 3 attempts\)"):
        make(max_retries=2).generate(_request())
    assert len(server.requests) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_fails_fast(make: Callable[..., OpenAICompatBackend]) -> None:
    backend = make(base_url=f"http://127.0.0.1:{_free_port()}/v1", max_retries=2)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"cannot connect .*after 3 attempts") as info:
        backend.generate(_request())
    assert time.perf_counter() - start < 2.0
    assert "Jane" not in str(info.value)


def test_timeout_is_honoured(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.delay = 1.5
    start = time.perf_counter()
    with pytest.raises(BackendError, match="timed out"):
        make(timeout=0.3, max_retries=1).generate(_request())
    assert time.perf_counter() - start < 1.4  # two attempts of 0.3 s, not the server's 1.5 s


def test_concurrency_limit(server: FakeServer, make: Callable[..., OpenAICompatBackend]) -> None:
    server.delay = 0.15
    a, b = make(concurrency=2), make(concurrency=2)  # two instances share one semaphore
    with ThreadPoolExecutor(6) as pool:
        gens = list(pool.map(lambda i: (a if i % 2 else b).generate(_request(f"q{i}")), range(6)))
    assert len(gens) == 6 and len(server.requests) == 6
    assert server.max_active <= 2


def test_nothing_connects_at_construction() -> None:
    backend = OpenAICompatBackend(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m")
    assert backend.url.endswith("/v1/chat/completions")


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        OpenAICompatBackend(base_url="file:///etc/passwd", model="m")
    with pytest.raises(ConfigError):
        OpenAICompatBackend(base_url="http://127.0.0.1:1/v1", model="m", concurrency=0)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://LOCALHOST/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://[::ffff:127.0.0.1]/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://192.168.1.2/v1", False),
        ("http://[2001:db8::1]/v1", False),
        ("http://localhost.evil.com/v1", False),
        ("http://128.0.0.1/v1", False),
        ("not a url", False),
    ],
)
def test_is_local_url(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_non_local_warning_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(openai_compat, "_announced", set())
    caplog.set_level(logging.WARNING, logger="ragehr.llm.openai_compat")
    assert _announce("http://127.0.0.1:8000/v1") is False
    assert _announce("https://user:pw@llm.example.org:8443/v1") is True
    assert _announce("https://llm.example.org/v1/other") is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["sending patient text to llm.example.org (a non-local endpoint you configured)"]


def test_token_counter(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1/v1"
    assert isinstance(OpenAICompatBackend(base_url=url, model="m").token_counter(), EstimateCounter)
    with pytest.raises(ModelNotFoundError, match="no Hugging Face tokenizer"):
        OpenAICompatBackend(base_url=url, model="m", tokenizer_path=tmp_path / "nope").token_counter()


@pytest.mark.models
def test_hf_token_counter_from_local_folder() -> None:
    from ragehr.embeddings import minilm_folder

    folder = minilm_folder()
    counter = OpenAICompatBackend(base_url="http://127.0.0.1:1/v1", model="m", tokenizer_path=folder).token_counter()
    assert counter.name == f"hf:{folder.name}"
    assert counter.count("hello world") == 2
    assert counter.count("") == 0
