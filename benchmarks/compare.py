"""ragehr against the tools users would otherwise pick, on MedAlign-scale records, in one run.

    .venv/bin/python benchmarks/compare.py benchmarks/data/median.xml --peers \
        --out benchmarks/results/compare-median.json
    .venv/bin/python benchmarks/compare.py benchmarks/data/{small,median,large}.xml \
        --out benchmarks/results/growth.json

Records come from ``benchmarks/make_record.py`` (with their ``.facts.jsonl``: planted, dated
facts whose location is known). For each record, in this one process, with the same chunks
and the same all-MiniLM-L6-v2 model:

- **ragehr** hybrid: index build time from an empty embedding cache, size on disk, peak RSS
  growth during the build, query latency p50/p95 and recall@10 on the planted-fact questions;
- with ``--peers``: the **llama-index** pipeline a user would build (VectorStoreIndex with the
  same embedder in a FAISS IndexFlatIP store, plus its BM25Retriever, fused by
  QueryFusionRetriever with num_queries=1 and reciprocal-rank mode) on ragehr's own chunks;
  and **bm25s against rank-bm25** inside ragehr (same analyzer tokens);
- **evidence recall at budgets** 512/1k/2k/4k/8k/32k evidence tokens for ``rag``,
  ``visit-bm25`` and ``recent`` (model-free: the share of the planted evidence inside the
  packed context).

Ratios are printed as ragehr / peer, so a drifting machine does not change the verdict.
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

from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search

BUDGETS = (512, 1024, 2048, 4096, 8192, 32768)


class PeakRSS:
    """Peak resident memory growth over a block: Linux's VmHWM, reset on entry."""

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.start = self._read("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = self._read("VmHWM")
        self.mb = max(0.0, (self.peak - self.start) / 1024)

    @staticmethod
    def _read(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
        return 0.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def load_facts(record_path: Path, record: Any) -> list[dict]:
    facts_path = record_path.with_suffix(".facts.jsonl")
    facts = [json.loads(line) for line in facts_path.read_text().splitlines() if line.strip()]
    by_path = {e.source.path: e.event_id for e in record.events}
    for f in facts:
        f["gold"] = [by_path[f["source_path"]]] if f["source_path"] in by_path else []
    return [f for f in facts if f["gold"]]


def hit(ranked_event_ids: list[tuple[str, ...]], gold: list[str]) -> float:
    g = set(gold)
    return 1.0 if any(g & set(ids) for ids in ranked_event_ids[:10]) else 0.0


def run_ragehr(
    path: Path, work: Path, embedder: Any, cache_dir: Path | None = None, embedder_name: str = "minilm"
) -> tuple[dict, Any]:
    cfg = IndexConfig(embedder=embedder_name)
    with PeakRSS() as mem:
        t = time.perf_counter()
        [s] = build_indexes([path], work / "idx", cfg, cache_dir=cache_dir or work / "cache", embedder=embedder)
        build = time.perf_counter() - t
    if s.status != "built":
        raise SystemExit(f"index build failed: {s.message}")
    idx = load_patient_index(work / "idx", s.patient_id, embedder=embedder)
    return {
        "chunks": s.n_chunks,
        "events": s.n_events,
        "build_s": build,
        "stage_s": s.seconds,
        "index_mb": dir_mb(Path(s.index_path)),
        "build_peak_rss_mb": mem.mb,
    }, idx


def query_ragehr(idx: Any, facts: list[dict], retriever: str = "hybrid") -> dict:
    lat, rec = [], []
    for f in facts:
        t = time.perf_counter()
        hits, _ = search(idx, f["question"], k=10, retriever=retriever)
        lat.append((time.perf_counter() - t) * 1000)
        rec.append(hit([h.chunk.event_ids for h in hits], f["gold"]))
    return {"p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "recall@10": statistics.fmean(rec)}


def answer_all(idx: Any, facts: list[dict]) -> dict:
    """Answer every planted-fact question end to end (rag at a 2k window, extractive backend):
    proves the record answers, and how often the answer quotes the planted fact."""
    from ragehr.llm.extractive import ExtractiveBackend
    from ragehr.pipeline.ask import ask

    backend = ExtractiveBackend()
    lat, quoted = [], []
    for f in facts:
        t = time.perf_counter()
        r = ask(idx, f["question"], backend, strategy="rag", budget=2048)
        lat.append((time.perf_counter() - t) * 1000)
        quoted.append(1.0 if str(f["answer"]).lower() in r.generation.text.lower() else 0.0)
    return {"ask_p50_ms": pct(lat, 0.5), "ask_p95_ms": pct(lat, 0.95), "answer_quotes_fact": statistics.fmean(quoted)}


def llamaindex_embedding(embedder: Any) -> Any:
    """ragehr's embedder object (same model, same vectors) behind llama-index's embedding API,
    so a comparison measures the pipelines, not two copies of one model."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class Wrapped(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.embed([query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed(texts, batch_size=32).tolist()

    return Wrapped(embed_batch_size=32)


def llamaindex_fusions(chunks: Any, embedder: Any, depths: dict[str, int]) -> tuple[dict[str, Any], float, float, Any]:
    """The llama-index pipeline a user would build over ragehr's ``chunks``: one
    VectorStoreIndex (FAISS IndexFlatIP) embedded with ``embedder``, and for each name in
    ``depths`` a QueryFusionRetriever (vector + BM25, each asked for that many candidates,
    reciprocal rank fusion to the top 10, one query). Returns the retrievers, the build
    seconds and peak RSS growth, and ``ids_of(results)``: the event ids of each result."""
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever
    from llama_index.vector_stores.faiss import FaissVectorStore

    nodes = [TextNode(id_=c.chunk_id, text=c.text) for c in chunks]
    with PeakRSS() as mem:
        t = time.perf_counter()
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(embedder.dim))
        vindex = VectorStoreIndex(
            nodes,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=llamaindex_embedding(embedder),
            show_progress=False,
        )
        fusions = {
            name: QueryFusionRetriever(
                [vindex.as_retriever(similarity_top_k=k), BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k)],
                llm=MockLLM(),
                num_queries=1,
                mode="reciprocal_rerank",
                similarity_top_k=10,
                use_async=False,
            )
            for name, k in depths.items()
        }
        build = time.perf_counter() - t
    # FAISS-backed nodes come back with the store's own ids; map by text when needed. The map
    # is this record's (it was a module-level cache filled once, stale from the second record).
    events = {c.chunk_id: c.event_ids for c in chunks}
    by_text = {c.text: c.chunk_id for c in chunks}

    def ids_of(results: Any) -> list[tuple[str, ...]]:
        return [events.get(n.node.node_id) or events.get(by_text.get(n.node.get_content(), "")) or () for n in results]

    return fusions, build, mem.mb, ids_of


def run_llamaindex(idx: Any, facts: list[dict], embedder: Any) -> dict:
    """llama-index's QueryFusionRetriever (vector + BM25, reciprocal rank fusion) over the same
    chunks and the same MiniLM model object, in two settings, both reported:

    - ``same_depth`` (the headline): each sub-retriever returns as many candidates as ragehr
      fuses (``RetrievalConfig.candidates``, 100), fused to the top 10, as ragehr does;
    - ``defaults``: llama-index's usual setting, the top 10 of each sub-retriever.

    The top-level figures are ``same_depth``'s; ``defaults`` is nested under its name."""
    n = len(idx.stored.chunks)
    depth = min(RetrievalConfig().candidates, n)
    fusions, build, mb, ids_of = llamaindex_fusions(
        idx.stored.chunks, embedder, {"same_depth": depth, "defaults": min(10, n)}
    )
    out: dict[str, Any] = {"build_s": build, "build_peak_rss_mb": mb, "candidates_per_retriever": depth}
    for name, fusion in fusions.items():
        lat, rec = [], []
        for f in facts:
            t = time.perf_counter()
            res = fusion.retrieve(f["question"])
            lat.append((time.perf_counter() - t) * 1000)
            rec.append(hit(ids_of(res), f["gold"]))
        figures = {"p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "recall@10": statistics.fmean(rec)}
        if name == "same_depth":
            out.update(figures)
        else:
            out[name] = {**figures, "candidates_per_retriever": min(10, n)}
    return out


def run_bm25_peers(idx: Any, facts: list[dict]) -> dict:
    import numpy as np
    from rank_bm25 import BM25Okapi

    from ragehr.retrieval.bm25 import BM25Index

    chunks = idx.stored.chunks
    analyzer = idx.bm25.analyzer
    texts = [c.text for c in chunks]
    ids = [c.chunk_id for c in chunks]
    t = time.perf_counter()
    ours = BM25Index.build(texts, ids, analyzer)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    peer = BM25Okapi([analyzer.tokenize(x) for x in texts])
    t_peer = time.perf_counter() - t
    out = {}
    for name, fn in (
        ("bm25s", lambda q: [s.chunk_id for s in ours.search(q, 10)]),
        (
            "rank_bm25",
            lambda q: [ids[i] for i in np.argsort(-peer.get_scores(analyzer.tokenize(q)), kind="stable")[:10]],
        ),
    ):
        lat, rec = [], []
        for f in facts:
            t = time.perf_counter()
            top = fn(f["question"])
            lat.append((time.perf_counter() - t) * 1000)
            rec.append(hit([idx.chunk(c).event_ids for c in top], f["gold"]))
        out[name] = {"p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "recall@10": statistics.fmean(rec)}
    out["bm25s"]["build_s"], out["rank_bm25"]["build_s"] = t_ours, t_peer
    return out


def evidence_by_budget(idx: Any, facts: list[dict]) -> dict:
    """Model-free: the budget is the evidence budget itself (tokens of packed EHR content,
    by the conservative estimate counter), so no prompt template or model is involved."""
    from ragehr.pipeline.context import build_context
    from ragehr.tokens import EstimateCounter

    counter = EstimateCounter()
    out: dict[str, dict[int, float]] = {}
    for strategy in ("rag", "visit-bm25", "recent"):
        out[strategy] = {}
        for b in BUDGETS:
            vals = []
            for f in facts:
                ctx = build_context(idx, f["question"], strategy=strategy, budget_tokens=b, counter=counter)
                packed = {e for it in ctx.packed.items for e in it.event_ids}
                vals.append(sum(1 for g in f["gold"] if g in packed) / len(f["gold"]))
            out[strategy][b] = statistics.fmean(vals)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="+")
    ap.add_argument("--peers", action="store_true", help="also run llama-index and rank-bm25 side by side")
    ap.add_argument("--no-budgets", action="store_true", help="skip evidence recall by budget")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cache-dir", type=Path, help="reuse an embedding cache (build times then exclude embedding)")
    ap.add_argument(
        "--embedder", default="minilm", help="ragehr's (and the llama-index pipeline's) embedder: minilm or static"
    )
    args = ap.parse_args()

    from ragehr.embeddings import load_embedder
    from ragehr.embeddings.static import default_models_dir

    embedder = load_embedder(args.embedder, models_dir=default_models_dir())
    embedder.embed(["warm up"])
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "embedder": embedder.model_id,
        "records": {},
    }
    for path in args.records:
        work = Path(tempfile.mkdtemp(prefix="ragehr-compare-"))
        from ragehr.ehr import load_record

        record = load_record(path)
        facts = load_facts(path, record)
        print(f"\n## {path.name}: {len(record.events)} events, {len(facts)} planted-fact questions", flush=True)
        r, idx = run_ragehr(path, work, embedder, args.cache_dir, args.embedder)
        r.update(query_ragehr(idx, facts))
        r["bm25_only"] = query_ragehr(idx, facts, "bm25")
        r.update(answer_all(idx, facts))
        row: dict[str, Any] = {"ragehr": r, "facts": len(facts)}
        print(
            f"ragehr: {r['chunks']} chunks, build {r['build_s']:.1f} s (embed {r['stage_s'].get('embed', 0):.1f} s), "
            f"index {r['index_mb']:.1f} MB, build peak RSS +{r['build_peak_rss_mb']:.0f} MB, "
            f"query p50 {r['p50_ms']:.1f} ms p95 {r['p95_ms']:.1f} ms, recall@10 {r['recall@10']:.3f} "
            f"(bm25 alone {r['bm25_only']['recall@10']:.3f}); ask (rag 2k, extractive) p50 {r['ask_p50_ms']:.0f} ms, "
            f"answers quoting the planted fact {r['answer_quotes_fact']:.2f}",
            flush=True,
        )
        if args.peers:
            li = run_llamaindex(idx, facts, embedder)
            row["llamaindex"] = li
            bm = run_bm25_peers(idx, facts)
            row["bm25"] = bm
            print("\n| figure | ragehr hybrid | llama-index fusion | ratio ragehr/peer |\n|---|---|---|---|")
            for k, unit in (
                ("build_s", "s"),
                ("p50_ms", "ms"),
                ("p95_ms", "ms"),
                ("build_peak_rss_mb", "MB"),
                ("recall@10", ""),
            ):
                print(
                    f"| {k} | {r[k]:.3f} {unit} | {li[k]:.3f} {unit} | {r[k] / li[k] if li[k] else float('nan'):.2f} |"
                )
            d = li["defaults"]
            print(
                f"(llama-index at the same candidate depth, {li['candidates_per_retriever']} per retriever; with its "
                f"defaults, top 10 per retriever: recall@10 {d['recall@10']:.3f}, p50 {d['p50_ms']:.1f} ms)"
            )
            print("\n| figure | bm25s (ragehr) | rank-bm25 | ratio bm25s/rank-bm25 |\n|---|---|---|---|")
            for k in ("build_s", "p50_ms", "p95_ms", "recall@10"):
                a, b = bm["bm25s"][k], bm["rank_bm25"][k]
                print(f"| {k} | {a:.4f} | {b:.4f} | {a / b if b else float('nan'):.3f} |")
        if not args.no_budgets:
            eb = evidence_by_budget(idx, facts)
            row["evidence_recall_by_budget"] = eb
            print("\n| strategy | " + " | ".join(str(b) for b in BUDGETS) + " |\n|---|" + "---|" * len(BUDGETS))
            for s, vals in eb.items():
                print(f"| {s} | " + " | ".join(f"{vals[b]:.2f}" for b in BUDGETS) + " |")
        result["records"][path.name] = row
        shutil.rmtree(work, ignore_errors=True)
        sys.stdout.flush()
        if args.out:  # after every record, so a later failure loses nothing
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
