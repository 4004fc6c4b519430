"""MiniLM against the static (model2vec) embedder, and ragehr against its peers: one run (issue 12).

    nice .venv/bin/python benchmarks/bench_speed.py benchmarks/data/{small,median,large}.xml \\
        --minilm-cold small,median --minilm-cache /tmp/minilm-cache --peers median \\
        --out benchmarks/results/speed.json

Records come from ``benchmarks/make_record.py`` (with their ``.facts.jsonl``). In this one
process, for every record and for each embedder (``minilm``, ``static``), on the same chunks:

- **index build** time (per stage) and peak RSS growth. Static always starts from an empty
  embedding cache; MiniLM does for the records named in ``--minilm-cold`` and otherwise reads
  its vectors from ``--minilm-cache`` (filled by an earlier ``ragehr index --cache-dir``), so
  its build time there is *not* MiniLM's cost (the table says ``cached``); a cold record with
  an empty ``--minilm-cache`` fills it (``bench_minilm_int8.py`` then reuses the vectors);
- **query latency** p50/p95 of bm25, dense and hybrid over every question (the planted facts
  and the generated QA of ``ragehr.eval.generated``), with the query embedded each time (no
  LRU: each question is new to the embedder); plus hybrid p50 for a repeated question (LRU);
- **recall@10** of each retriever, and **evidence recall at 2k** evidence tokens for ``rag``
  (hybrid), on the planted facts and on the generated QA separately;
- the **hybrid query breakdown**: analyzer, BM25 scoring, query embedding, FAISS search,
  fusion, chunk lookup (each timed alone, p50 over the questions), against the whole search.

With ``--peers RECORD_STEMS``, on those records: the **llama-index** pipeline a user would
build (VectorStoreIndex over a FAISS IndexFlatIP store with MiniLM, BM25Retriever,
QueryFusionRetriever with num_queries=1 in reciprocal-rank mode), on ragehr's own chunks,
each retriever asked for the same candidate depth as ragehr's (``candidates``, 100) and the
fusion cut to 10; the same pipeline with the static embedder; and bm25s against rank-bm25
(``compare.run_bm25_peers``). Ratios are printed so that a busy machine does not change the
verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import PeakRSS, llamaindex_fusions, load_facts, pct, run_bm25_peers

from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.eval.generated import generate_qa
from ragehr.eval.metrics import recall_at_k
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search

RETRIEVERS = ("bm25", "dense", "hybrid")
BUDGET = 2048


def _questions(path: Path, record: Any) -> dict[str, list[tuple[str, list[str]]]]:
    has_facts = path.with_suffix(".facts.jsonl").is_file()  # make_record.py's records; not the shared ones
    facts = [(f["question"], f["gold"]) for f in load_facts(path, record)] if has_facts else []
    gen = [
        (it.question, list(it.evidence_event_ids))
        for it in generate_qa(record, seed=0, per_type=3)
        if it.evidence_event_ids
    ]
    return {"facts": facts, "generated": gen}


def _filled(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _ms(t: float) -> float:
    return (time.perf_counter() - t) * 1000


def build(path: Path, work: Path, name: str, embedder: Any, cache_dir: Path) -> tuple[dict, Any]:
    cfg = IndexConfig(embedder=name)
    with PeakRSS() as mem:
        t = time.perf_counter()
        [s] = build_indexes([path], work / f"idx-{name}", cfg, cache_dir=cache_dir, embedder=embedder)
        secs = time.perf_counter() - t
    if s.status != "built":
        raise SystemExit(f"{path}: index build failed: {s.message}")
    idx = load_patient_index(work / f"idx-{name}", s.patient_id, embedder=embedder)
    return {
        "chunks": s.n_chunks,
        "events": s.n_events,
        "build_s": secs,
        "stage_s": s.seconds,
        "embedded": s.n_embedded,
        "build_peak_rss_mb": mem.mb,
    }, idx


def quality_and_latency(idx: Any, qs: dict[str, list[tuple[str, list[str]]]]) -> dict:
    from ragehr.pipeline.context import build_context
    from ragehr.tokens import EstimateCounter

    out: dict[str, Any] = {}
    everything = [q for group in qs.values() for q in group]
    for retr in RETRIEVERS:
        lat = []
        rec: dict[str, list[float]] = {g: [] for g in qs}
        for group, items in qs.items():
            for question, gold in items:
                t = time.perf_counter()
                hits, _ = search(idx, question, k=10, retriever=retr)
                lat.append(_ms(t))
                rec[group].append(recall_at_k([h.chunk.event_ids for h in hits], gold, 10) or 0.0)
        out[retr] = {
            "p50_ms": pct(lat, 0.5),
            "p95_ms": pct(lat, 0.95),
            **{f"recall@10_{g}": statistics.fmean(v) if v else None for g, v in rec.items()},
        }
    # evidence recall is not timed: the query vectors of the passes above are reused (LRU)
    from ragehr.embeddings import QueryLRU

    idx = type(idx)(stored=idx.stored, bm25=idx.bm25, dense=idx.dense, embedder=QueryLRU(idx.embedder, size=4096))
    counter = EstimateCounter()
    for group, items in qs.items():
        vals = []
        for question, gold in items:
            ctx = build_context(idx, question, strategy="rag", budget_tokens=BUDGET, counter=counter)
            packed = {e for it in ctx.packed.items for e in it.event_ids}
            vals.append(sum(1 for g in set(gold) if g in packed) / len(set(gold)))
        out["hybrid"][f"evidence@2k_{group}"] = statistics.fmean(vals) if vals else None
    # a repeated question: the embedder's LRU answers it (what a UI re-asking sees)
    lru_idx = idx
    q0 = everything[0][0]
    search(lru_idx, q0, k=10)
    lat = []
    for _ in range(50):
        t = time.perf_counter()
        search(lru_idx, q0, k=10)
        lat.append(_ms(t))
    out["hybrid"]["repeat_p50_ms"] = pct(lat, 0.5)
    return out


def breakdown(idx: Any, questions: list[str]) -> dict:
    """Each piece of a hybrid query timed alone (p50 ms over ``questions``), as the query path
    runs it: row arrays from BM25 and FAISS, fused by ``fuse_rows``, hits built for the top 10."""
    from ragehr.retrieval.fusion import fuse_rows

    cfg = RetrievalConfig()
    n = cfg.candidates
    parts: dict[str, list[float]] = {
        k: [] for k in ("analyzer", "bm25", "embed", "faiss", "fusion", "chunk lookup", "search total")
    }
    weights = {"bm25": cfg.weights.get("bm25", 1.0), "dense": cfg.weights.get("dense", 1.0)}
    weights["dense"] *= float(getattr(idx.embedder, "dense_weight", 1.0))
    ids = idx.bm25.ids
    for q in questions:
        t = time.perf_counter()
        idx.bm25.analyzer.tokenize(q)
        parts["analyzer"].append(_ms(t))
        t = time.perf_counter()
        b = idx.bm25.search_rows(q, n)
        parts["bm25"].append(_ms(t) - parts["analyzer"][-1])
        t = time.perf_counter()
        qv = idx.embedder.embed([q])[0]
        parts["embed"].append(_ms(t))
        t = time.perf_counter()
        d = idx.dense.search_rows(qv, n)
        parts["faiss"].append(_ms(t))
        t = time.perf_counter()
        rows, scores = fuse_rows({"bm25": b, "dense": d}, idx.bm25.id_rank, weights=weights)
        top = [ids[r] for r in rows[:10].tolist()]
        parts["fusion"].append(_ms(t))
        t = time.perf_counter()
        [idx.chunk(cid) for cid in top]
        parts["chunk lookup"].append(_ms(t))
        t = time.perf_counter()
        search(idx, q, k=10)
        parts["search total"].append(_ms(t))
    return {k: pct(v, 0.5) for k, v in parts.items()}


def run_llamaindex(idx: Any, qs: dict[str, list[tuple[str, list[str]]]], embedder: Any, depth: int) -> dict:
    fusions, build_s, mb, ids_of = llamaindex_fusions(idx.stored.chunks, embedder, {"fusion": depth})
    fusion = fusions["fusion"]
    lat = []
    rec: dict[str, list[float]] = {g: [] for g in qs}
    for group, items in qs.items():
        for question, gold in items:
            t = time.perf_counter()
            res = fusion.retrieve(question)
            lat.append(_ms(t))
            rec[group].append(recall_at_k(ids_of(res)[:10], gold, 10) or 0.0)
    return {
        "build_s": build_s,
        "build_peak_rss_mb": mb,
        "p50_ms": pct(lat, 0.5),
        "p95_ms": pct(lat, 0.95),
        **{f"recall@10_{g}": statistics.fmean(v) if v else None for g, v in rec.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="*")
    ap.add_argument("--check", type=Path, help="only print the targets of a saved result JSON")
    ap.add_argument(
        "--minilm-cold",
        default="small,median",
        help="record stems whose MiniLM build starts from an empty cache (the rest read --minilm-cache)",
    )
    ap.add_argument("--minilm-cache", type=Path, default=None, help="MiniLM embedding cache for the other records")
    ap.add_argument("--minilm-skip", default="", help="record stems to run with the static embedder only")
    ap.add_argument("--peers", default="", help="record stems to run llama-index and rank-bm25 on (e.g. median)")
    ap.add_argument("--models-dir", type=Path, default=None, help="where the distilled static model is kept")
    ap.add_argument("--breakdown-questions", type=int, default=30, help="questions timed piece by piece")
    ap.add_argument(
        "--minilm-reference",
        type=Path,
        help="an earlier result JSON: for records MiniLM is skipped on here (--minilm-skip), its MiniLM "
        "row is taken from there (quality does not depend on the machine; marked from_reference)",
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument("--expect", action="store_true", help="exit 1 when any target of check_targets (issue 22) is FAIL")
    args = ap.parse_args()
    if args.check:
        checked = check_targets(json.loads(args.check.read_text()))
        return 1 if args.expect and not all(t["ok"] for t in checked) else 0
    if not args.records:
        ap.error("give record files (or --check FILE)")

    from ragehr.embeddings import load_embedder
    from ragehr.embeddings.static import default_models_dir

    cold = {s for s in args.minilm_cold.split(",") if s}
    peers = {s for s in args.peers.split(",") if s}
    skip = {s for s in args.minilm_skip.split(",") if s}
    embedders = {
        "minilm": load_embedder("minilm"),
        "static": load_embedder("static", models_dir=args.models_dir or default_models_dir()),
    }
    for e in embedders.values():
        e.embed(["warm up"])  # model loading (and a first distillation) is not part of any build
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_start": os.getloadavg(),
        "embedders": {k: e.model_id for k, e in embedders.items()},
        "records": {},
    }
    from ragehr.ehr import load_record

    for path in args.records:
        stem = path.stem
        record = load_record(path)
        qs = _questions(path, record)
        work = Path(tempfile.mkdtemp(prefix="ragehr-speed-"))
        row: dict[str, Any] = {"questions": {g: len(v) for g, v in qs.items()}}
        print(
            f"\n## {path.name}: {len(record.events)} events, {len(qs['facts'])} planted facts, "
            f"{len(qs['generated'])} generated questions",
            flush=True,
        )
        idxs = {}
        for name, emb in embedders.items():
            if name == "minilm" and stem in skip:
                continue
            use_cache = name == "minilm" and stem not in cold and args.minilm_cache is not None
            cache = args.minilm_cache if use_cache else work / f"cache-{name}"
            if name == "minilm" and stem in cold and args.minilm_cache is not None and not _filled(args.minilm_cache):
                cache = args.minilm_cache  # empty: a cold build, whose vectors later runs can reuse
            b, idx = build(path, work, name, emb, cache)
            if name == "minilm":
                minilm_cache = cache
            b["embeddings_from_cache"] = bool(use_cache)
            b.update(quality_and_latency(idx, qs))
            b["breakdown_ms"] = breakdown(
                idx, [q for q, _ in qs["facts"] + qs["generated"]][: args.breakdown_questions]
            )
            row[name] = b
            idxs[name] = idx
            h = b["hybrid"]
            print(
                f"{name:>6}: {b['chunks']} chunks, build {b['build_s']:.2f} s{' (cached)' if use_cache else ''} "
                f"(embed {b['stage_s'].get('embed', 0):.2f} s), peak +{b['build_peak_rss_mb']:.0f} MB; hybrid p50 "
                f"{h['p50_ms']:.2f} ms p95 {h['p95_ms']:.2f} ms, repeat {h['repeat_p50_ms']:.2f} ms; recall@10 "
                f"facts {_f(h['recall@10_facts'])} generated {_f(h['recall@10_generated'])}; evidence@2k facts "
                f"{_f(h['evidence@2k_facts'])} generated {_f(h['evidence@2k_generated'])}",
                flush=True,
            )
        if "minilm" not in row and args.minilm_reference:
            ref = json.loads(args.minilm_reference.read_text())["records"].get(path.name, {}).get("minilm")
            if ref is not None:
                if ref["chunks"] != row["static"]["chunks"]:
                    raise SystemExit(
                        f"{path.name}: the reference MiniLM run had {ref['chunks']} chunks, this one "
                        f"{row['static']['chunks']}: not the same chunks"
                    )
                row["minilm"] = {**ref, "from_reference": str(args.minilm_reference)}
                print(f"minilm: from {args.minilm_reference} (same {ref['chunks']} chunks)", flush=True)
        s = row["static"]
        if "minilm" in row:
            m = row["minilm"]
            row["ratios_static_over_minilm"] = {
                "build_s": s["build_s"] / m["build_s"],
                "build_peak_rss_mb": s["build_peak_rss_mb"] / max(m["build_peak_rss_mb"], 1e-9),
                "hybrid_p50_ms": s["hybrid"]["p50_ms"] / m["hybrid"]["p50_ms"],
            }
        if stem in peers and "minilm" in idxs:
            depth = RetrievalConfig().candidates
            # llama-index gets MiniLM's chunk vectors from the cache this run's MiniLM build
            # filled (its own build would embed them again: add MiniLM's embed stage above)
            from ragehr.embeddings.cache import EmbeddingCache, embed_with_cache

            class CachedMiniLM:
                model_id, dim = embedders["minilm"].model_id, embedders["minilm"].dim
                cache = EmbeddingCache(minilm_cache)

                def embed(self, texts, batch_size=32, progress=None):
                    if len(texts) == 1:  # a query: MiniLM itself, as at query time
                        return embedders["minilm"].embed(texts)
                    return embed_with_cache(embedders["minilm"], texts, self.cache)

            row["llamaindex_minilm"] = run_llamaindex(idxs["static"], qs, CachedMiniLM(), depth)
            row["llamaindex_minilm"]["chunk_vectors_from_cache"] = True
            row["llamaindex_minilm"]["minilm_embed_s_same_chunks"] = (
                row.get("minilm", {}).get("stage_s", {}).get("embed")
            )
            row["llamaindex_static"] = run_llamaindex(idxs["static"], qs, embedders["static"], depth)
            facts_only = [{"question": q, "gold": g} for q, g in qs["facts"]]
            row["bm25_peers"] = run_bm25_peers(idxs["static"], facts_only)
            li = row["llamaindex_minilm"]
            row["ratios_llamaindex_minilm_over_ragehr_static"] = {
                "build_s": li["build_s"] / s["build_s"],
                "p50_ms": li["p50_ms"] / s["hybrid"]["p50_ms"],
                "p95_ms": li["p95_ms"] / s["hybrid"]["p95_ms"],
            }
            print(
                f"llama-index (MiniLM vectors cached, depth {depth}): build {li['build_s']:.1f} s "
                f"(+ MiniLM embedding {li['minilm_embed_s_same_chunks']} s), p50 {li['p50_ms']:.1f} ms, "
                f"recall@10 facts {li['recall@10_facts']:.3f} generated {li['recall@10_generated']:.3f}; "
                f"llama-index (static): build {row['llamaindex_static']['build_s']:.1f} s, "
                f"p50 {row['llamaindex_static']['p50_ms']:.1f} ms",
                flush=True,
            )
        result["records"][path.name] = row
        shutil.rmtree(work, ignore_errors=True)
        if args.out:  # after every record, so a later failure loses nothing
            result["load_average_end"] = os.getloadavg()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=str))
    print_tables(result)
    result["targets"] = check_targets(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
    return 1 if args.expect and not all(t["ok"] for t in result["targets"]) else 0


def check_targets(result: dict, record: str | None = None) -> list[dict]:
    """Issue 22's targets, each OK or FAIL with the measured figure: on the median record (the
    file name says ``median``; or ``record``) the static build <= 10 s and >= 20x faster than
    MiniLM's, hybrid p50 <= 5 ms, and against llama-index + MiniLM >= 20x build, >= 10x query p50
    and recall not lower; on **every** record run with both embedders, static's hybrid recall@10
    and evidence recall at 2k no lower than MiniLM's by more than 0.01, for every question set.
    Also run on a saved JSON: ``python benchmarks/bench_speed.py --check benchmarks/results/speed.json``."""
    if record is None:
        record = next((k for k in result["records"] if "median" in k), "median.xml")
    out = []

    def target(name: str, value: float, ok: bool, want: str) -> None:
        out.append({"target": name, "value": round(value, 4), "want": want, "ok": bool(ok)})

    row = result["records"].get(record)
    if row is not None:
        s = row["static"]
        target(f"{record}: static build (s)", s["build_s"], s["build_s"] <= 10, "<= 10 s")
        target(f"{record}: static hybrid query p50 (ms)", s["hybrid"]["p50_ms"], s["hybrid"]["p50_ms"] <= 5, "<= 5 ms")
        if "minilm" in row and not row["minilm"].get("embeddings_from_cache"):
            m = row["minilm"]
            ref = " (MiniLM: reference run)" if m.get("from_reference") else ""
            target(
                f"{record}: static build speed-up over MiniLM{ref}",
                m["build_s"] / s["build_s"],
                m["build_s"] / s["build_s"] >= 20,
                ">= 20x",
            )
        li = row.get("llamaindex_minilm")
        if li:
            li_build = li["build_s"] + (li.get("minilm_embed_s_same_chunks") or 0.0)
            target(
                f"{record}: llama-index (MiniLM) build / ragehr static build",
                li_build / s["build_s"],
                li_build / s["build_s"] >= 20,
                ">= 20x",
            )
            target(
                f"{record}: llama-index (MiniLM) query p50 / ragehr static hybrid p50",
                li["p50_ms"] / s["hybrid"]["p50_ms"],
                li["p50_ms"] / s["hybrid"]["p50_ms"] >= 10,
                ">= 10x",
            )
            for key in [k for k in s["hybrid"] if k.startswith("recall@10_") and li.get(k) is not None]:
                d = s["hybrid"][key] - li[key]
                target(f"{record}: ragehr static - llama-index (MiniLM) {key}", d, d >= 0, ">= 0")
    for name, r in result["records"].items():
        if "minilm" not in r:
            continue
        m, s = r["minilm"], r["static"]
        for key in [k for k in s["hybrid"] if k.startswith(("recall@10_", "evidence@2k_"))]:
            if s["hybrid"][key] is None or m["hybrid"].get(key) is None:
                continue
            d = s["hybrid"][key] - m["hybrid"][key]
            target(f"{name}: static - MiniLM hybrid {key}", d, d >= -0.01, ">= -0.01")
    print("\n| target | measured | wanted | |\n|---|---|---|---|")
    for t in out:
        print(f"| {t['target']} | {t['value']:.3f} | {t['want']} | {'OK' if t['ok'] else 'FAIL'} |")
    return out


def print_tables(result: dict) -> None:
    print(
        "\n| record | chunks | build MiniLM | build static | ratio | peak RSS MiniLM / static (MB) | hybrid p50 MiniLM / static (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in result["records"].items():
        s = row["static"]
        m = row.get("minilm")
        if m is None:
            print(
                f"| {name} | {s['chunks']} | (not run) | {s['build_s']:.2f} s | | - / {s['build_peak_rss_mb']:.0f} | - / {s['hybrid']['p50_ms']:.2f} |"
            )
            continue
        print(
            f"| {name} | {s['chunks']} | {m['build_s']:.1f} s{' (cached)' if m['embeddings_from_cache'] else ''} | "
            f"{s['build_s']:.2f} s | {m['build_s'] / s['build_s']:.0f}x | {m['build_peak_rss_mb']:.0f} / {s['build_peak_rss_mb']:.0f} | "
            f"{m['hybrid']['p50_ms']:.2f} / {s['hybrid']['p50_ms']:.2f} |"
        )
    print(
        "\n| record | embedder | retriever | p50 ms | p95 ms | recall@10 facts | recall@10 generated | evidence@2k facts | evidence@2k generated |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in result["records"].items():
        for emb in [e for e in ("minilm", "static") if e in row]:
            for r in RETRIEVERS:
                v = row[emb][r]
                ev = f"{_f(v['evidence@2k_facts'])} | {_f(v['evidence@2k_generated'])}" if r == "hybrid" else "| "
                print(
                    f"| {name} | {emb} | {r} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | {_f(v['recall@10_facts'])} | "
                    f"{_f(v['recall@10_generated'])} | {ev} |"
                )
    print(
        "\n| record | embedder | " + " | ".join(next(iter(result["records"].values()))["static"]["breakdown_ms"]) + " |"
    )
    print("|---|---|" + "---|" * 7)
    for name, row in result["records"].items():
        for emb in [e for e in ("minilm", "static") if e in row]:
            print(f"| {name} | {emb} | " + " | ".join(f"{v:.3f}" for v in row[emb]["breakdown_ms"].values()) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
