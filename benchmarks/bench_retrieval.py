"""Index build cost and retrieval quality/latency on the shared records (issue: hybrid index).

    .venv/bin/python benchmarks/bench_retrieval.py [--shared ../shared/data] [--out benchmarks/results/retrieval.json]
        [--record PATH ...] [--embedder minilm] [--seed 0] [--cache-dir DIR]

For each patient (the shared Synthea C-CDA + FHIR files, merged by patient id, and the MedAlign
sample; or the records given with --record), in one process:

- builds its index from scratch with an empty embedding cache and reports the time per stage
  (parse / chunk / bm25 / embed / write), chunks per second and peak RSS;
- generates questions with known gold evidence (ragehr.eval.generated, sampled across the
  whole timeline) and reports recall@10 and MRR of bm25, dense and hybrid retrieval, and
  p50/p95 query latency of each (query embedding included for dense and hybrid).

Prints a markdown table; writes the raw figures as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ragehr.config import IndexConfig
from ragehr.eval.generated import generate_qa
from ragehr.eval.metrics import mrr, recall_at_k
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--record", type=Path, nargs="*", default=None, help="record files instead of the shared set")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-type", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="reuse an embedding cache (then build times exclude embedding: use for latency-only runs)",
    )
    args = ap.parse_args()

    if args.record:
        paths = list(args.record)
    else:
        paths = [
            args.shared / "synthea" / "ccda",
            args.shared / "synthea" / "fhir",
            args.shared / "medalign" / "sample-ehr-clean.xml",
        ]
    work = Path(tempfile.mkdtemp(prefix="ragehr-bench-"))
    cfg = IndexConfig(embedder=args.embedder)
    from ragehr.embeddings import load_embedder

    embedder = load_embedder(args.embedder)
    embedder.embed(["warm up"])  # model load is not part of any patient's build time
    t0 = time.perf_counter()
    summaries = build_indexes(paths, work / "idx", cfg, cache_dir=args.cache_dir or work / "cache", embedder=embedder)
    wall = time.perf_counter() - t0
    failed = [s for s in summaries if s.status != "built"]
    if failed:
        print(f"failed: {[s.message for s in failed]}", file=sys.stderr)
    rows = []
    totals = {"parse": 0.0, "chunk": 0.0, "bm25": 0.0, "embed": 0.0, "write": 0.0}
    n_chunks = 0
    all_lat: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": []}
    all_hits: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": []}
    all_rr: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": []}
    for s in summaries:
        if s.status != "built":
            continue
        for k in totals:
            totals[k] += s.seconds.get(k, 0.0)
        n_chunks += s.n_chunks
        idx = load_patient_index(work / "idx", s.patient_id, embedder=embedder)
        items = [
            it for it in generate_qa(idx.stored.record, seed=args.seed, per_type=args.per_type) if it.evidence_event_ids
        ]
        row = {
            "patient_id": s.patient_id,
            "events": s.n_events,
            "chunks": s.n_chunks,
            "questions": len(items),
            "seconds": s.seconds,
        }
        for retr in ("bm25", "dense", "hybrid"):
            lat, rec, rr = [], [], []
            for it in items:
                t = time.perf_counter()
                hits, _ = search(idx, it.question, k=10, retriever=retr)
                lat.append((time.perf_counter() - t) * 1000)
                ranked = [h.chunk.event_ids for h in hits]
                rec.append(recall_at_k(ranked, it.evidence_event_ids, 10) or 0.0)
                rr.append(mrr(ranked, it.evidence_event_ids) or 0.0)
            row[retr] = {
                "recall@10": statistics.fmean(rec) if rec else None,
                "mrr": statistics.fmean(rr) if rr else None,
                "p50_ms": pct(lat, 0.5),
                "p95_ms": pct(lat, 0.95),
            }
            all_lat[retr] += lat
            all_hits[retr] += rec
            all_rr[retr] += rr
        rows.append(row)
    build_total = sum(totals.values())
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "embedder": embedder.model_id,
        "patients": len(rows),
        "chunks": n_chunks,
        "wall_seconds": wall,
        "stage_seconds": totals,
        "embed_share_of_build": totals["embed"] / build_total if build_total else None,
        "chunks_per_second": n_chunks / build_total if build_total else None,
        "peak_rss_mb": peak_rss_mb(),
        "questions": len(all_hits["bm25"]),
        "retrievers": {
            r: {
                "recall@10": statistics.fmean(all_hits[r]) if all_hits[r] else None,
                "mrr": statistics.fmean(all_rr[r]) if all_rr[r] else None,
                "p50_ms": pct(all_lat[r], 0.5),
                "p95_ms": pct(all_lat[r], 0.95),
            }
            for r in all_lat
        },
        "per_patient": rows,
    }
    print(f"# retrieval benchmark: {result['patients']} patients, {n_chunks} chunks, {result['questions']} questions")
    print(f"machine: {result['machine']}; embedder {result['embedder']}")
    print("\n| stage | seconds | share |\n|---|---|---|")
    for k, v in totals.items():
        print(f"| {k} | {v:.2f} | {v / build_total:.1%} |")
    print(
        f"| **total** | {build_total:.2f} | chunks/s {result['chunks_per_second']:.1f}, peak RSS {result['peak_rss_mb']:.0f} MB |"
    )
    print("\n| retriever | recall@10 | MRR | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for r, v in result["retrievers"].items():
        print(f"| {r} | {v['recall@10']:.3f} | {v['mrr']:.3f} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
