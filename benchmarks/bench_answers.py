"""What a computed answer adds to a question on a MedAlign-length record (issue 20, item 6),
and how often it is right, side by side with the context the generated path builds anyway.

    python benchmarks/make_record.py benchmarks/data/synthetic_median.xml --size median --seed 0 --shared ../shared/data
    python benchmarks/bench_answers.py benchmarks/data/synthetic_median.xml [--repeats 5] [--expect-ms 20]

Builds the record's index (hashing embedder, into benchmarks/data/answers-index, once), writes
generated questions of every type (``generate_qa``, 3 per type), and times for each question,
interleaved in one run:

- ``context``: ``prepare_context`` (retrieval and packing at rag@2k: what every answer needs);
- ``computed``: ``try_computed`` (plan, concept resolution, computation, the cited chunks packed
  first, wording, the grounding check): the whole computed answer.

The added cost is ``computed - context`` per question (median over repeats); the table gives
its p50 and p95 over the questions, the ratio of the medians, and the computed answers'
strict accuracy. ``--expect-ms`` prints OK/FAIL for "added p50 < N ms" (exit 1 on FAIL).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragehr.config import IndexConfig
from ragehr.eval.generated import ALL_QTYPES, generate_qa
from ragehr.eval.metrics.answers import score_answer
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index
from ragehr.llm.extractive import ExtractiveBackend
from ragehr.pipeline.ask import try_computed
from ragehr.pipeline.spec import ContextSpec, prepare_context


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record")
    ap.add_argument("--index-dir", default="benchmarks/data/answers-index")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--per-type", type=int, default=3)
    ap.add_argument("--expect-ms", type=float, default=None)
    args = ap.parse_args()

    [s] = build_indexes([Path(args.record)], Path(args.index_dir), IndexConfig(embedder="hashing"))
    idx = load_patient_index(args.index_dir, s.patient_id)
    be = ExtractiveBackend()
    spec = ContextSpec(budget=2048, answer="computed")
    items = generate_qa(idx.stored.record, per_type=args.per_type, qtypes=ALL_QTYPES)
    # warm both paths once (lexicon, event->chunk table, BM25 caches), outside the timing
    for it in items:
        prepare_context(idx, it.question, spec, be)
        try_computed(idx, it.question, spec, be, "computed")
    ctx_t: dict[str, list[float]] = defaultdict(list)
    comp_t: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        for it in items:
            t0 = time.perf_counter()
            prepare_context(idx, it.question, spec, be)
            t1 = time.perf_counter()
            try_computed(idx, it.question, spec, be, "computed")
            t2 = time.perf_counter()
            ctx_t[it.item_id].append(t1 - t0)
            comp_t[it.item_id].append(t2 - t1)
    acc: dict[str, list[float]] = defaultdict(list)
    for it in items:
        r, *_ = try_computed(idx, it.question, spec, be, "computed")
        acc[it.qtype].append(score_answer(r.generation.text, it)["accuracy"] if r is not None else 0.0)
    ctx = [statistics.median(ctx_t[i.item_id]) * 1000 for i in items]
    comp = [statistics.median(comp_t[i.item_id]) * 1000 for i in items]
    added = [c - x for c, x in zip(comp, ctx)]
    n_tok = sum(c.n_tokens for c in idx.stored.chunks)
    print(
        f"record: {args.record} ({len(idx.stored.record.events)} events, {len(idx.stored.chunks)} chunks, "
        f"{n_tok:,} chunk tokens); {len(items)} questions x {args.repeats} repeats; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| path | p50 ms | p95 ms |")
    print("|---|---|---|")
    print(f"| context (rag@2k retrieval + packing) | {_pct(ctx, 0.5):.1f} | {_pct(ctx, 0.95):.1f} |")
    print(f"| computed answer (whole) | {_pct(comp, 0.5):.1f} | {_pct(comp, 0.95):.1f} |")
    print(f"| added by the computed answer | {_pct(added, 0.5):.1f} | {_pct(added, 0.95):.1f} |")
    print(f"\nratio computed / context (p50): {_pct(comp, 0.5) / _pct(ctx, 0.5):.2f}\n")
    print("| question type | n | computed accuracy |")
    print("|---|---|---|")
    for q in sorted(acc):
        print(f"| {q} | {len(acc[q])} | {sum(acc[q]) / len(acc[q]):.2f} |")
    allv = [v for vs in acc.values() for v in vs]
    print(f"| all | {len(allv)} | {sum(allv) / len(allv):.3f} |")
    if args.expect_ms is not None:
        ok = _pct(added, 0.5) < args.expect_ms
        print(f"\n{'OK' if ok else 'FAIL'}   added p50 {_pct(added, 0.5):.1f} ms < {args.expect_ms:g} ms")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
