"""benchmarks/bench_speed.py's targets (issue 22): the quality check compares the default
(static) with MiniLM on every record and question set, and a FAIL is never hidden."""

from __future__ import annotations

BENCH = "bench_speed"


def _row(facts: float | None, generated: float, build_s: float = 2.0, p50: float = 2.0) -> dict:
    hybrid = {
        "p50_ms": p50,
        "recall@10_facts": facts,
        "recall@10_generated": generated,
        "evidence@2k_facts": facts,
        "evidence@2k_generated": generated,
    }
    return {"build_s": build_s, "hybrid": hybrid, "embeddings_from_cache": False}


def _result(**records: dict) -> dict:
    return {"records": records}


def _by_name(targets: list[dict]) -> dict[str, bool]:
    return {t["target"]: t["ok"] for t in targets}


def test_equal_recall_on_every_record_is_ok(bench):
    res = _result(
        **{
            "median.xml": {"static": _row(0.98, 0.88), "minilm": _row(0.98, 0.87, build_s=200, p50=15)},
            "small.xml": {"static": _row(1.0, 0.96), "minilm": _row(1.0, 0.96)},
        }
    )
    t = bench.check_targets(res)
    assert all(x["ok"] for x in t)
    assert sum("small.xml" in x["target"] for x in t) == 4  # the small record is checked, not only the median
    assert "median.xml: static build speed-up over MiniLM" in _by_name(t)


def test_a_loss_beyond_001_on_any_record_or_set_is_a_fail(bench):
    res = _result(
        **{
            "median.xml": {"static": _row(0.98, 0.88), "minilm": _row(0.98, 0.87, build_s=200)},
            "small.xml": {"static": _row(0.95, 0.96), "minilm": _row(1.0, 0.96)},
        }
    )
    fails = [x["target"] for x in bench.check_targets(res) if not x["ok"]]
    assert fails == [
        "small.xml: static - MiniLM hybrid recall@10_facts",
        "small.xml: static - MiniLM hybrid evidence@2k_facts",
    ]


def test_slow_build_or_query_fails_and_a_record_without_minilm_earns_no_quality_ok(bench):
    res = _result(
        **{"median.xml": {"static": _row(0.98, 0.88, build_s=12.0, p50=6.0)}, "sample.xml": {"static": _row(None, 1.0)}}
    )
    t = _by_name(bench.check_targets(res))
    assert t["median.xml: static build (s)"] is False and t["median.xml: static hybrid query p50 (ms)"] is False
    assert not any("MiniLM" in name for name in t)  # no comparison was run: nothing claimed


def test_a_set_without_questions_is_skipped_not_passed(bench):
    res = _result(**{"sample.xml": {"static": _row(None, 1.0), "minilm": _row(None, 0.9)}})
    t = _by_name(bench.check_targets(res))
    assert set(t) == {
        "sample.xml: static - MiniLM hybrid recall@10_generated",
        "sample.xml: static - MiniLM hybrid evidence@2k_generated",
    }
    assert all(t.values())


def test_cached_minilm_builds_claim_no_speed_up(bench):
    cached = {**_row(0.98, 0.87, build_s=1.0), "embeddings_from_cache": True}
    res = _result(**{"median.xml": {"static": _row(0.98, 0.88), "minilm": cached}})
    assert not any("speed-up" in x["target"] for x in bench.check_targets(res))
