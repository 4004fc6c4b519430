"""Selecting a patient's evidence for a question under a token budget, by strategy.

Strategies share one renderer (chunk text is the canonical rendering) and one prompt, so
only the selection differs:

- ``rag``: hybrid (or bm25/dense) retrieval, packed greedily by rank;
- ``visit-bm25``: MedAlign's visit-level baseline: each visit is one document ranked by BM25
  against the question, added whole in rank order (a visit too large for what is left is
  skipped, never cut) until the budget is full, then shown chronologically;
- ``recent``: the whole record chronologically, truncated to its most recent tokens;
- ``full``: the whole record, or an error when it does not fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ragehr.config import ChunkingConfig, RetrievalConfig
from ragehr.ehr.render import event_header, render_event
from ragehr.errors import ConfigError
from ragehr.index.search import PatientIndex, search
from ragehr.packing import Packed, pack_all, pack_most_recent, pack_ranked
from ragehr.tokens import TokenCounter
from ragehr.types import Chunk, Event, EventKind, PatientRecord

STRATEGIES = ("rag", "visit-bm25", "recent", "full")
_WHOLE = ChunkingConfig(max_tokens=8192, overlap_tokens=0, series=False)


@dataclass(frozen=True)
class ContextResult:
    strategy: str
    retriever: str | None
    packed: Packed
    time_phrase: str | None = None
    intent: str | None = None
    """``rag`` only: what the question asked of time (see :mod:`ragehr.retrieval.intent`)."""
    time_fallback: str | None = None
    """``rag`` only: set when nothing about the question fell in its time window and the
    nearest dated evidence was packed instead (a sentence saying so)."""
    concepts: tuple = ()
    """``rag`` only: the record concepts the question was read as
    (:class:`ragehr.retrieval.concepts.ConceptMatch`), by own name or vocabulary."""
    expansion: str | None = None
    """``rag`` only: the words a vocabulary added to the query, when any."""


def record_pieces(record: PatientRecord) -> list[Chunk]:
    """The record as non-overlapping pieces for the long-context baselines: each note whole
    (split only past 8k tokens) and each (day, kind) group of events whole, chronologically.
    The text is the same canonical rendering the index's chunks use."""
    from ragehr.chunking import chunk_record

    return chunk_record(record, _WHOLE)


def visit_documents(record: PatientRecord) -> list[Chunk]:
    """One document per visit (events without a visit: one per calendar day), its events
    rendered chronologically under a visit header line."""
    groups: dict[str, list[Event]] = {}
    for e in record.events:
        key = e.visit_id or (f"day:{e.start.date().isoformat()}" if e.start else "undated")
        groups.setdefault(key, []).append(e)
    docs = []
    for key, events in groups.items():
        starts = [e.start for e in events if e.start is not None]
        ends = [e.end or e.start for e in events if e.start is not None]
        header = (
            next((event_header(e) for e in events if e.kind is EventKind.ENCOUNTER and e.code is None), None)
            or f"Visit {key}"
        )
        lines = [render_event(e) for e in events]
        text = f"Visit: {header}\n" + "\n".join(lines)
        cid = "visit-" + hashlib.sha256(f"{record.patient_id}\x1f{key}\x1f{text}".encode()).hexdigest()[:12]
        docs.append(
            Chunk(
                chunk_id=cid,
                patient_id=record.patient_id,
                kind=EventKind.ENCOUNTER,
                start=min(starts) if starts else None,
                end=max(ends) if ends else None,
                text=text,
                n_tokens=0,
                event_ids=tuple(e.event_id for e in events),
                sources=tuple(str(e.source) for e in events[:1]),
                visit_id=key if not key.startswith(("day:", "undated")) else None,
            )
        )
    return docs


def rank_visits(index: PatientIndex, question: str, docs: Sequence[Chunk]) -> list[Chunk]:
    """Visits by BM25 score against the question (the index's own analyzer), best first;
    ties and unmatched visits newest first."""
    from ragehr.retrieval.bm25 import BM25Index

    if not docs:
        return []
    key = ("visit-bm25", tuple(d.chunk_id for d in docs))
    bm = index.memo.get(key)
    if bm is None:
        bm = index.memo[key] = BM25Index.build([d.text for d in docs], [d.chunk_id for d in docs], index.bm25.analyzer)
    scores = bm.score_all(question)
    pos = {cid: i for i, cid in enumerate(bm.ids)}
    return sorted(
        docs,
        key=lambda d: (-scores[pos[d.chunk_id]], -(d.start.timestamp() if d.start else 0.0), d.chunk_id),
    )


def build_context(
    index: PatientIndex,
    question: str,
    *,
    strategy: str,
    budget_tokens: int,
    counter: TokenCounter,
    retriever: str = "hybrid",
    order: str = "chronological",
    retrieval: RetrievalConfig | None = None,
    pinned: Sequence[Chunk] = (),
    then: Sequence[Chunk] = (),
) -> ContextResult:
    """The evidence for ``question`` that ``strategy`` selects within ``budget_tokens``.

    ``rag`` only: ``pinned`` chunks are packed before the retrieved ones (the chunks that hold
    the events a computed answer cites, :func:`ragehr.answers.chunks_for`), ``then`` chunks
    after them (the record's most recent pieces, for the Self-Route retry), each while it
    fits."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if budget_tokens <= 0:
        raise ConfigError(
            f"no room for evidence: the budget leaves {budget_tokens} tokens after the prompt, question "
            "and answer; raise --budget"
        )
    record = index.stored.record
    if strategy == "rag":
        hits, plan = search(
            index, question, config=retrieval, k=max(200, (retrieval or RetrievalConfig()).k), retriever=retriever
        )
        packed = pack_ranked([*pinned, *(h.chunk for h in hits), *then], budget_tokens, counter, order)
        return ContextResult(
            strategy, retriever, packed, plan.phrase, plan.intent, plan.fallback, plan.concepts, plan.expansion or None
        )
    if strategy == "visit-bm25":
        if "visits" not in index.memo:
            index.memo["visits"] = visit_documents(record)
        ranked = rank_visits(index, question, index.memo["visits"])
        return ContextResult(strategy, None, pack_ranked(ranked, budget_tokens, counter, order))
    if "pieces" not in index.memo:
        index.memo["pieces"] = record_pieces(record)
    pieces = index.memo["pieces"]
    if strategy == "recent":
        return ContextResult(strategy, None, pack_most_recent(pieces, budget_tokens, counter, order))
    return ContextResult(strategy, None, pack_all(pieces, budget_tokens, counter, order))


def context_json(result: ContextResult, window: int | None = None) -> dict:
    p = result.packed
    return {
        "strategy": result.strategy,
        "retriever": result.retriever,
        "window_tokens": window,
        "budget_tokens": p.budget_tokens,
        "used_tokens": p.used_tokens,
        "time_phrase": result.time_phrase,
        "intent": result.intent,
        "time_fallback": result.time_fallback,
        "concepts": [m.to_json() for m in result.concepts],
        "expansion": result.expansion,
        "truncated_chunk": p.truncated_chunk,
        "chunks": [
            {
                "marker": it.marker,
                "chunk_id": it.chunk_id,
                "text": it.text,
                "kind": it.kind.value,
                "start": it.start.isoformat() if it.start else None,
                "end": it.end.isoformat() if it.end else None,
                "source": it.source,
                "n_tokens": it.n_tokens,
                "event_ids": list(it.event_ids),
            }
            for it in p.items
        ],
    }
