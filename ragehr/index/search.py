"""Searching a patient's index: BM25, dense, or both fused, under time and kind filters.

``PatientIndex`` is an opened index with its retrievers; ``search`` is the one entry point
the CLI, the packer and the adapters call. Relative time in the question ("last 6 months",
"in 2019", "most recent") is read against the record's last event and applied as a filter,
or, for "latest"-style questions, as a recency run fused with the others.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ragehr.config import RetrievalConfig
from ragehr.errors import ConfigError, StaleIndexError
from ragehr.index.store import StoredIndex, open_index, reindex_hint
from ragehr.retrieval.fusion import rrf, weighted
from ragehr.retrieval.timefilter import TimeWindow, overlaps, parse_time_expression
from ragehr.types import Chunk, EventKind, Hit, ScoredId


class RetrievedChunk(BaseModel):
    """A hit with its chunk: what ``ragehr retrieve`` prints and the packer consumes."""

    model_config = ConfigDict(frozen=True)

    hit: Hit
    chunk: Chunk

    def to_json(self) -> dict:
        c = self.chunk
        return {
            "chunk_id": c.chunk_id,
            "rank": self.hit.rank,
            "score": self.hit.score,
            "kind": c.kind.value,
            "start": c.start.isoformat() if c.start else None,
            "end": c.end.isoformat() if c.end else None,
            "text": c.text,
            "source": c.sources[0] if c.sources else None,
            "sources": list(c.sources),
            "event_ids": list(c.event_ids),
            "components": self.hit.components,
        }


@dataclass
class PatientIndex:
    """An opened index: stored chunks plus ready retrievers. Load once, query many times."""

    stored: StoredIndex
    bm25: object
    dense: object | None
    embedder: object | None
    _chunks: dict[str, Chunk] = field(default_factory=dict)
    memo: dict[object, object] = field(default_factory=dict)
    """Derived views of the record that later layers compute once per opened index (the
    long-context baselines' pieces, the visit documents)."""

    @property
    def patient_id(self) -> str:
        return self.stored.manifest.patient_id

    @property
    def last_time(self) -> datetime | None:
        t = self.stored.manifest.last_time
        return datetime.fromisoformat(t) if t else None

    def chunk(self, chunk_id: str) -> Chunk:
        if not self._chunks:
            self._chunks = self.stored.chunk_by_id()
        return self._chunks[chunk_id]


def load_patient_index(
    index_dir: str | Path, patient_id: str, *, need_dense: bool = True, embedder=None, verify: bool = True
) -> PatientIndex:
    """Open a patient's index and its retrievers. The dense side loads the embedder recorded
    in the manifest (or checks the one given against it)."""
    from ragehr.retrieval.bm25 import BM25Index

    stored = open_index(Path(index_dir), patient_id, verify=verify)
    bm25 = BM25Index.load(stored.folder / "bm25")
    dense = emb = None
    if need_dense:
        from ragehr.retrieval.dense import DenseIndex

        dense = DenseIndex.load(stored.folder / "dense", expected_model_id=stored.manifest.embedder_id)
        if embedder is None:
            from ragehr.embeddings import QueryLRU, load_embedder
            from ragehr.embeddings.static import default_models_dir

            embedder = QueryLRU(load_embedder(
                stored.manifest.config.get("embedder", "minilm"), models_dir=default_models_dir(index_dir)
            ))
        if embedder.model_id != stored.manifest.embedder_id:
            raise StaleIndexError(
                f"index of {patient_id!r} was embedded with {stored.manifest.embedder_id}, "
                f"but the embedder now loaded is {embedder.model_id}; {reindex_hint(stored.manifest, patient_id)}"
            )
        emb = embedder
    return PatientIndex(stored=stored, bm25=bm25, dense=dense, embedder=emb)


def allowed_ids(
    chunks: Sequence[Chunk],
    since: datetime | None,
    until: datetime | None,
    kinds: Collection[EventKind] | None,
) -> set[str] | None:
    """Chunk ids passing the time and kind filters, or ``None`` when there is no filter."""
    if since is None and until is None and not kinds:
        return None
    return {
        c.chunk_id
        for c in chunks
        if (not kinds or c.kind in kinds) and overlaps(c.start, c.end, since, until)
    }


def search(
    index: PatientIndex,
    question: str,
    *,
    config: RetrievalConfig | None = None,
    k: int | None = None,
    retriever: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[EventKind] | None = None,
    use_question_time: bool = True,
) -> tuple[list[RetrievedChunk], TimeWindow]:
    """Rank a patient's chunks for a question. Explicit ``since``/``until`` win over time read
    from the question. Returns the hits and the time window that was applied."""
    config = config or RetrievalConfig()
    k = k or config.k
    retriever = retriever or config.retriever
    if retriever not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"unknown retriever {retriever!r}; use hybrid, bm25 or dense")
    window = TimeWindow(since=since, until=until)
    if since is None and until is None and use_question_time:
        window = parse_time_expression(question, index.last_time)
    allowed = allowed_ids(index.stored.chunks, window.since, window.until, kinds)
    if allowed is not None and not allowed:
        return [], window
    n = max(k, config.candidates)
    runs: dict[str, list[ScoredId]] = {}
    if retriever in ("hybrid", "bm25"):
        # a boolean mask is much faster for bm25 than a large set of ids
        runs["bm25"] = index.bm25.search(question, n, allowed=None if allowed is None else index.bm25.mask(allowed))
    if retriever in ("hybrid", "dense"):
        if index.dense is None or index.embedder is None:
            raise ConfigError("this index was opened without its dense side; open it with need_dense=True")
        qv = index.embedder.embed([question])[0]
        runs["dense"] = index.dense.search(qv, n, allowed=allowed)
    weights = {name: config.weights.get(name, 1.0) for name in runs}
    if window.recency and config.recency_prior > 0:
        pool = {s.chunk_id for run in runs.values() for s in run}
        ranked = sorted(
            (index.chunk(cid) for cid in pool),
            key=lambda c: (-(c.end or c.start).timestamp() if c.start else float("inf"), c.chunk_id),
        )
        runs["recency"] = [
            ScoredId(chunk_id=c.chunk_id, score=float((c.end or c.start).timestamp()) if c.start else 0.0)
            for c in ranked
        ]
        weights["recency"] = config.recency_prior
    if len(runs) == 1:
        name, run = next(iter(runs.items()))
        hits = [Hit(chunk_id=s.chunk_id, rank=i, score=s.score, components={name: s.score}) for i, s in enumerate(run, 1)]
    elif config.fusion == "rrf":
        hits = rrf(runs, k=config.rrf_k, weights=weights)
    else:
        hits = weighted(runs, weights=weights)
    return [RetrievedChunk(hit=h, chunk=index.chunk(h.chunk_id)) for h in hits[:k]], window
