"""The web app: HTML pages, the JSON API and the token stream, on FastAPI.

The only module of ragehr that imports FastAPI/Starlette. Pages are rendered by
:mod:`ragehr.serve.views`; the work is done by :class:`ragehr.serve.core.Service` (the shared
``ContextSpec`` / ``backend_from_config`` / ``ask`` path) in worker threads, so one slow
generation never blocks other requests.

Safety (see :class:`Guard`): an optional bearer token required on every request (header or a
cookie set by ``/login`` or ``?token=`` once), a request-body limit, an access log that names
the method, path (never the query: ids and questions travel there or in bodies) and status,
and headers that keep the pages out of caches and frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from ragehr import __version__
from ragehr.api import PatientInfo
from ragehr.errors import ConfigError, IndexNotFoundError, ModelNotFoundError, RagehrError
from ragehr.llm.base import BackendError
from ragehr.pipeline.context import STRATEGIES, context_json
from ragehr.pipeline.spec import MAX_BUDGET, ORDERS, RETRIEVERS
from ragehr.serve import views
from ragehr.serve.core import BUDGET_CHOICES, MAX_QUESTION_CHARS, AskParams, ServeOptions, Service
from ragehr.serve.timeline import Timeline, build_timeline, evidence_caption, render_svg

log = logging.getLogger("ragehr.serve")
access_log = logging.getLogger("ragehr.serve.access")

MAX_BODY_BYTES = 64 * 1024
"""Larger request bodies are refused (413): a question and a few choices fit in far less."""
COOKIE = "ragehr_session"
_TIMELINE = "serve.timeline"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie never holds the token itself."""
    return hmac.new(token.encode("utf-8"), b"ragehr-session-v1", hashlib.sha256).hexdigest()


def _status(exc: RagehrError) -> int:
    if isinstance(exc, IndexNotFoundError):
        return 404
    if isinstance(exc, BackendError):
        return 502
    if isinstance(exc, ModelNotFoundError):
        return 503
    if exc.exit_code == 2:
        return 400
    return 500


def _message(exc: BaseException) -> str:
    if isinstance(exc, RagehrError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); the server log has details at DEBUG level"


def _log_unexpected(exc: BaseException) -> None:
    # Exception text and tracebacks may quote patient text: only the type above DEBUG.
    log.error("internal error: %s", type(exc).__name__)
    log.debug("traceback", exc_info=exc)


class Guard:
    """ASGI middleware: token check, body limit, access log, security headers."""

    def __init__(
        self, app: Any, token: str | None, max_body: int = MAX_BODY_BYTES, loopback_only: bool = False
    ) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.session = session_value(token) if token else None
        self.max_body = max_body

    def _authorized(self, scope: dict) -> bool:
        if self.token is None:
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return False
        got = cookie.get(COOKIE)
        return got is not None and hmac.compare_digest(got.value.encode(), self.session.encode())  # type: ignore[union-attr]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0}
        path = scope.get("path", "")
        method = scope.get("method", "")

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                    b"x-frame-options": b"DENY",
                    b"content-security-policy": _CSP.encode(),
                }
                if not path.startswith("/static/"):
                    extra[b"cache-control"] = b"no-store"
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapped)
        finally:
            access_log.info(
                "%s %s %s %.0fms", method, path, status["code"] or "-", (time.perf_counter() - start) * 1000
            )

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        host_value = _header(scope, b"host")
        if host_value and host_value.strip() and parse_host(host_value) is None:
            # e.g. ``127.0.0.1:1@evil.com``: never guess which part is the host
            await JSONResponse({"error": "malformed Host header"}, status_code=400)(scope, receive, send)
            return
        if self.loopback_only and not _loopback_host(scope):
            # A page on another site whose name was re-pointed at 127.0.0.1 (DNS rebinding)
            # would otherwise read this token-less server's answers.
            await JSONResponse({"error": "this server answers only to localhost names"}, status_code=421)(
                scope, receive, send
            )
            return
        if scope.get("method") not in _SAFE_METHODS:
            problem = cross_site(scope)
            if problem is not None:
                # a form on another site posting here with the user's browser (CSRF)
                await JSONResponse({"error": f"cross-site request refused ({problem})"}, status_code=403)(
                    scope, receive, send
                )
                return
        if self.token is not None and path != "/login" and not self._authorized(scope):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
            if scope.get("method") == "GET" and given and hmac.compare_digest(given.encode(), self.token.encode()):
                rest = {k: v for k, v in query.items() if k != "token"}
                target = path + ("?" + urlencode(rest, doseq=True) if rest else "")
                resp: Response = RedirectResponse(target, status_code=303)
                _set_cookie(resp, self.session, scope)  # type: ignore[arg-type]
                await resp(scope, receive, send)
                return
            if path.startswith("/api/") or path == "/openapi.json" or scope.get("method") != "GET":
                resp = JSONResponse(
                    {"error": "this server needs its token: Authorization: Bearer <token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                resp = RedirectResponse("/login?" + urlencode({"next": path}), status_code=303)
            await resp(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = self.max_body + 1
        if declared > self.max_body:
            await _too_large(scope, receive, send, self.max_body)
            return
        # Read the (small) body here, counting bytes as they arrive: a body without a
        # Content-Length is refused as soon as it passes the limit, never buffered whole.
        body = bytearray()
        more = scope.get("method") not in ("GET", "HEAD")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _too_large(scope, receive, send, self.max_body)
                return
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def receive_replayed() -> dict:
            return replay.pop() if replay else await receive()

        started = {"yes": False}

        async def send_tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                started["yes"] = True
            await send(message)

        try:
            await self.app(scope, receive_replayed, send_tracked)
        except Exception as exc:
            # Starlette re-raises a bug after its handler answered; stop it here so the server
            # does not log a traceback (its text may quote a patient's record).
            log.debug("after the error response", exc_info=exc)
            if not started["yes"]:
                _log_unexpected(exc)
                await JSONResponse({"error": _message(exc)}, status_code=500)(scope, receive, send)


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORT = {"http": 80, "https": 443}


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header (or an origin's ``host[:port]``) parsed strictly: a DNS name, an IPv4
    address or a bracketed IPv6 address, and an optional port. Anything else (``user@``,
    a path, two ports, spaces) is ``None``: never guessed at."""
    m = _HOST.fullmatch(value.strip())
    if m is None:
        return None
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port <= 65535:
        return None
    if m["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(m["v6"])), port
        except ValueError:
            return None
    return m["name"].rstrip(".").lower(), port


def cross_site(scope: dict) -> str | None:
    """Why a state-changing request comes from another site, or ``None`` when it does not.
    With an ``Origin`` header, it must be this server's own origin (scheme, host and port as
    the request's ``Host``); ``Origin: null`` is refused. Without one (curl, scripts, older
    clients), a browser's ``Sec-Fetch-Site`` other than ``same-origin``/``none`` is refused."""
    origin = _header(scope, b"origin")
    if origin is None:
        site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
        return f"Sec-Fetch-Site: {site}" if site in ("cross-site", "same-site") else None
    scheme = scope.get("scheme", "http")
    host = parse_host(_header(scope, b"host") or "")
    o_scheme, sep, o_rest = origin.strip().partition("://")
    theirs = parse_host(o_rest) if sep and "/" not in o_rest else None
    if host is None or theirs is None or o_scheme.lower() != scheme:
        return "Origin does not match this server"
    default = _DEFAULT_PORT.get(scheme)
    if (host[0], host[1] or default) != (theirs[0], theirs[1] or default):
        return "Origin does not match this server"
    return None


def _loopback_host(scope: dict) -> bool:
    parsed = parse_host(_header(scope, b"host") or "")
    if parsed is None:
        return False
    name = parsed[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _too_large(scope: dict, receive: Any, send: Any, limit: int) -> None:
    resp = JSONResponse({"error": f"request body larger than {limit} bytes"}, status_code=413)
    await resp(scope, receive, send)


def _set_cookie(resp: Any, value: str, scope: Mapping[str, Any]) -> None:
    resp.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=scope.get("scheme") == "https",
        path="/",
    )


# -- the API's shapes (documented in /openapi.json) -------------------------------------------

RENAMED = {"patient": "patient_id"}
"""Field names the API no longer takes, with the one it takes instead (the name every other
surface uses: ``ask --json``, batch JSONL, ``patients --json``, the Python API)."""


def _refuse_old_names(given: Any) -> None:
    old = sorted(k for k in RENAMED if k in given)
    if old:
        raise ValueError("; ".join(f"{k!r} is not a field: use {RENAMED[k]!r}" for k in old))


def _query_names(request: Request) -> None:
    """A query that uses an old field name is a 422 that names the new one."""
    try:
        _refuse_old_names(request.query_params)
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("query",), "msg": str(exc), "type": "value_error"}]) from None


# The choices come from the pipeline, so the schema follows when a strategy is added.
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
Retriever = Literal[RETRIEVERS]  # type: ignore[valid-type]
Order = Literal[ORDERS]  # type: ignore[valid-type]


class AskBody(BaseModel):
    """A question about one indexed patient. Options left out take the server's config."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _refuse_old_names(data)
        return data

    patient_id: str = Field(min_length=1, max_length=256, description="An id from GET /api/patients.")
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    strategy: Strategy | None = None
    budget: int | None = Field(None, ge=64, le=MAX_BUDGET, description="Context window in tokens (prompt + answer).")
    backend: str | None = Field(
        None, description="One of the backends the server offers (GET /api/patients lists them)."
    )
    retriever: Retriever | None = None
    order: Order | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    answer: Literal["auto", "computed", "generated"] | None = Field(
        None,
        description="auto: computed from the record's structured events where the question is a value, date, "
        "count, extreme, trend or list, else the backend; computed; or generated (the backend only).",
    )

    def params(self) -> AskParams:
        return AskParams(**self.model_dump())


class PatientOut(BaseModel):
    """What ``ragehr patients --json`` prints for a patient, with the index's counts by kind."""

    patient_id: str
    n_events: int
    n_chunks: int
    n_sources: int
    first_time: str | None
    last_time: str | None
    built_at: str
    ragehr_version: str
    embedder: str
    embedder_id: str
    counts: dict[str, int] = Field(description="events, chunks, duplicates_removed, and events per kind")


class PatientsOut(BaseModel):
    patients: list[PatientOut]
    backends: list[str]
    default_backend: str
    strategies: list[str]


class ChunkOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    marker: int
    chunk_id: str
    text: str
    kind: str
    start: str | None
    end: str | None
    source: str
    n_tokens: int
    event_ids: list[str]


class ContextOut(BaseModel):
    """What ``ragehr context --json`` prints."""

    model_config = ConfigDict(extra="allow")
    strategy: str
    retriever: str | None
    window_tokens: int | None
    budget_tokens: int
    used_tokens: int
    time_phrase: str | None
    intent: str | None = None
    time_fallback: str | None = None
    concepts: list[dict[str, Any]] = []
    """How the question was read against the record (``ConceptMatch.to_json()``)."""
    expansion: str | None = None
    truncated_chunk: str | None
    chunks: list[ChunkOut]


class AskOut(ContextOut):
    """What ``ragehr ask --json`` prints."""

    question: str
    patient_id: str
    answer: str
    citations: list[dict[str, Any]]
    unsupported: list[str]
    unknown_citations: list[int]
    grounded: bool
    uncited: bool
    backend: str
    model: str
    prompt_tokens: int
    completion_tokens: int | None
    cached: bool
    timings: dict[str, float]
    answered_by: str = Field("generated", description="computed or generated")
    answer_reason: str | None = Field(None, description="Why it was answered that way.")
    attempts: list[dict[str, Any]] = Field([], description="Self-Route: each generation tried, when retried.")
    derived: list[str] = Field(
        [], description="Numbers a computed answer computed (counts, averages) rather than read."
    )


class ErrorOut(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorOut} for c in (400, 401, 404, 413, 422, 500, 502, 503)}


def create_app(options: ServeOptions, token: str | None = None, *, loopback_only: bool = False) -> Any:
    """The ASGI app serving ``options.index_dir`` (wrapped in :class:`Guard`). With
    ``loopback_only``, requests must name a loopback host (``localhost``, ``127.0.0.1``,
    ``[::1]``): ``ragehr serve`` sets it when it runs without a token."""
    service = Service(options)
    executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="ragehr-ask")

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        lifespan=lifespan,
        title="ragehr",
        version=__version__,
        description="Ask a patient's record a question; answers cite dated evidence and are checked against it.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.executor = executor
    static_dir = resources.files("ragehr.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(RagehrError)
    async def _ragehr_error(request: Request, exc: RagehrError) -> Any:
        status = _status(exc)
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return HTMLResponse(views.error_page(str(exc), status), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        what = first.get("msg", "bad value")
        msg = f"invalid request: {where}: {what}" if where else f"invalid request: {what}"
        if wants_json(request):
            return JSONResponse({"error": msg}, status_code=422)
        return HTMLResponse(views.error_page(msg, 422), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Any:
        _log_unexpected(exc)
        if wants_json(request):
            return JSONResponse({"error": _message(exc)}, status_code=500)
        return HTMLResponse(views.error_page(_message(exc), 500), status_code=500)

    # -- shared helpers ----------------------------------------------------------------
    def timeline_of(idx: Any) -> Timeline:
        tl = idx.memo.get(_TIMELINE)
        if tl is None:
            tl = idx.memo[_TIMELINE] = build_timeline(idx.stored.record)
        return tl

    def result_fragments(r: Any, idx: Any) -> dict[str, str]:
        tl = timeline_of(idx)
        items = r.context.packed.items
        return {
            "answer": views.answer_html(r),
            "evidence": views.evidence_html(r),
            "meta": views.meta_html(r),
            "timeline": render_svg(tl, items, r.grounding.cited),
            "caption": evidence_caption(tl, items),
        }

    async def in_worker(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def page_choices() -> dict[str, Any]:
        return {
            "strategies": STRATEGIES,
            "budgets": BUDGET_CHOICES,
            "backends": options.backends,
        }

    def default_chosen() -> dict[str, Any]:
        spec = service.spec(AskParams(patient_id="", question=""))
        return {"strategy": spec.strategy, "budget": spec.budget, "backend": options.default_backend}

    # -- pages -------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> Any:
        ms = await run_in_threadpool(service.manifests)
        return HTMLResponse(views.patients_page(list(ms.values()), str(options.index_dir)))

    def render_patient(
        pid: str,
        chosen: dict[str, Any],
        question: str = "",
        result: Any = None,
        idx: Any = None,
        error: str | None = None,
    ) -> str:
        m = service.manifest(pid)
        if idx is None:
            idx = service.index(pid, need_dense=False)
        tl = timeline_of(idx)
        if result is not None:
            svg = render_svg(tl, result.context.packed.items, result.grounding.cited)
            caption = evidence_caption(tl, result.context.packed.items)
        else:
            svg = render_svg(tl)
            caption = evidence_caption(tl, ()).replace("No evidence packed; the", "The")
        return views.patient_page(
            m,
            sorted(service.manifests()),
            svg,
            caption,
            **page_choices(),
            chosen=chosen,
            question=question,
            result=result,
            error=error,
        )

    @app.get("/patient", response_class=HTMLResponse, include_in_schema=False)
    async def patient(id: str = Query(..., max_length=256)) -> Any:
        service.manifest(id)  # unknown ids stop here, before any disk access
        html = await run_in_threadpool(render_patient, id, default_chosen())
        return HTMLResponse(html)

    @app.post("/patient", response_class=HTMLResponse, include_in_schema=False)
    async def patient_ask(request: Request, id: str = Query(..., max_length=256)) -> Any:
        """The page's form without JavaScript: the answered page in one response."""
        service.manifest(id)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        question = form.get("question", "")
        chosen = default_chosen()
        try:
            budget = int(form["budget"]) if form.get("budget") else None
        except ValueError:
            budget = None
        chosen.update(
            {
                k: v
                for k, v in (("strategy", form.get("strategy")), ("budget", budget), ("backend", form.get("backend")))
                if v
            }
        )
        answer = form.get("answer") if form.get("answer") in ("auto", "computed", "generated") else None
        params = AskParams(
            patient_id=id,
            question=question,
            strategy=form.get("strategy") or None,
            budget=budget,
            backend=form.get("backend") or None,
            answer=answer,
        )
        try:
            r, idx = await in_worker(service.ask, params)
        except RagehrError as exc:
            html = await run_in_threadpool(render_patient, id, chosen, question, None, None, str(exc))
            return HTMLResponse(html, status_code=_status(exc))
        html = await run_in_threadpool(render_patient, id, chosen, question, r, idx)
        return HTMLResponse(html)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(next: str = "/") -> Any:
        return HTMLResponse(views.login_page(next_url=_local(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        target = _local(form.get("next", "/"))
        if token is None:
            return RedirectResponse(target, status_code=303)
        given = form.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(views.login_page("Wrong token.", target), status_code=401)
        resp = RedirectResponse(target, status_code=303)
        _set_cookie(resp, session_value(token), request.scope)
        return resp

    # -- API ---------------------------------------------------------------------------
    @app.get("/api/patients", response_model=PatientsOut, responses=_ERRORS)
    async def api_patients() -> Any:
        """The indexed patients with their time span and counts, and the server's choices."""
        ms = await run_in_threadpool(service.manifests)
        return {
            "patients": [{**PatientInfo.from_manifest(m).to_json(), "counts": m.counts} for m in ms.values()],
            "backends": list(options.backends),
            "default_backend": options.default_backend,
            "strategies": list(STRATEGIES),
        }

    @app.get("/api/context", response_model=ContextOut, responses=_ERRORS, dependencies=[Depends(_query_names)])
    async def api_context(
        patient_id: str = Query(..., max_length=256),
        question: str = Query(..., max_length=MAX_QUESTION_CHARS),
        strategy: Strategy | None = None,
        budget: int | None = Query(None, ge=64, le=MAX_BUDGET),
        backend: str | None = None,
        retriever: Retriever | None = None,
        order: Order | None = None,
    ) -> Any:
        """The evidence a strategy packs for a question, without generating (``ragehr context --json``)."""
        params = AskParams(
            patient_id=patient_id,
            question=question,
            strategy=strategy,
            budget=budget,
            backend=backend,
            retriever=retriever,
            order=order,
        )
        service.manifest(patient_id)
        prep, _, _ = await in_worker(service.prepare, params)
        return JSONResponse(context_json(prep.context, prep.window))

    @app.post("/api/ask", response_model=AskOut, responses=_ERRORS)
    async def api_ask(body: AskBody) -> Any:
        """Answer a question (``ragehr ask --json``): the evidence, the answer, its citations and
        the numbers and dates not found in the cited evidence."""
        params = body.params()
        _precheck(service, params)
        r, _ = await in_worker(service.ask, params)
        return JSONResponse(r.to_json())

    @app.post(
        "/api/ask/stream",
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": (
                    "Server-sent events: `token` (data: a JSON string, a piece of the answer as the model "
                    "produces it), then `result` (data: {result: the /api/ask object, html: page fragments}) "
                    "or `error` (data: {error: message})."
                ),
            },
            **_ERRORS,
        },
    )
    async def api_ask_stream(body: AskBody) -> Any:
        """``/api/ask`` as a stream of server-sent events, tokens first."""
        params = body.params()
        _precheck(service, params)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str | None, Any]] = asyncio.Queue()

        def put(event: str | None, data: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (event, data))

        def work() -> None:
            try:
                r, idx = service.ask(params, on_token=lambda piece: put("token", piece))
                put("result", {"result": r.to_json(), "html": result_fragments(r, idx)})
            except RagehrError as exc:
                put("error", {"error": str(exc), "status": _status(exc)})
            except Exception as exc:  # a bug: one line to the page, the type to the log
                _log_unexpected(exc)
                put("error", {"error": _message(exc), "status": 500})
            finally:
                put(None, None)

        loop.run_in_executor(executor, work)

        async def events() -> Any:
            yield ": stream open\n\n"
            while True:
                event, data = await queue.get()
                if event is None:
                    return
                yield f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Any:
        return {"ok": True, "version": __version__}

    return Guard(app, token, loopback_only=loopback_only)


def _precheck(service: Service, p: AskParams) -> None:
    """What can be refused before any work starts: the id, the question, the options."""
    service.manifest(p.patient_id)
    service.check_question(p.question)
    spec = service.spec(p)
    name = (p.backend or service.options.default_backend).strip().lower()
    if name not in service.options.backends:
        raise ConfigError(f"backend must be one of {', '.join(service.options.backends)}")
    del spec


def _local(target: str) -> str:
    """A redirect target on this server only (no scheme, no host, no '//')."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return quote(target, safe="/?=&%-._~")
