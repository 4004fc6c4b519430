"""The web app without a browser (FastAPI's TestClient): the JSON API against the CLI's JSON,
auth, patient-id validation, limits, errors, streaming, concurrency and the access log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ragehr.cli import app as cli_app
from ragehr.config import LLMConfig, RagehrConfig
from ragehr.errors import ConfigError
from ragehr.llm.base import BackendError, LLMBackend
from ragehr.serve import is_loopback, resolve_token
from ragehr.serve.app import COOKIE, MAX_BODY_BYTES, create_app, session_value
from ragehr.serve.core import MAX_QUESTION_CHARS, ServeOptions, Service, _Backend
from ragehr.types import Generation, GenerationRequest

TOKEN = "s3cret-token-for-tests-0123"
Q = "What was the systolic blood pressure?"


def _client(index_dir, token=None, **opts) -> TestClient:
    opts.setdefault("backend", "extractive")
    opts.setdefault("cache_generations", False)
    return TestClient(create_app(ServeOptions(index_dir=index_dir, **opts), token=token))


@pytest.fixture(scope="module")
def client(serve_index_dir):
    with _client(serve_index_dir) as c:
        yield c


def _service(client: TestClient) -> Service:
    return client.app.app.state.service


def _cli_json(*args: str) -> dict:
    r = CliRunner().invoke(cli_app, list(args))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# -- the API mirrors the CLI ------------------------------------------------------------


def test_patients_lists_the_manifests(client, serve_index_dir):
    j = client.get("/api/patients").json()
    [p] = j["patients"]
    assert p["patient_id"] == "sample"
    assert p["first_time"].startswith("2018-10-08") and p["last_time"].startswith("2022-05-15")
    assert p["counts"]["events"] == 60 and p["counts"]["vital"] == 30
    # one name per thing: each patient is the `patients --json` row, plus counts by kind
    [row] = [
        json.loads(line)
        for line in CliRunner()
        .invoke(cli_app, ["patients", "--index-dir", str(serve_index_dir), "--json"])
        .stdout.splitlines()
    ]
    assert {k: p[k] for k in row} == row and row["n_events"] == 60
    assert j["default_backend"] == "extractive" and "fake" in j["backends"]


@pytest.mark.parametrize("strategy", ["rag", "recent", "visit-bm25"])
def test_ask_is_ask_json(client, serve_index_dir, strategy):
    body = {"patient_id": "sample", "question": Q, "strategy": strategy, "budget": 2048, "answer": "generated"}
    got = client.post("/api/ask", json=body).json()
    want = _cli_json(
        "ask",
        Q,
        "--patient",
        "sample",
        "--strategy",
        strategy,
        "--budget",
        "2048",
        "--backend",
        "extractive",
        "--no-cache",
        "--index-dir",
        str(serve_index_dir),
        "--json",
        "--answer",
        "generated",
    )
    for d in (got, want):
        d.pop("timings")
    assert got == want
    assert got["citations"] and got["answer"].startswith("Relevant evidence")


def test_computed_answer_over_http_is_ask_json(client, serve_index_dir):
    """The config's default (answer: auto) computes it; the HTTP API says so as the CLI does."""
    got = client.post("/api/ask", json={"patient_id": "sample", "question": Q, "budget": 2048}).json()
    want = _cli_json(
        "ask",
        Q,
        "--patient",
        "sample",
        "--budget",
        "2048",
        "--backend",
        "extractive",
        "--no-cache",
        "--index-dir",
        str(serve_index_dir),
        "--json",
    )
    for d in (got, want):
        d.pop("timings")
    assert got == want
    assert got["answered_by"] == "computed" and got["answer_reason"] and got["grounded"] and got["citations"]
    bad = client.post("/api/ask", json={"patient_id": "sample", "question": Q, "answer": "guess"})
    assert bad.status_code == 422


def test_context_is_context_json(client, serve_index_dir):
    got = client.get("/api/context", params={"patient_id": "sample", "question": Q, "strategy": "rag", "budget": 1024})
    want = _cli_json(
        "context",
        Q,
        "--patient",
        "sample",
        "--budget",
        "1024",
        "--backend",
        "extractive",
        "--index-dir",
        str(serve_index_dir),
        "--json",
    )
    assert got.status_code == 200 and got.json() == want


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/ask", "/api/patients", "/api/context", "/api/ask/stream"} <= set(spec["paths"])
    body = spec["components"]["schemas"]["AskBody"]
    assert body["properties"]["question"]["maxLength"] == MAX_QUESTION_CHARS
    assert "answer" in spec["components"]["schemas"]["AskOut"]["properties"]


def _cli_options(command: str) -> set[str]:
    """The field names of a CLI command's options: each option's first flag, as a field name."""
    import typer.main

    cmd = typer.main.get_command(cli_app).commands[command]
    return {p.opts[0].lstrip("-").replace("-", "_") if p.opts[0].startswith("-") else p.name for p in cmd.params}


def test_openapi_fields_are_the_cli_fields(client, serve_index_dir):
    """One name per thing: the HTTP API's request fields are ``ask``'s option names and its
    response fields are exactly the keys ``ask --json`` / ``context --json`` print."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    body = set(schemas["AskBody"]["properties"])
    assert body == {
        "patient_id",
        "question",
        "strategy",
        "budget",
        "backend",
        "retriever",
        "order",
        "max_new_tokens",
        "answer",
    }
    assert body <= _cli_options("ask")
    params = {p["name"] for p in spec["paths"]["/api/context"]["get"]["parameters"]}
    assert params <= _cli_options("context") and "patient_id" in params
    ask_json = _cli_json(
        "ask",
        Q,
        "--patient-id",
        "sample",
        "--backend",
        "extractive",
        "--no-cache",
        "--index-dir",
        str(serve_index_dir),
        "--json",
    )
    assert set(schemas["AskOut"]["properties"]) == set(ask_json)
    ctx_json = _cli_json(
        "context", Q, "--patient-id", "sample", "--index-dir", str(serve_index_dir), "--backend", "extractive", "--json"
    )
    assert set(schemas["ContextOut"]["properties"]) == set(ctx_json)
    assert set(schemas["ChunkOut"]["properties"]) == set(ctx_json["chunks"][0])


def test_the_old_patient_field_is_refused_by_name(client):
    for body in ({"patient": "sample", "question": Q}, {"patient": "sample", "patient_id": "sample", "question": Q}):
        r = client.post("/api/ask", json=body)
        assert r.status_code == 422, r.text
        assert "'patient' is not a field: use 'patient_id'" in r.json()["error"]
    r = client.post("/api/ask/stream", json={"patient": "sample", "question": Q})
    assert r.status_code == 422 and "use 'patient_id'" in r.json()["error"]
    for params in ({"patient": "sample", "question": Q}, {"patient": "sample", "patient_id": "sample", "question": Q}):
        r = client.get("/api/context", params=params)
        assert r.status_code == 422, r.text
        assert "'patient' is not a field: use 'patient_id'" in r.json()["error"]
    assert client.get("/api/context", params={"patient_id": "sample", "question": Q}).status_code == 200


# -- pages ------------------------------------------------------------------------------


def test_pages_render_and_escape(client):
    home = client.get("/")
    assert home.status_code == 200 and 'href="/patient?id=sample"' in home.text
    page = client.get("/patient", params={"id": "sample"})
    assert page.status_code == 200 and '<svg class="timeline"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # the form's no-JavaScript path answers in one page; the question is escaped
    q = "<script>alert(1)</script> systolic blood pressure"
    r = client.post(
        "/patient?id=sample", data={"question": q, "strategy": "rag", "budget": "2048", "backend": "extractive"}
    )
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert 'class="cite"' in r.text and 'class="ev cited"' in r.text and 'id="ev-1"' in r.text


def test_static_assets_are_local(client):
    for path in ("/static/app.js", "/static/app.css"):
        r = client.get(path)
        assert r.status_code == 200 and len(r.content) > 500
    page = client.get("/patient", params={"id": "sample"}).text
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


# -- safety -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pid", ["../sample", "sample/..", "/etc/passwd", "..", ".", "sample\x00", "SAMPLE", "%2e%2e%2fsample", "sample "]
)
def test_patient_ids_are_checked_against_the_manifests(client, pid, monkeypatch):
    import ragehr.serve.core as core

    opened = []
    monkeypatch.setattr(core, "load_patient_index", lambda *a, **k: opened.append(a) or pytest.fail("opened"))
    assert client.get("/patient", params={"id": pid}).status_code == 404
    r = client.post("/api/ask", json={"patient_id": pid, "question": Q})
    assert r.status_code == 404 and r.json()["error"].startswith("no indexed patient")
    assert client.get("/api/context", params={"patient_id": pid, "question": Q}).status_code == 404
    assert opened == []


def test_limits(client):
    long_q = "x" * (MAX_QUESTION_CHARS + 1)
    r = client.post("/api/ask", json={"patient_id": "sample", "question": long_q})
    assert r.status_code == 422 and "question" in r.json()["error"]
    assert client.get("/api/context", params={"patient_id": "sample", "question": long_q}).status_code == 422
    r = client.post("/patient?id=sample", data={"question": long_q, "backend": "extractive"})
    assert r.status_code == 400 and "longer than 2000 characters" in r.text
    big = json.dumps({"patient_id": "sample", "question": Q, "pad": "y" * MAX_BODY_BYTES})
    r = client.post("/api/ask", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # no Content-Length (a chunked body): counted as it arrives

    def chunks():
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"y" * 4096

    r = client.post("/api/ask", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    for bad in ({"budget": 10}, {"budget": 10**9}, {"strategy": "everything"}, {"max_new_tokens": 0}, {"extra": 1}):
        r = client.post("/api/ask", json={"patient_id": "sample", "question": Q, **bad})
        assert r.status_code == 422, bad
    r = client.post("/api/ask", json={"patient_id": "sample", "question": Q, "backend": "nonesuch"})
    assert r.status_code == 400 and "backend must be one of" in r.json()["error"]
    r = client.post("/api/ask", json={"patient_id": "sample", "question": "   "})
    assert r.status_code == 400 and r.json()["error"] == "the question is empty"


def test_token_is_required_everywhere(serve_index_dir):
    with _client(serve_index_dir, token=TOKEN) as c:
        for path in ("/", "/patient?id=sample", "/static/app.css"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        for path in ("/api/patients", "/openapi.json", "/api/context?patient_id=sample&question=x"):
            assert c.get(path).status_code == 401
        assert c.post("/api/ask", json={"patient_id": "sample", "question": Q}).status_code == 401
        assert c.post("/patient?id=sample", data={"question": Q}).status_code == 401
        assert c.get("/api/patients", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        c.cookies.set(COOKIE, TOKEN)
        assert c.get("/api/patients").status_code == 401  # the cookie is not the token
        c.cookies.clear()
        ok = c.get("/api/patients", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["patients"]
        # the login form sets a cookie derived from the token, then every page opens
        assert c.get("/login").status_code == 200
        bad = c.post("/login", data={"token": "nope", "next": "/"}, follow_redirects=False)
        assert bad.status_code == 401 and COOKIE not in bad.cookies
        r = c.post("/login", data={"token": TOKEN, "next": "https://evil.example/"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.cookies[COOKIE]
        assert cookie == session_value(TOKEN) and TOKEN not in cookie
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        c.cookies.set(COOKIE, cookie)
        assert c.get("/patient", params={"id": "sample"}).status_code == 200
    # a link carrying ?token= once: the cookie is set and the token leaves the URL
    with _client(serve_index_dir, token=TOKEN) as c:
        r = c.get(f"/patient?id=sample&token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/patient?id=sample"
        assert r.cookies[COOKIE] == session_value(TOKEN)


def test_non_loopback_needs_a_token(monkeypatch):
    monkeypatch.delenv("RAGEHR_TOKEN", raising=False)
    for host in ("127.0.0.1", "::1", "localhost", "127.1.2.3", "[::1]"):
        assert is_loopback(host), host
        assert resolve_token(host, None) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org", "10.0.0.1"):
        assert not is_loopback(host), host
        with pytest.raises(ConfigError, match="give --token"):
            resolve_token(host, None)
    assert resolve_token("0.0.0.0", TOKEN) == TOKEN
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_token("0.0.0.0", "short")
    monkeypatch.setenv("RAGEHR_TOKEN", TOKEN)
    assert resolve_token("0.0.0.0", None) == TOKEN


def test_serve_refuses_a_public_host_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGEHR_TOKEN", raising=False)
    r = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--index-dir", str(tmp_path)])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("ragehr: error: --host 0.0.0.0 accepts connections from other machines")
    assert len(r.stderr.strip().splitlines()) == 1


# -- errors -----------------------------------------------------------------------------


class _Scripted(LLMBackend):
    """A test backend: runs ``action(request, on_token)``; streams when asked to."""

    name = "scripted"
    model = "scripted"
    context_window = 8192

    def __init__(self, action: Callable, streaming: bool = False, thread_safe: bool = True) -> None:
        self.action = action
        self.supports_streaming = streaming
        self.thread_safe = thread_safe

    def _generate(self, request: GenerationRequest, on_token=None) -> Generation:
        return Generation(text=self.action(request, on_token), backend="", model="")


def _use_backend(monkeypatch, service: Service, backend: LLMBackend, lock: threading.Lock | None = None) -> None:
    """Answer with ``backend`` (the generated path: the computed one would not call it)."""
    from dataclasses import replace

    monkeypatch.setattr(service, "backend", lambda name, spec: _Backend(backend, lock))
    spec = service.spec
    monkeypatch.setattr(service, "spec", lambda p: replace(spec(p), answer="generated"))


def test_a_failing_backend_is_one_clear_message(client, monkeypatch, caplog):
    def fail(request, on_token):
        raise BackendError("the model server at http://127.0.0.1:9 is unreachable")

    _use_backend(monkeypatch, _service(client), _Scripted(fail))
    r = client.post("/api/ask", json={"patient_id": "sample", "question": Q})
    assert r.status_code == 502 and r.json() == {"error": "the model server at http://127.0.0.1:9 is unreachable"}
    r = client.post("/patient?id=sample", data={"question": Q})
    assert r.status_code == 502 and "is unreachable</div>" in r.text and "Traceback" not in r.text
    r = client.post("/api/ask/stream", json={"patient_id": "sample", "question": Q})
    assert r.status_code == 200
    assert (
        'event: error\ndata: {"error": "the model server at http://127.0.0.1:9 is unreachable", "status": 502}'
        in r.text
    )


def test_a_bug_says_internal_error_without_patient_text(client, monkeypatch, caplog):
    def bug(request, on_token):
        raise ValueError(f"cannot parse {request.question!r} / {request.evidence[0].text!r}")

    _use_backend(monkeypatch, _service(client), _Scripted(bug))
    with caplog.at_level(logging.INFO):
        r = client.post("/api/ask", json={"patient_id": "sample", "question": Q})
        s = client.post("/api/ask/stream", json={"patient_id": "sample", "question": Q})
    assert r.status_code == 500 and r.json()["error"].startswith("internal error (ValueError)")
    assert "internal error (ValueError)" in s.text and "systolic" not in s.text.lower()
    logged = " ".join(rec.getMessage() for rec in caplog.records if rec.levelno > logging.DEBUG)
    assert "ValueError" in logged and "systolic" not in logged.lower() and "sample" not in logged


def test_the_access_log_names_no_patient_or_question(client, caplog):
    with caplog.at_level(logging.INFO, logger="ragehr.serve.access"):
        client.get("/patient", params={"id": "sample"})
        client.get("/api/context", params={"patient_id": "sample", "question": "hemoglobin a1c"})
        client.post("/api/ask", json={"patient_id": "sample", "question": "hemoglobin a1c"})
    lines = [r.getMessage() for r in caplog.records if r.name == "ragehr.serve.access"]
    assert lines[0].startswith("GET /patient 200") and lines[2].startswith("POST /api/ask 200")
    assert not any("sample" in x or "hemoglobin" in x or "?" in x for x in lines)


# -- streaming and concurrency ----------------------------------------------------------


def _events(text: str) -> list[tuple[str, object]]:
    out = []
    for block in text.split("\n\n"):
        lines = [x for x in block.splitlines() if not x.startswith(":")]
        if lines:
            out.append((lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: "))))
    return out


def test_tokens_stream_before_the_result(client, monkeypatch):
    pieces = ["The systolic ", "pressure was ", "130 [1]."]

    def stream(request, on_token):
        for p in pieces:
            on_token(p)
        return "".join(pieces)

    _use_backend(monkeypatch, _service(client), _Scripted(stream, streaming=True))
    r = client.post("/api/ask/stream", json={"patient_id": "sample", "question": Q})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert [e for e, _ in events] == ["token", "token", "token", "result"]
    assert [d for _, d in events[:3]] == pieces
    result = events[-1][1]
    assert result["result"]["answer"] == "".join(pieces)
    assert 'href="#ev-1"' in result["html"]["answer"] and 'id="tl-ev-' in result["html"]["timeline"]


def test_unsupported_figures_are_marked_on_the_page(client, monkeypatch):
    _use_backend(monkeypatch, _service(client), _Scripted(lambda r, t: "Systolic 999 on 2031-02-03 [1], see [42]."))
    r = client.post("/api/ask/stream", json={"patient_id": "sample", "question": Q})
    result = _events(r.text)[-1][1]
    assert set(result["result"]["unsupported"]) == {"999", "2031-02-03"}
    html = result["html"]["answer"]
    assert '<mark class="unsupported" title="not found in the cited evidence: do not rely on it">999</mark>' in html
    assert ">2031-02-03</mark>" in html
    assert 'class="cite unknown"' in html and "[42]" in html


def test_a_slow_generation_does_not_block_other_requests(client, monkeypatch):
    release = threading.Event()
    started = threading.Event()

    def slow(request, on_token):
        if request.question == "slow one":
            started.set()
            assert release.wait(30)
        return "done"

    _use_backend(monkeypatch, _service(client), _Scripted(slow))
    results: dict[str, int] = {}
    t = threading.Thread(
        target=lambda: results.setdefault(
            "slow", client.post("/api/ask", json={"patient_id": "sample", "question": "slow one"}).status_code
        )
    )
    t.start()
    try:
        assert started.wait(30)
        assert client.get("/api/patients").status_code == 200
        assert client.post("/api/ask", json={"patient_id": "sample", "question": Q}).json()["answer"] == "done"
        assert "slow" not in results
    finally:
        release.set()
        t.join(30)
    assert results["slow"] == 200


def test_a_backend_that_is_not_thread_safe_runs_one_question_at_a_time(serve_index_dir):
    """Service.backend gives such a backend a lock; questions still run on worker threads."""
    from ragehr.serve import core

    active, peak = [0], [0]
    guard = threading.Lock()

    def tracked(request, on_token):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with guard:
            active[0] -= 1
        return "ok"

    service = Service(ServeOptions(index_dir=serve_index_dir, backend="fake", cache_generations=False))
    unsafe = _Scripted(tracked, thread_safe=False)
    orig = core.backend_from_config
    core.backend_from_config = lambda *a, **k: unsafe
    try:
        from ragehr.serve.core import AskParams

        threads = [
            threading.Thread(
                target=service.ask,
                args=(AskParams(patient_id="sample", question=Q, backend="fake", answer="generated"),),
            )
            for _ in range(4)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    finally:
        core.backend_from_config = orig
    assert peak[0] == 1
    # a thread-safe backend is not serialised
    be = Service(ServeOptions(index_dir=serve_index_dir, backend="extractive")).backend(
        "extractive", service.spec(AskParams("sample", Q))
    )
    assert be.lock is None


def test_caches_are_bounded(serve_index_dir):
    service = Service(
        ServeOptions(index_dir=serve_index_dir, backend="extractive", max_backends=2, cache_generations=False)
    )
    from ragehr.serve.core import AskParams

    for budget in (1024, 2048, 4096, 8192):
        service.backend("extractive", service.spec(AskParams("sample", Q, budget=budget)))
    assert len(service._backends) == 2
    a = service.index("sample", need_dense=False)
    assert service.index("sample", need_dense=False) is a
    dense = service.index("sample", need_dense=True)
    assert dense is not a and dense.dense is not None
    assert service.index("sample", need_dense=False) is dense  # the dense one serves both
    small = Service(ServeOptions(index_dir=serve_index_dir, backend="extractive", max_indexes=1))
    first = small.index("sample", need_dense=True)
    small.index("sample", need_dense=False)
    assert len(small._indexes) == 1 and small.index("sample", need_dense=True) is first


def test_options_are_checked(serve_index_dir):
    with pytest.raises(ConfigError, match="unknown backend"):
        Service(ServeOptions(index_dir=serve_index_dir, backends=("extractive", "gpt")))
    with pytest.raises(ConfigError, match="not among the offered"):
        Service(ServeOptions(index_dir=serve_index_dir, backend="local", backends=("extractive",)))
    # the config's backend when offered, else the first offered
    cfg = RagehrConfig(llm=LLMConfig(backend="local"))
    assert (
        ServeOptions(index_dir=serve_index_dir, config=cfg, backends=("fake", "extractive")).default_backend == "fake"
    )


def test_without_a_token_only_loopback_names_are_served(serve_index_dir):
    """Against DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends that Host."""
    app = create_app(ServeOptions(index_dir=serve_index_dir, backend="extractive"), loopback_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/patients").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1", "LOCALHOST"):
            assert c.get("/api/patients", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "10.0.0.2:8000", "127.0.0.1.evil.example", ""):
            r = c.get("/api/patients", headers={"host": host})
            assert r.status_code == 421 and "localhost" in r.json()["error"], host


def test_the_page_marks_a_computed_answer_and_charts_a_series(client):
    r = client.post("/patient?id=sample", data={"question": "How has the systolic blood pressure changed over time?"})
    assert r.status_code == 200
    html = r.text
    assert 'class="computed-badge"' in html and "structured events" in html
    assert '<figure class="answer-chart"><svg' in html and 'class="cited"' in html
    assert html.index("computed-badge") < html.index("answer-text")  # the computed mark comes first
    r = client.post("/patient?id=sample", data={"question": "What did the neurologist recommend?"})
    assert r.status_code == 200 and 'class="computed-badge"' not in r.text
