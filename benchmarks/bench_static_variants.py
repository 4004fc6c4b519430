"""Query-side variants of the static embedder, side by side in one run, on the same indexes (issue 22).

    python benchmarks/bench_static_variants.py benchmarks/data/synthetic_{small,median}.xml \\
        --minilm-cache benchmarks/data/minilm-cache --out benchmarks/results/static-variants.json

For each record, one static index and (when ``--minilm-cache`` holds its vectors) one MiniLM
index are built on the same chunks; then every variant answers every question (the planted
facts and the generated QA, as in ``bench_speed.py``) and reports hybrid recall@10 and
evidence recall at 2k, and which planted facts it misses. A variant changes only what the
query side does (the text the dense side embeds, the fusion weights); the indexes are the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import load_facts

from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.eval.generated import generate_qa
from ragehr.eval.metrics import recall_at_k
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search


class DenseQueryText:
    """The embedder with a rewrite of single-text (query) calls; indexing calls pass through."""

    def __init__(self, inner: Any, rewrite: Any) -> None:
        self.inner, self.rewrite = inner, rewrite
        self.model_id, self.dim = inner.model_id, inner.dim

    def embed(self, texts, batch_size=64, progress=None):
        if len(texts) == 1:
            texts = [self.rewrite(texts[0])]
        return self.inner.embed(texts, batch_size=batch_size, progress=progress)


def variants() -> dict[str, tuple[Any, RetrievalConfig]]:
    from ragehr.retrieval.intent import concept_text

    same = str  # the question as it is (the wrapper hides the embedder's own query_content_words)
    out = {
        "as is": (same, RetrievalConfig()),
        "dense 0.5": (same, RetrievalConfig(weights={"bm25": 1.0, "dense": 0.5})),
        "content words": (concept_text, RetrievalConfig()),
        "content words, dense 0.75": (concept_text, RetrievalConfig(weights={"bm25": 1.0, "dense": 0.75})),
        "content words, dense 0.5": (concept_text, RetrievalConfig(weights={"bm25": 1.0, "dense": 0.5})),
    }
    return out


def score(idx: Any, qs: dict[str, list[tuple[str, list[str]]]], cfg: RetrievalConfig) -> dict:
    from ragehr.pipeline.context import build_context
    from ragehr.tokens import EstimateCounter

    counter = EstimateCounter()
    out: dict[str, Any] = {}
    for group, items in qs.items():
        rec, ev, missed = [], [], []
        for question, gold in items:
            hits, _ = search(idx, question, k=10, config=cfg)
            r = recall_at_k([h.chunk.event_ids for h in hits], gold, 10) or 0.0
            rec.append(r)
            ctx = build_context(idx, question, strategy="rag", budget_tokens=2048, counter=counter, retrieval=cfg)
            packed = {e for it in ctx.packed.items for e in it.event_ids}
            e = sum(1 for g in set(gold) if g in packed) / len(set(gold))
            ev.append(e)
            if group == "facts" and (r < 1 or e < 1):
                missed.append(question)
        out[group] = {"recall@10": statistics.fmean(rec), "evidence@2k": statistics.fmean(ev), "n": len(items)}
        if group == "facts":
            out[group]["missed"] = missed
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="+")
    ap.add_argument("--minilm-cache", type=Path, help="MiniLM embedding cache holding these records' chunks")
    ap.add_argument("--minilm-variants", action="store_true", help="also run every variant with MiniLM")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from ragehr.ehr import load_record
    from ragehr.embeddings import QueryLRU, load_embedder
    from ragehr.embeddings.static import default_models_dir

    embedders = {"static": load_embedder("static", models_dir=default_models_dir())}
    if args.minilm_cache:
        embedders["minilm"] = load_embedder("minilm")
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "embedders": {k: e.model_id for k, e in embedders.items()},
        "records": {},
    }
    for path in args.records:
        record = load_record(path)
        facts = [(f["question"], f["gold"]) for f in load_facts(path, record)]
        gen = [
            (it.question, list(it.evidence_event_ids))
            for it in generate_qa(record, seed=0, per_type=3)
            if it.evidence_event_ids
        ]
        qs = {"facts": facts, "generated": gen}
        work = Path(tempfile.mkdtemp(prefix="ragehr-variants-"))
        row: dict[str, Any] = {}
        for name, emb in embedders.items():
            cache = args.minilm_cache if name == "minilm" else work / "cache-static"
            [s] = build_indexes([path], work / f"idx-{name}", IndexConfig(embedder=name), cache_dir=cache, embedder=emb)
            if s.status != "built":
                raise SystemExit(f"{path}: {s.message}")
            for vname, (rewrite, cfg) in variants().items():
                if name == "minilm" and vname != "as is" and not args.minilm_variants:
                    continue
                e = QueryLRU(DenseQueryText(emb, rewrite), size=4096)
                idx = load_patient_index(work / f"idx-{name}", s.patient_id, embedder=e)
                res = score(idx, qs, cfg)
                row[f"{name} / {vname}"] = res
                f, g = res["facts"], res["generated"]
                print(
                    f"{path.stem} | {name} / {vname} | facts r@10 {f['recall@10']:.3f} ev@2k {f['evidence@2k']:.3f} | "
                    f"generated r@10 {g['recall@10']:.3f} ev@2k {g['evidence@2k']:.3f} | missed {f['missed']}",
                    flush=True,
                )
        result["records"][path.name] = row
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
