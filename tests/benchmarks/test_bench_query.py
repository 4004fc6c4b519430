"""benchmarks/bench_query.py (issue 22, item 2): every mode it reports is measured, in process
and through `ragehr serve`, on a real (small) record; and its checks fail when they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO

BENCH = "bench_query"
SAMPLE = REPO / "tests" / "fixtures" / "medalign" / "EHR_sample.xml"


def test_measure_times_every_mode_in_process_and_through_serve(bench, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    row = bench.measure(SAMPLE, tmp_path, limit=4, serve=True)
    assert row["questions"] == 4 and row["chunks"] > 0
    for mode in ("retrieve", "context", "ask", "ask (auto)", "retrieve (repeat)"):
        lat = row["latency"][mode]
        assert lat["n"] == 4 and 0 < lat["p50_ms"] <= lat["p95_ms"]
    for mode in ("context", "ask", "ask (auto)"):
        lat = row["serve"][mode]
        assert lat["n"] == 4 and 0 < lat["p50_ms"] <= lat["p95_ms"]
    assert 0 <= row["auto_computed"] <= 4


def _rec(tokens: int, rest: float, retrieve: float) -> dict:
    return {"tokens": tokens, "split_p50_ms": {"rest": rest}, "latency": {"retrieve": {"p50_ms": retrieve}}}


def test_checks_fail_on_growth_and_on_a_slow_median(bench) -> None:
    ok = bench.check({"records": {"a_10k": _rec(10_000, 1.0, 1.0), "b_median": _rec(465_000, 1.2, 2.0)}})
    assert [good for _, good in ok] == [True, True]
    bad = bench.check({"records": {"a_10k": _rec(10_000, 1.0, 1.0), "b_median": _rec(465_000, 3.5, 6.0)}})
    assert [good for _, good in bad] == [False, False]
