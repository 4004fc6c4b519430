"""End to end in a real browser: Debian's headless Chromium, driven by Selenium through the
system chromedriver (no browser download), against ``ragehr serve`` started on 127.0.0.1.

Pick a patient, ask, watch the answer arrive, click a citation, and see its evidence
highlighted in the list and on the timeline. A screenshot of the answered page is saved in
the test's tmp folder (and, with ``RAGEHR_SCREENSHOT=path``, there too: how docs/serve.png is
made). Outside CI, a missing chromium or chromedriver skips these tests with the reason;
in CI (``CI`` set) it fails them: ``make test`` installs both.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = os.environ.get("RAGEHR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RAGEHR_CHROMEDRIVER", "/usr/bin/chromedriver")


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() or shutil.which(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        msg = f"browser tests need {', '.join(missing)} (Debian: apt-get install chromium chromium-driver; make test does this as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(serve_index_dir, tmp_path_factory):
    """``ragehr serve`` in a subprocess on a free port, offering the extractive and fake
    backends (and openai without a server configured, to show a backend failure)."""
    _need_browser()
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAGEHR_TOKEN": ""}
    env.pop("RAGEHR_OPENAI_BASE_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "ragehr.cli",
        "serve",
        "--index-dir",
        str(serve_index_dir),
        "--port",
        str(port),
        "--backend",
        "extractive",
        "--backends",
        "extractive,fake,openai",
        "--no-cache",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ragehr serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield {"url": base, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1050",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _wait(drv, cond, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout).until(cond)


def _ask(drv, question: str, backend: str, strategy: str = "rag", budget: str = "2048") -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    q = drv.find_element(By.ID, "question")
    q.clear()
    q.send_keys(question)
    Select(drv.find_element(By.ID, "strategy")).select_by_value(strategy)
    Select(drv.find_element(By.ID, "budget")).select_by_value(budget)
    Select(drv.find_element(By.ID, "backend")).select_by_value(backend)
    drv.find_element(By.ID, "ask-button").click()
    _wait(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("answered", "error"))
    return drv.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def test_pick_ask_cite_and_see_it_on_the_timeline(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(server["url"] + "/")
    links = drv.find_elements(By.CSS_SELECTOR, "a.patient-link")
    assert [a.text for a in links] == ["sample"]
    row = drv.find_element(By.CSS_SELECTOR, "table.patients tbody tr").text
    assert "2018-10-08 .. 2022-05-15" in row and "60" in row
    links[0].click()
    _wait(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
    # the record's timeline is there before any question: one row per kind of event
    rows = drv.find_elements(By.CSS_SELECTOR, "svg.timeline g.tl-row")
    assert {r.get_attribute("data-kind") for r in rows} >= {"note", "vital", "lab", "procedure"}
    assert not drv.find_elements(By.CSS_SELECTOR, "svg.timeline a.ev")

    state = _ask(drv, "What was the systolic blood pressure?", "extractive")
    assert state == "answered", drv.find_element(By.ID, "error").text
    answer = drv.find_element(By.ID, "answer").text
    assert "Systolic blood pressure" in answer
    cites = drv.find_elements(By.CSS_SELECTOR, "#answer a.cite")
    assert cites, "the answer's [n] citations are links"
    evidence = drv.find_elements(By.CSS_SELECTOR, "#evidence li.evidence")
    marks = drv.find_elements(By.CSS_SELECTOR, "svg.timeline a.ev")
    assert evidence and len(marks) == len(
        [e for e in evidence if e.find_element(By.CSS_SELECTOR, ".date").text != "undated"]
    )
    assert not drv.find_elements(By.CSS_SELECTOR, ".active")

    # click the last citation: its evidence and its timeline mark light up, nothing else does
    cite = cites[-1]
    n = cite.get_attribute("data-marker")
    cite.click()
    _wait(drv, lambda d: "active" in d.find_element(By.ID, f"ev-{n}").get_attribute("class"))
    li = drv.find_element(By.ID, f"ev-{n}")
    assert "cited" in li.get_attribute("class")
    assert "Systolic blood pressure" in li.find_element(By.CSS_SELECTOR, "pre.ev-text").text
    source = li.find_element(By.CSS_SELECTOR, ".source")
    assert source.text.startswith("EHR_sample.xml#/record/visit[")
    assert source.get_attribute("title").endswith(source.text) and os.path.isabs(source.get_attribute("title"))
    mark = drv.find_element(By.ID, f"tl-ev-{n}")
    assert "active" in mark.get_attribute("class")
    active_marks = drv.find_elements(By.CSS_SELECTOR, "svg.timeline a.ev.active")
    assert [m.get_attribute("id") for m in active_marks] == [f"tl-ev-{n}"]
    # the mark sits on the row of its kind, at its date: left of the newest evidence's mark
    assert mark.get_attribute("data-marker") == n
    assert drv.find_element(By.ID, "tl-caption").text.startswith(f"{len(evidence)} evidence pieces from ")

    drv.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "serve-answered.png"
    assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("RAGEHR_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RAGEHR_SCREENSHOT"])

    # clicking a timeline mark selects its evidence too
    first = marks[0]
    m0 = first.get_attribute("data-marker")
    drv.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", first)
    _wait(drv, lambda d: "active" in d.find_element(By.ID, f"ev-{m0}").get_attribute("class"))


def test_fake_backend_unsupported_and_a_failing_backend(server, browser):
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(server["url"] + "/patient?id=sample")
    state = _ask(drv, "latest hemoglobin", "fake", strategy="recent", budget="1024")
    assert state == "answered"
    assert drv.find_element(By.ID, "answer").text.startswith("Based on [")
    assert "recent" in drv.find_element(By.ID, "meta").text

    # a backend that cannot answer: one clear message on the page, no traceback
    assert drv.find_elements(By.CSS_SELECTOR, "svg.timeline a.ev")
    state = _ask(drv, "latest hemoglobin", "openai")
    assert state == "error"
    assert not drv.find_elements(By.CSS_SELECTOR, "svg.timeline a.ev")  # no stale evidence left on it
    err = drv.find_element(By.ID, "error")
    assert err.is_displayed()
    assert "openai backend needs a base_url" in err.text
    assert "Traceback" not in drv.page_source
    # and the page still answers afterwards
    assert _ask(drv, "systolic blood pressure", "extractive") == "answered"
    assert not drv.find_element(By.ID, "error").is_displayed()


def test_access_log_holds_no_patient_text(server, browser):
    log = server["log"].read_text()
    assert "POST /api/ask/stream 200" in log
    for secret in ("systolic", "hemoglobin", "sample", "Systolic"):
        assert secret not in log


@pytest.fixture()
def streaming_server(serve_index_dir):
    """The app in this process (uvicorn on a free port) with a backend that streams its answer
    in two pieces and waits, between them, until the test has seen the first in the page."""
    import threading

    import uvicorn

    from ragehr.llm.base import LLMBackend
    from ragehr.serve.app import create_app
    from ragehr.serve.core import ServeOptions, _Backend
    from ragehr.types import Generation

    gate = threading.Event()

    class TwoPieces(LLMBackend):
        name, model, context_window, supports_streaming = "fake", "two-pieces", 8192, True

        def _generate(self, request, on_token=None):
            on_token("First piece, ")
            gate.wait(30)
            on_token("second piece [1].")
            return Generation(text="First piece, second piece [1].", backend="", model="")

    from ragehr.config import RagehrConfig

    # the generated path (a computed answer would not stream from the model)
    app = create_app(
        ServeOptions(
            index_dir=serve_index_dir,
            backend="fake",
            backends=("fake",),
            cache_generations=False,
            config=RagehrConfig(answer="generated"),
        )
    )
    app.app.state.service.backend = lambda name, spec: _Backend(TwoPieces(), None)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "gate": gate}
    gate.set()
    server.should_exit = True
    thread.join(10)


def test_tokens_appear_in_the_page_as_they_are_generated(streaming_server, browser):
    from selenium.webdriver.common.by import By

    drv = browser
    drv.get(streaming_server["url"] + "/patient?id=sample")
    drv.find_element(By.ID, "question").send_keys("systolic blood pressure")
    drv.find_element(By.ID, "ask-button").click()
    # the first piece is on the page while the model is still "generating" the second
    _wait(
        drv,
        lambda d: (
            d.find_elements(By.ID, "stream")
            and d.find_element(By.ID, "stream").get_attribute("textContent") == "First piece, "
        ),
    )
    assert drv.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "asking"
    assert not drv.find_element(By.ID, "ask-button").is_enabled()
    streaming_server["gate"].set()
    _wait(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "answered")
    assert drv.find_element(By.ID, "answer").text.startswith("First piece, second piece [1].")
    assert drv.find_element(By.CSS_SELECTOR, "#answer a.cite").get_attribute("data-marker") == "1"
