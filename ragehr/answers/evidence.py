"""Which chunks hold the events a computed answer cites, so that they can be packed first.

:func:`chunks_for` picks, for a set of event ids, a small set of the index's chunks that
holds them all: greedily the chunk that covers the most still-uncovered events per token (a
per-concept series table covers a year of values in one piece; a day's group covers one
value). The packer then takes these chunks before the retrieved ones, within the same budget;
what does not fit is not cited, and :func:`ragehr.answers.wording.word` declines.
"""

from __future__ import annotations

from collections.abc import Iterable

from ragehr.index.search import PatientIndex
from ragehr.types import Chunk

__all__ = ["chunks_for"]


def _by_event(index: PatientIndex) -> dict[str, list[Chunk]]:
    got = index.memo.get("answers:event-chunks")
    if got is None:
        table: dict[str, list[Chunk]] = {}
        for c in index.stored.chunks:
            for eid in c.event_ids:
                table.setdefault(eid, []).append(c)
        got = index.memo["answers:event-chunks"] = table
    return got


def chunks_for(index: PatientIndex, event_ids: Iterable[str]) -> list[Chunk]:
    """Chunks of ``index`` that together hold every event of ``event_ids`` that any chunk
    holds, best coverage per token first (ties by chunk id), oldest first within the result."""
    table = _by_event(index)
    todo = {eid for eid in event_ids if eid in table}
    chosen: list[Chunk] = []
    while todo:
        cands = {c.chunk_id: c for eid in todo for c in table[eid]}
        best = max(
            cands.values(),
            key=lambda c: (len(todo.intersection(c.event_ids)) / max(1, c.n_tokens), -c.n_tokens, c.chunk_id),
        )
        chosen.append(best)
        todo -= set(best.event_ids)
    return sorted(chosen, key=lambda c: (c.start is None, c.start.timestamp() if c.start else 0.0, c.chunk_id))
