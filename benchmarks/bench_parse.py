"""Question reading cost: ``plan_question`` (intent, time window, concept) per question, this
checkout against a baseline git revision, side by side in one process.

The questions are generated (seeded) from templates: a concept, an intent cue and a date in
one of the forms people write (``May 6th, 2024``, ``6-May-2024``, ``06MAY24``, ``5/6/24``,
``20240506``, ``Q2 2024``, ``spring of 2021``, ``mid-2021``, ``last 6 months``, ...), plus
questions with no time at all. The baseline's ``retrieval/timefilter.py`` and
``retrieval/intent.py`` are read with ``git show REF:path`` and loaded as separate modules, so
both run on the same questions in the same process; rounds alternate between them and each
question is timed alone (``perf_counter_ns``). Reported: p50 and p95 in microseconds, their
ratios (this checkout / baseline), and how many dated questions each reads a window from.

Usage::

    python benchmarks/bench_parse.py --baseline 28c772d --n 600 --rounds 7 \\
        --expect-p50-us 200 --expect-ratio 3 --out benchmarks/results/parse.json

``--expect-p50-us`` checks this checkout's p50 (a question must stay far below the query
path's ~2 ms); ``--expect-ratio`` checks p50(this) / p50(baseline); ``--expect-read`` the
fraction of dated questions read as a window. Each prints OK or FAIL; any FAIL exits 1.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import types
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANCHOR = datetime(2024, 11, 30, 16, 0, tzinfo=UTC)
CONCEPTS = ("potassium", "Hemoglobin A1c", "LDL cholesterol", "creatinine", "weight", "blood pressure", "INR")
CUES = (
    "What was the patient's {c} {t}?",
    "{c} {t}",
    "How many times was {c} measured {t}?",
    "What was the highest {c} {t}?",
    "Most recent {c} {t}",
)
MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTH = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _ord(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _time_phrase(rng: random.Random) -> str:
    d = date(2015, 1, 1) + timedelta(days=rng.randrange(3600))
    y2 = f"{d.year % 100:02d}"
    forms = [
        f"on {MONTH[d.month - 1]} {d.day}, {d.year}",
        f"on {d.isoformat()}",
        f"on {d.month}/{d.day}/{y2}",
        f"on {d.day}-{MON[d.month - 1]}-{d.year}",
        f"on {d.day:02d}-{MON[d.month - 1].upper()}-{y2}",
        f"on {MON[d.month - 1]} {_ord(d.day)}, {d.year}",
        f"on the {_ord(d.day)} of {MONTH[d.month - 1]} {d.year}",
        f"on {d.day} {MON[d.month - 1]} '{y2}",
        f"on {d.year}/{d.month:02d}/{d.day:02d}",
        f"on {d.year}{d.month:02d}{d.day:02d}",
        f"in Q{(d.month - 1) // 3 + 1} {d.year}",
        f"in the {('first', 'second')[d.month > 6]} half of {d.year}",
        f"in spring of {d.year}",
        f"in mid-{d.year}",
        f"in early {d.year}",
        f"in {MON[d.month - 1]}-{d.year}",
        f"in {MONTH[d.month - 1]} {d.year}",
        f"since {MONTH[d.month - 1]} {d.year}",
        "in the last 6 months",
        "over the past 2 years",
        "in " + str(d.year),
    ]
    return rng.choice(forms)


def questions(n: int, seed: int = 0) -> list[tuple[str, bool]]:
    """(question, has a time phrase): three in four dated, one in four plain."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = rng.choice(CONCEPTS)
        if rng.random() < 0.25:
            out.append((rng.choice(("What was the patient's {c}?", "latest {c}", "{c} trend")).format(c=c), False))
        else:
            out.append((rng.choice(CUES).format(c=c, t=_time_phrase(rng)), True))
    return out


def load_baseline(ref: str):
    """``plan_question`` from revision ``ref``, loaded beside this checkout's."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{ref}:{path}"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout

    tf = types.ModuleType("_baseline_timefilter")
    sys.modules[tf.__name__] = tf
    exec(compile(show("ragehr/retrieval/timefilter.py"), f"{ref}:timefilter.py", "exec"), tf.__dict__)
    it = types.ModuleType("_baseline_intent")
    sys.modules[it.__name__] = it
    src = show("ragehr/retrieval/intent.py").replace(
        "from ragehr.retrieval.timefilter import", "from _baseline_timefilter import"
    )
    exec(compile(src, f"{ref}:intent.py", "exec"), it.__dict__)
    return it.plan_question


def _times(plan, qs: list[str]) -> list[int]:
    out = []
    for q in qs:
        t0 = time.perf_counter_ns()
        plan(q, ANCHOR)
        out.append(time.perf_counter_ns() - t0)
    return out


def _pct(xs: list[int], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] / 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="main", help="git revision to compare against (default: main)")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--expect-p50-us", type=float)
    ap.add_argument("--expect-ratio", type=float)
    ap.add_argument("--expect-read", type=float)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from ragehr.retrieval.intent import plan_question

    old = load_baseline(a.baseline)
    qs = questions(a.n, a.seed)
    texts = [q for q, _ in qs]
    for plan in (plan_question, old):  # warm up: regex caches, first-call costs
        _times(plan, texts[:50])
    t_new: list[int] = []
    t_old: list[int] = []
    for r in range(a.rounds):
        order = ((plan_question, t_new), (old, t_old))
        for plan, acc in order if r % 2 == 0 else order[::-1]:
            acc.extend(_times(plan, texts))
    dated = [q for q, has in qs if has]
    read_new = sum(plan_question(q, ANCHOR).window.is_filter for q in dated) / len(dated)
    read_old = sum(old(q, ANCHOR).window.is_filter for q in dated) / len(dated)
    res = {
        "baseline": a.baseline,
        "questions": len(qs),
        "dated": len(dated),
        "rounds": a.rounds,
        "p50_us": {"this": _pct(t_new, 0.5), "baseline": _pct(t_old, 0.5)},
        "p95_us": {"this": _pct(t_new, 0.95), "baseline": _pct(t_old, 0.95)},
        "mean_us": {"this": statistics.fmean(t_new) / 1000, "baseline": statistics.fmean(t_old) / 1000},
        "dated_read_as_window": {"this": round(read_new, 4), "baseline": round(read_old, 4)},
    }
    res["p50_ratio"] = round(res["p50_us"]["this"] / res["p50_us"]["baseline"], 3)
    res["p95_ratio"] = round(res["p95_us"]["this"] / res["p95_us"]["baseline"], 3)
    print("| plan_question | this checkout | baseline " + a.baseline + " | ratio |")
    print("|---|---|---|---|")
    for k in ("p50_us", "p95_us"):
        print(f"| {k} | {res[k]['this']:.1f} | {res[k]['baseline']:.1f} | {res[k.replace('_us', '_ratio')]:.2f} |")
    print(f"| dated questions read as a window | {read_new:.3f} | {read_old:.3f} | |")
    ok = True
    for name, got, want, good in (
        ("p50_us", res["p50_us"]["this"], a.expect_p50_us, lambda g, w: g <= w),
        ("p50_ratio", res["p50_ratio"], a.expect_ratio, lambda g, w: g <= w),
        ("dated_read_as_window", read_new, a.expect_read, lambda g, w: g >= w),
    ):
        if want is not None:
            passed = good(got, want)
            ok &= passed
            sign = ">=" if name == "dated_read_as_window" else "<="
            print(f"{'OK' if passed else 'FAIL'} {name}: {got:.3f} (expected {sign} {want})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
