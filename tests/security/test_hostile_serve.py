"""Issue 24, part A, over HTTP: ``ragehr serve`` refuses cross-site state-changing requests
(a form on another site posting with the user's browser), parses ``Host`` strictly (never
guessing which part of ``127.0.0.1:1@evil.com`` is the host), and renders the page of a record
that spans the whole calendar (an event on 0001-01-01 used to make the page 500).

Every refused request gets its status and a one-line JSON ``error``, and leaves the index
folder exactly as it was."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ragehr[serve]')")

from fastapi.testclient import TestClient

from ragehr.config import IndexConfig
from ragehr.index.build import build_indexes
from ragehr.serve.app import create_app, cross_site, parse_host
from ragehr.serve.core import ServeOptions
from ragehr.serve.timeline import _day, _ticks, _ts, build_timeline, evidence_caption, render_svg
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator
from tests.conftest import FIXTURES
from tests.security.test_hostile_cli import snapshot

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
TOKEN = "s3cret-token-for-tests-0123"
BASE = "http://127.0.0.1:8000"
SELF = BASE
ANCIENT = """<record>
    <visit type="Office Visit" start="01/01/0001 00:00">
        <day start="01/01/0001 00:00">
            <measurement start="01/01/0001 08:05 AM"><code>[LOINC/2823-3] Potassium 4.1 mmol/L</code></measurement>
        </day>
    </visit>
    <visit type="Office Visit" start="12/31/9999 00:00">
        <day start="12/31/9999 00:00">
            <measurement start="12/31/9999 08:05 AM"><code>[LOINC/2823-3] Potassium 4.4 mmol/L</code></measurement>
        </day>
    </visit>
</record>
"""
ONE_DAY = ANCIENT.split("    <visit", 2)
ONE_DAY = ONE_DAY[0] + "    <visit" + ONE_DAY[1] + "</record>\n"


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile-serve")
    (d / "EHR_ancient.xml").write_text(ANCIENT)
    (d / "EHR_firstday.xml").write_text(ONE_DAY)
    summaries = build_indexes(
        [SAMPLE, d / "EHR_ancient.xml", d / "EHR_firstday.xml"], d / "idx", IndexConfig(embedder="hashing")
    )
    assert [s.status for s in summaries] == ["built"] * 3, summaries
    return d / "idx"


@pytest.fixture()
def sandbox(idx, tmp_path) -> Path:
    shutil.copytree(idx, tmp_path / "idx", copy_function=shutil.copy2)
    return tmp_path / "idx"


def _client(index_dir: Path, token: str | None = None, loopback_only: bool = True) -> TestClient:
    opts = ServeOptions(index_dir=index_dir, backend="extractive", cache_generations=False)
    return TestClient(create_app(opts, token=token, loopback_only=loopback_only), base_url=BASE)


FORM = ("POST", "/patient?id=sample", {"data": {"question": "latest potassium", "backend": "extractive"}})
API = ("POST", "/api/ask", {"json": {"patient": "sample", "question": "latest potassium"}})
API2 = ("POST", "/api/ask", {"json": {"patient_id": "sample", "question": "latest potassium"}})
CROSS: dict[str, tuple[tuple, dict[str, str]]] = {
    "form_post_from_evil_site": (FORM, {"origin": "http://evil.example"}),
    "form_post_origin_null": (FORM, {"origin": "null"}),
    "form_post_other_port": (FORM, {"origin": "http://127.0.0.1:9999"}),
    "form_post_https_origin": (FORM, {"origin": "https://127.0.0.1:8000"}),
    "form_post_origin_with_userinfo": (FORM, {"origin": "http://127.0.0.1:8000@evil.example"}),
    "form_post_origin_with_path": (FORM, {"origin": "http://127.0.0.1:8000/x"}),
    "form_post_origin_localhost_other_name": (FORM, {"origin": "http://localhost:8000"}),
    "form_post_origin_empty": (FORM, {"origin": ""}),
    "form_post_sec_fetch_cross_site": (FORM, {"sec-fetch-site": "cross-site"}),
    "form_post_sec_fetch_same_site": (FORM, {"sec-fetch-site": "same-site"}),
    "api_ask_from_evil_site": (API, {"origin": "http://evil.example"}),
    "api_ask_origin_evil_sec_fetch_same_origin": (
        API,
        {"origin": "http://evil.example", "sec-fetch-site": "same-origin"},
    ),
    "api_ask_renamed_field_from_evil_site": (API2, {"origin": "http://evil.example"}),
    "put_from_evil_site": (("PUT", "/api/ask", {"json": {}}), {"origin": "http://evil.example"}),
    "delete_from_evil_site": (("DELETE", "/api/patients", {}), {"origin": "http://evil.example"}),
    "stream_from_evil_site": (
        ("POST", "/api/ask/stream", {"json": {"patient": "sample", "question": "k"}}),
        {"origin": "http://evil.example"},
    ),
}


@pytest.mark.parametrize("name", sorted(CROSS))
def test_cross_site_state_changing_request_is_refused(name, sandbox):
    (method, path, kw), headers = CROSS[name]
    before = snapshot(sandbox.parent, sandbox)
    with _client(sandbox) as c:
        r = c.request(method, path, headers=headers, **kw)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    err = r.json()["error"]
    assert err.startswith("cross-site request refused") and "\n" not in err
    assert snapshot(sandbox.parent, sandbox) == before


def test_cross_site_login_post_is_refused_on_a_token_server(sandbox):
    with _client(sandbox, token=TOKEN, loopback_only=False) as c:
        r = c.post("/login", data={"token": TOKEN, "next": "/"}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        ok = c.post("/login", data={"token": TOKEN, "next": "/"}, headers={"origin": SELF}, follow_redirects=False)
        assert ok.status_code == 303 and "set-cookie" in ok.headers


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"origin": SELF},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
        {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
    ],
)
def test_same_origin_and_non_browser_requests_are_answered(headers, sandbox):
    """The check must not refuse the page's own form, nor curl and scripts (no Origin)."""
    with _client(sandbox) as c:
        r = c.post(FORM[1], headers=headers, **FORM[2])
        assert r.status_code == 200 and "latest potassium" in r.text
        assert c.get("/patient?id=sample", headers={"origin": "http://evil.example"}).status_code == 200  # safe method


HOSTS = {
    "userinfo_after_port": "127.0.0.1:1@evil.com",
    "userinfo_before_host": "evil.com@127.0.0.1",
    "two_ports": "127.0.0.1:8000:80",
    "space_inside": "127.0.0.1:8000 evil.com",
    "path_in_host": "127.0.0.1/evil",
    "port_out_of_range": "127.0.0.1:99999",
    "unclosed_ipv6": "[::1",
    "ipv6_garbage": "[::zz]:8000",
    "empty_port": "127.0.0.1:",
    "comma_list": "127.0.0.1,evil.com",
    "underscore_name": "evil_host:8000",
    "backslash": "127.0.0.1\\@evil.com",
}


@pytest.mark.parametrize("name", sorted(HOSTS))
@pytest.mark.parametrize("token", [None, TOKEN])
def test_malformed_host_is_refused(name, token, sandbox):
    with _client(sandbox, token=token, loopback_only=token is None) as c:
        headers = {"host": HOSTS[name]}
        if token:
            headers["authorization"] = f"Bearer {token}"
        r = c.get("/api/patients", headers=headers)
    assert r.status_code == 400 and r.json() == {"error": "malformed Host header"}, (r.status_code, r.text[:100])


def test_parse_host_is_strict_and_keeps_good_hosts():
    assert parse_host("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_host("LocalHost") == ("localhost", None)
    assert parse_host("[::1]:80") == ("::1", 80)
    assert parse_host("ragehr.example.org.") == ("ragehr.example.org", None)
    assert all(parse_host(h) is None for h in HOSTS.values())


def test_cross_site_without_headers_is_none():
    """A request with no Origin and no Sec-Fetch-Site (curl, a script) is not a browser's."""
    assert cross_site({"headers": [(b"host", b"127.0.0.1:8000")], "scheme": "http"}) is None
    assert (
        cross_site({"headers": [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1:80")], "scheme": "http"})
        is None
    )


# -- timeline and page over any span of the calendar -----------------------------------------


@pytest.mark.parametrize("patient", ["ancient", "firstday"])
def test_page_of_a_record_spanning_the_calendar(patient, sandbox):
    with _client(sandbox) as c:
        page = c.get(f"/patient?id={patient}")
        assert page.status_code == 200 and "0001-01-01" in page.text
        r = c.post(f"/patient?id={patient}", data={"question": "potassium", "backend": "extractive"})
        assert r.status_code == 200 and 'id="timeline"' in r.text


SPANS = [
    ((1, 1, 1), (1, 1, 1)),
    ((1, 1, 1), (2020, 5, 1)),
    ((1, 1, 1), (9999, 12, 31)),
    ((9999, 12, 31), (9999, 12, 31)),
    ((9999, 11, 3), (9999, 12, 31)),
    ((2020, 1, 1), (2020, 2, 1)),
    ((1969, 12, 31), (1970, 1, 2)),
    ((1000, 1, 1), (1899, 1, 1)),
]


@pytest.mark.parametrize("a,b", SPANS)
def test_ticks_for_any_span(a, b):
    t0, t1 = _ts(datetime(*a, tzinfo=UTC)), _ts(datetime(*b, tzinfo=UTC))
    ticks = _ticks(t0, t1)
    assert len(ticks) <= 12
    assert all(t0 <= t <= t1 for t, _ in ticks)
    assert [t for t, _ in ticks] == sorted(t for t, _ in ticks)
    if b[0] - a[0] >= 3:
        assert ticks, "a span of years has year ticks"
    assert _day(t0) == f"{a[0]:04d}-{a[1]:02d}-{a[2]:02d}"


@pytest.mark.parametrize("a,b", SPANS)
def test_timeline_renders_any_span(a, b):
    events = tuple(
        Event(
            kind=EventKind.LAB,
            start=datetime(*d, tzinfo=UTC),
            text="k",
            source=SourceLocator(file="f", path=f"e{i}"),
        )
        for i, d in enumerate((a, b))
    )
    tl = build_timeline(PatientRecord(patient_id="p", format="merged", events=events))
    svg = render_svg(tl)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert f"{a[0]:04d}-" in evidence_caption(tl, ())
