"""The query path of the default configuration, by record length (issue 22, item 2).

    for s in 10k 100k median large; do
        python benchmarks/make_record.py benchmarks/data/synthetic_$s.xml --size $s --seed 0 --quiet
    done
    python benchmarks/bench_query.py benchmarks/data/synthetic_{10k,100k,median,large}.xml \\
        --serve --out benchmarks/results/query.json

For every record, in one process: the record is indexed with the default configuration
(``IndexConfig()``: the embedder ``ragehr/config.py`` names), opened once as ``ragehr`` opens it
(the embedder wrapped in its per-process query LRU), and every question (planted facts and
generated QA) is asked four ways, each question new to the LRU on its first pass:

- ``retrieve``: ``search()`` (hybrid, k = 10), what ``ragehr retrieve`` runs;
- ``context``: ``build_context(strategy="rag", budget 2,048)``, what ``ragehr context`` runs;
- ``ask``: ``pipeline.ask`` with the ``extractive`` backend (no model) and ``answer:
  generated``, what ``ragehr ask --backend extractive --answer generated`` runs after loading;
- ``ask (auto)``: the same with ``answer: auto`` (the default: computed from the record's events
  where the question is a value, date, count, extreme, trend or list; the table says how many);

With ``--serve``, ``context`` and both ``ask`` modes again through ``ragehr serve`` over real
HTTP on 127.0.0.1 (``GET /api/context``, ``POST /api/ask``). p50 and p95 each; ``retrieve (repeat)`` is the same questions again (the LRU answers the query
embedding). The **growth table** splits a hybrid search into the scoring (BM25 over every chunk,
the FAISS scan) and everything else (reading the question, filters, embedding the query,
fusion, building results): only the scoring may grow with the record. ``--expect`` checks that
the rest grows less than 3x from the smallest to the largest record (the scoring itself is
allowed to grow) and that retrieve p50 <= 5 ms on the record whose name says ``median``; exit 1
on a FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import load_facts, pct

from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.eval.generated import generate_qa
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search


def _ms(t: float) -> float:
    return (time.perf_counter() - t) * 1000


def _forget(idx: Any) -> None:
    """Empty the query LRU, so the next question is embedded as a new one is."""
    rows = getattr(idx.embedder, "_rows", None)
    if rows is not None:
        rows.clear()


def _stats(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": pct(ms, 0.5), "p95_ms": pct(ms, 0.95)}


def questions(path: Path, record: Any, limit: int) -> list[str]:
    qs = []
    if path.with_suffix(".facts.jsonl").is_file():
        qs += [f["question"] for f in load_facts(path, record)]
    qs += [it.question for it in generate_qa(record, seed=0, per_type=3)]
    return list(dict.fromkeys(qs))[:limit]


def measure(path: Path, work: Path, limit: int, serve: bool = False) -> dict:
    from ragehr.ehr import load_record
    from ragehr.ehr.render import render_record
    from ragehr.llm.extractive import ExtractiveBackend
    from ragehr.pipeline.ask import ask
    from ragehr.pipeline.context import build_context
    from ragehr.pipeline.spec import ContextSpec
    from ragehr.tokens import EstimateCounter, estimate_tokens

    record = load_record(path)
    cfg = IndexConfig()
    t = time.perf_counter()
    [s] = build_indexes([path], work / "idx", cfg, cache_dir=work / "cache")
    build_s = time.perf_counter() - t
    if s.status != "built":
        raise SystemExit(f"{path}: {s.message}")
    t = time.perf_counter()
    idx = load_patient_index(work / "idx", s.patient_id)
    idx.embedder.embed(["warm up"])  # model load is part of opening, not of a query
    open_s = time.perf_counter() - t
    qs = questions(path, record, limit)
    counter = EstimateCounter()
    backend = ExtractiveBackend()
    spec = ContextSpec(strategy="rag", budget=2048)
    row: dict[str, Any] = {
        "tokens": estimate_tokens(render_record(record)),
        "chunks": s.n_chunks,
        "embedder": cfg.embedder,
        "build_s": build_s,
        "open_s": open_s,
        "questions": len(qs),
    }
    lat: dict[str, list[float]] = {
        "retrieve": [],
        "context": [],
        "ask": [],
        "ask (auto)": [],
        "retrieve (repeat)": [],
    }
    for q in qs:  # first pass: each question new to the query LRU
        _forget(idx)
        t = time.perf_counter()
        search(idx, q)
        lat["retrieve"].append(_ms(t))
    for q in qs:
        _forget(idx)
        t = time.perf_counter()
        build_context(idx, q, strategy="rag", budget_tokens=2048, counter=counter)
        lat["context"].append(_ms(t))
    for q in qs:
        _forget(idx)
        t = time.perf_counter()
        ask(idx, q, backend, spec, answer="generated")
        lat["ask"].append(_ms(t))
    computed = 0
    for q in qs:
        _forget(idx)
        t = time.perf_counter()
        r = ask(idx, q, backend, spec, answer="auto")
        lat["ask (auto)"].append(_ms(t))
        computed += r.answered_by == "computed"
    row["auto_computed"] = computed
    for q in qs:  # the LRU now holds every question
        t = time.perf_counter()
        search(idx, q)
        lat["retrieve (repeat)"].append(_ms(t))
    row["latency"] = {k: _stats(v) for k, v in lat.items()}
    # the growth split: scoring (BM25 over all chunks + FAISS scan) against the rest
    rc = RetrievalConfig()
    scoring, total = [], []
    inner = getattr(idx.embedder, "inner", idx.embedder)
    for q in qs:
        qv = inner.embed([q])[0]
        t = time.perf_counter()
        idx.bm25.search(q, rc.candidates)
        idx.dense.search(qv, rc.candidates)
        scoring.append(_ms(t))
        _forget(idx)
        t = time.perf_counter()
        search(idx, q)
        total.append(_ms(t))
    row["split_p50_ms"] = {
        "search": pct(total, 0.5),
        "scoring": pct(scoring, 0.5),
        "rest": max(pct(total, 0.5) - pct(scoring, 0.5), 0.0),
    }
    if serve:
        row["serve"] = through_serve(work / "idx", s.patient_id, qs)
    return row


def through_serve(index_dir: Path, patient_id: str, qs: list[str]) -> dict:
    """The same questions through ``ragehr serve`` over real HTTP on 127.0.0.1 (uvicorn in a
    thread of this process, extractive backend, no generation cache): ``GET /api/context``
    (retrieve + pack: serve has no retrieve-only route) and ``POST /api/ask`` with
    ``answer: generated`` and ``auto``. Each timing is request sent to response read. The
    server opens the index on the first request (not timed: one warm-up question)."""
    import socket
    import threading
    import urllib.parse
    import urllib.request

    import uvicorn

    from ragehr.serve.app import create_app
    from ragehr.serve.core import ServeOptions

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(ServeOptions(index_dir=index_dir, backend="extractive", cache_generations=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"

    def context(q: str) -> bytes:
        query = urllib.parse.urlencode({"patient_id": patient_id, "question": q, "strategy": "rag", "budget": 2048})
        with urllib.request.urlopen(f"{base}/api/context?{query}", timeout=60) as r:
            return r.read()

    def ask(q: str, answer: str) -> bytes:
        body = {"patient_id": patient_id, "question": q, "strategy": "rag", "budget": 2048, "answer": answer}
        req = urllib.request.Request(
            base + "/api/ask", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    try:
        ask(qs[0], "auto")  # opens the index and the embedder
        lat: dict[str, list[float]] = {"context": [], "ask": [], "ask (auto)": []}
        for q in qs:
            t = time.perf_counter()
            context(q)
            lat["context"].append(_ms(t))
        for q in qs:
            t = time.perf_counter()
            ask(q, "generated")
            lat["ask"].append(_ms(t))
        for q in qs:
            t = time.perf_counter()
            ask(q, "auto")
            lat["ask (auto)"].append(_ms(t))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return {k: _stats(v) for k, v in lat.items()}


def check(result: dict) -> list[tuple[str, bool]]:
    rows = sorted(result["records"].items(), key=lambda kv: kv[1]["tokens"])
    out = []
    if len(rows) >= 2:
        (a, ra), (b, rb) = rows[0], rows[-1]
        g = rb["split_p50_ms"]["rest"] / max(ra["split_p50_ms"]["rest"], 1e-6)
        what = (
            f"non-scoring part of a search grows {g:.2f}x from {a} ({ra['tokens']:,} tokens) to {b} "
            f"({rb['tokens']:,} tokens) < 3x"
        )
        out.append((what, g < 3))
    for name, r in rows:
        if "median" in name:
            p = r["latency"]["retrieve"]["p50_ms"]
            out.append((f"{name}: retrieve p50 {p:.2f} ms <= 5 ms", p <= 5))
    for what, ok in out:
        print(f"{'OK  ' if ok else 'FAIL'} {what}")
    return out


def report(result: dict) -> None:
    print(
        "\n| record | tokens | chunks | build s | open s | retrieve p50/p95 | context p50/p95 | extractive ask p50/p95 "
        "| auto ask p50/p95 (computed) | retrieve repeat p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in result["records"].items():
        lat = r["latency"]

        def pp(k: str, lat: dict = lat) -> str:
            return f"{lat[k]['p50_ms']:.2f} / {lat[k]['p95_ms']:.2f}"

        print(
            f"| {name} | {r['tokens']:,} | {r['chunks']:,} | {r['build_s']:.2f} | {r['open_s']:.2f} | {pp('retrieve')} | "
            f"{pp('context')} | {pp('ask')} | {pp('ask (auto)')} ({r['auto_computed']}/{r['questions']}) | "
            f"{lat['retrieve (repeat)']['p50_ms']:.2f} |"
        )
    served = {name: r["serve"] for name, r in result["records"].items() if "serve" in r}
    if served:
        print("\n| through `ragehr serve` (HTTP) | context p50/p95 | extractive ask p50/p95 | auto ask p50/p95 |")
        print("|---|---|---|---|")
        for name, sv in served.items():
            cells = " | ".join(
                f"{sv[k]['p50_ms']:.2f} / {sv[k]['p95_ms']:.2f}" for k in ("context", "ask", "ask (auto)")
            )
            print(f"| {name} | {cells} |")
    print("\n| record | tokens | search p50 ms | scoring (BM25 + FAISS) | the rest |")
    print("|---|---|---|---|---|")
    for name, r in sorted(result["records"].items(), key=lambda kv: kv[1]["tokens"]):
        s = r["split_p50_ms"]
        print(f"| {name} | {r['tokens']:,} | {s['search']:.2f} | {s['scoring']:.2f} | {s['rest']:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="*")
    ap.add_argument("--questions", type=int, default=60, help="questions per record (facts first)")
    ap.add_argument("--serve", action="store_true", help="also time context and ask through `ragehr serve` (HTTP)")
    ap.add_argument("--check", type=Path, help="only check a saved result JSON")
    ap.add_argument("--expect", action="store_true", help="exit 1 when a check fails")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.check:
        result = json.loads(args.check.read_text())
    else:
        if not args.records:
            ap.error("give record files (or --check FILE)")
        result = {
            "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_start": os.getloadavg(),
            "records": {},
        }
        for path in args.records:
            with tempfile.TemporaryDirectory(prefix="ragehr-query-") as work:
                result["records"][path.name] = measure(path, Path(work), args.questions, serve=args.serve)
            print(f"{path.name}: done", flush=True)
            result["load_average_end"] = os.getloadavg()
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1))
    report(result)
    checks = check(result)
    return 1 if args.expect and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
