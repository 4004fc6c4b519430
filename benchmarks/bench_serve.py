"""Latency of `ragehr serve` on a MedAlign-median record with the extractive backend: the
patient page (HTML with the timeline, plus its CSS and JS) and an answered question (the
streamed answer's last event, and the JSON API), over real HTTP on 127.0.0.1; optionally the
same measured in headless Chromium (navigation timing; click Ask to rendered answer).

    python benchmarks/make_record.py benchmarks/data/median.xml --size median --seed 0
    python benchmarks/bench_serve.py [--record benchmarks/data/median.xml] [--embedder hashing]
        [--repeat 20] [--browser] [--out benchmarks/results/serve.json]

The record is indexed (once; unchanged files are a no-op) under benchmarks/data/serve-index
with the chosen embedder (`hashing` by default: MiniLM embeds ~25-50 chunks/s here, and the
page's latency does not depend on which embedder built the vectors, only on their size).
The questions are the record's planted-fact questions (median.facts.jsonl). The target is
300 ms for each of page load and answered question (p95); the script prints OK/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ragehr
from ragehr.config import IndexConfig, RagehrConfig

TARGET_MS = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def _post(url: str, body: dict) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def _stats(ms: list[float]) -> dict:
    s = sorted(ms)
    return {
        "n": len(s),
        "p50_ms": round(statistics.median(s), 1),
        "p95_ms": round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 1),
        "max_ms": round(s[-1], 1),
    }


def _timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t) * 1000, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, default=Path("benchmarks/data/median.xml"))
    ap.add_argument("--facts", type=Path, help="planted-fact questions (default: RECORD with .facts.jsonl)")
    ap.add_argument("--index-dir", type=Path, default=Path("benchmarks/data/serve-index"))
    ap.add_argument("--embedder", default="hashing", help="hashing (default), minilm, or a model folder")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--browser", action="store_true", help="also measure in headless Chromium (Selenium)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    if not args.record.is_file():
        print(f"{args.record}: missing; make it with benchmarks/make_record.py --size median", file=sys.stderr)
        return 2
    facts = args.facts or args.record.with_suffix(".facts.jsonl")
    questions = [json.loads(line)["question"] for line in facts.read_text().splitlines() if line.strip()]
    t = time.perf_counter()
    [summary] = ragehr.index_records(
        [args.record], args.index_dir, RagehrConfig(index=IndexConfig(embedder=args.embedder)), progress=False
    )
    index_s = time.perf_counter() - t
    if summary.status == "failed":
        print(summary.message, file=sys.stderr)
        return 1
    pid = summary.patient_id
    print(
        f"index: {summary.status} {pid}, {summary.n_events} events, {summary.n_chunks} chunks, {args.embedder}, {index_s:.1f}s",
        file=sys.stderr,
    )

    import uvicorn

    from ragehr.serve.app import create_app
    from ragehr.serve.core import ServeOptions

    port = _free_port()
    app = create_app(ServeOptions(index_dir=args.index_dir, backend="extractive", cache_generations=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)

    page_url = f"{base}/patient?id={urllib.request.quote(pid, safe='')}"
    cold_page_ms, html = _timed(_get, page_url)
    body = {"patient_id": pid, "strategy": "rag", "budget": 2048, "backend": "extractive"}
    cold_ask_ms, _ = _timed(_post, base + "/api/ask", {**body, "question": questions[0]})  # opens the dense side

    page, page_full, ask_stream, ask_json = [], [], [], []
    n_tokens, n_pieces = [], []
    for i in range(args.repeat):
        ms, html = _timed(_get, page_url)
        page.append(ms)
        ms_css, _ = _timed(_get, base + "/static/app.css")
        ms_js, _ = _timed(_get, base + "/static/app.js")
        page_full.append(ms + ms_css + ms_js)
        q = questions[i % len(questions)]
        ms, raw = _timed(_post, base + "/api/ask/stream", {**body, "question": q})
        assert b"event: result" in raw, raw[-300:]
        ask_stream.append(ms)
        ms, raw = _timed(_post, base + "/api/ask", {**body, "question": q})
        j = json.loads(raw)
        ask_json.append(ms)
        n_tokens.append(j["used_tokens"])
        n_pieces.append(len(j["chunks"]))

    results = {
        "record": str(args.record),
        "patient_id": pid,
        "events": summary.n_events,
        "chunks": summary.n_chunks,
        "embedder": args.embedder,
        "backend": "extractive",
        "strategy": "rag",
        "budget": 2048,
        "page_html_bytes": len(html),
        "evidence_tokens_mean": statistics.fmean(n_tokens),
        "evidence_pieces_mean": statistics.fmean(n_pieces),
        "cold": {"page_ms": round(cold_page_ms, 1), "first_ask_ms": round(cold_ask_ms, 1)},
        "page_html": _stats(page),
        "page_with_assets": _stats(page_full),
        "ask_stream": _stats(ask_stream),
        "ask_json": _stats(ask_json),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
    }

    if args.browser:
        results["browser"] = _browser(base, pid, questions, args.repeat)
    server.should_exit = True

    rows = [
        ("page: HTML", results["page_html"]),
        ("page: HTML + CSS + JS", results["page_with_assets"]),
        ("answered question: /api/ask/stream (to result event)", results["ask_stream"]),
        ("answered question: /api/ask (JSON)", results["ask_json"]),
    ]
    if "browser" in results:
        rows += [
            ("browser: page load (navigation to loadEventEnd)", results["browser"]["page_load"]),
            ("browser: Ask clicked to answer rendered", results["browser"]["ask"]),
        ]
    print(
        f"\n{pid}: {summary.n_events:,} events, {summary.n_chunks:,} chunks ({args.embedder} embedder); "
        f"page {len(html) / 1024:.0f} KiB; cold page {cold_page_ms:.0f} ms, cold first answer {cold_ask_ms:.0f} ms\n"
    )
    print("| measured | n | p50 ms | p95 ms | max ms | p95 < 300 ms |")
    print("|---|---|---|---|---|---|")
    ok = True
    for name, s in rows:
        good = s["p95_ms"] < TARGET_MS
        ok &= good
        print(f"| {name} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} | {'OK' if good else 'FAIL'} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok else 1


def _browser(base: str, pid: str, questions: list[str], repeat: int) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("RAGEHR_CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    drv = webdriver.Chrome(
        service=Service(os.environ.get("RAGEHR_CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts
    )
    url = f"{base}/patient?id={urllib.request.quote(pid, safe='')}"
    loads, asks = [], []
    try:
        drv.get(url)  # warm the browser's own start-up
        for i in range(repeat):
            drv.get(url)
            WebDriverWait(drv, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
            nav = drv.execute_script(
                "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"
            )
            loads.append(float(nav))
            q = drv.find_element(By.ID, "question")
            q.send_keys(questions[i % len(questions)])
            # the page's own clock: from just before the click to the answer in the DOM (a
            # MutationObserver on the body's data-state), not WebDriver's polling
            drv.execute_script(
                "window.__t1 = null; new MutationObserver(function () {"
                " if (document.body.dataset.state === 'answered' && window.__t1 === null) window.__t1 = performance.now();"
                "}).observe(document.body, {attributes: true}); window.__t0 = performance.now();"
            )
            drv.find_element(By.ID, "ask-button").click()
            WebDriverWait(drv, 30, poll_frequency=0.05).until(lambda d: d.execute_script("return window.__t1 !== null"))
            asks.append(float(drv.execute_script("return window.__t1 - window.__t0;")))
    finally:
        drv.quit()
    return {"page_load": _stats(loads), "ask": _stats(asks)}


if __name__ == "__main__":
    sys.exit(main())
