"""Filling a token budget with evidence. Pure functions over chunks; no retrieval, no I/O.

Every piece is cited as ``[n] <text>``; its text is the canonical rendering, so it states its
date and kind. The packers never exceed the budget: each piece is measured with the budget's
own token counter, and the joined block is measured again at the end (pieces are dropped from
the end of the selection until it fits), so tokenizer effects at piece boundaries cannot push
it over.

- :func:`pack_ranked`: greedily by rank: take each piece that still fits, skip those that do
  not (``rag`` with chunks; ``visit-bm25`` with whole visits, never cut).
- :func:`pack_most_recent`: the record's pieces newest first, the oldest one cut to its most
  recent tokens (``recent``: MedAlign's truncation to the most recent tokens); the cut piece
  keeps its first line, which states its date and kind.
- :func:`pack_all`: everything, or an error saying how far over the budget it is (``full``).

Orders (:data:`ORDERS`): ``chronological`` (oldest first), ``relevance`` (best first), or
``edges`` (best at the two ends of the block, weakest in the middle: the first-ranked piece
first, the second last, the third second, ... as for models that read the middle of a long
context worst).

A cut piece carries only the event ids whose line it still shows (see
:func:`kept_event_ids`), so gold evidence is not credited for text that was cut away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragehr.errors import RagehrError
from ragehr.tokens import TokenCounter
from ragehr.types import Chunk, EventKind, EvidenceItem

CLOSE_TAG = "</ehr>"
ORDERS = ("chronological", "relevance", "edges")


class ContextTooLongError(RagehrError):
    """The whole record does not fit the model's window (the ``full`` strategy)."""

    exit_code = 2


def sanitize(text: str) -> str:
    """Evidence may not close the data block it sits in."""
    return text.replace(CLOSE_TAG, "</ ehr>").replace("<ehr>", "< ehr>")


def piece_text(marker: int, chunk: Chunk) -> str:
    return f"[{marker}] {sanitize(chunk.text)}\n"


@dataclass(frozen=True)
class Packed:
    """The selected evidence, in the order it will be shown, and what it costs."""

    items: tuple[EvidenceItem, ...]
    budget_tokens: int
    used_tokens: int
    truncated_chunk: str | None = None
    """The chunk id whose text was cut (``recent`` only)."""

    def block(self) -> str:
        return "".join(f"[{it.marker}] {it.text}\n" for it in self.items)


def kept_event_ids(chunk: Chunk, kept_text: str) -> tuple[str, ...]:
    """The event ids of ``chunk`` whose content is in ``kept_text`` (a cut piece's text).

    A structured chunk is its title line then one line per event, in ``event_ids`` order: an
    event is kept when its whole line is in ``kept_text``. When the lines do not pair up one
    to one (a line split because it was too long), an event is kept only when every line is
    kept. A note chunk (one event) is kept when any of its body is."""
    lines = sanitize(chunk.text).split("\n")
    body = lines[1:]
    if chunk.kind is EventKind.NOTE:
        return chunk.event_ids if any(ln.strip() and ln in kept_text for ln in body) else ()
    if len(body) == len(chunk.event_ids):
        return tuple(e for e, ln in zip(chunk.event_ids, body) if ln in kept_text)
    return chunk.event_ids if all(ln in kept_text for ln in body) else ()


def _item(marker: int, chunk: Chunk, counter: TokenCounter, text: str | None = None) -> EvidenceItem:
    body = sanitize(text if text is not None else chunk.text)
    event_ids = chunk.event_ids if text is None else kept_event_ids(chunk, body)
    return EvidenceItem(
        marker=marker,
        chunk_id=chunk.chunk_id,
        kind=chunk.kind,
        start=chunk.start,
        end=chunk.end,
        text=body,
        source=chunk.sources[0] if chunk.sources else "",
        n_tokens=counter.count(f"[{marker}] {body}\n"),
        event_ids=event_ids,
    )


def _chrono_key(c: Chunk) -> tuple[int, float, int, str]:
    return (0, 0.0, c.ordinal, c.chunk_id) if c.start is None else (1, c.start.timestamp(), c.ordinal, c.chunk_id)


def _finish(
    chosen: list[tuple[Chunk, str | None]], budget: int, counter: TokenCounter, order: str, truncated: str | None = None
) -> Packed:
    """Order the chosen pieces (given best first), number them, and make sure the joined
    block fits; if a real tokenizer's boundary effects push it over, drop the least wanted."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    while True:
        if order == "chronological":
            shown = sorted(chosen, key=lambda ct: _chrono_key(ct[0]))
        elif order == "edges":
            shown = chosen[0::2] + chosen[1::2][::-1]
        else:
            shown = chosen
        items = tuple(_item(i, c, counter, t) for i, (c, t) in enumerate(shown, start=1))
        used = counter.count("".join(f"[{it.marker}] {it.text}\n" for it in items)) if items else 0
        if used <= budget or not chosen:
            cut = truncated if any(c.chunk_id == truncated for c, _ in chosen) else None
            return Packed(items=items, budget_tokens=budget, used_tokens=used, truncated_chunk=cut)
        chosen = chosen[:-1]


def _cost(counter: TokenCounter, chunk: Chunk, marker_guess: int) -> int:
    return counter.count(piece_text(marker_guess, chunk))


def pack_ranked(ranked: Sequence[Chunk], budget: int, counter: TokenCounter, order: str = "chronological") -> Packed:
    """Take pieces in rank order, each one that still fits (skipping those that do not)."""
    chosen: list[tuple[Chunk, str | None]] = []
    used = 0
    seen: set[str] = set()
    for c in ranked:
        if c.chunk_id in seen:
            continue
        cost = _cost(counter, c, len(chosen) + 1 + 9)  # room for a marker of more digits
        if used + cost <= budget:
            chosen.append((c, None))
            seen.add(c.chunk_id)
            used += cost
    return _finish(chosen, budget, counter, order)


def tail_tokens(text: str, n: int, counter: TokenCounter) -> str:
    """The longest suffix of ``text`` (cut at a character) whose count is at most ``n``."""
    if n <= 0:
        return ""
    if counter.count(text) <= n:
        return text
    lo, hi = 0, len(text)  # find the smallest start index whose suffix fits
    while lo < hi:
        mid = (lo + hi) // 2
        if counter.count(text[mid:]) <= n:
            hi = mid
        else:
            lo = mid + 1
    return text[lo:]


def pack_most_recent(
    pieces: Sequence[Chunk], budget: int, counter: TokenCounter, order: str = "chronological"
) -> Packed:
    """The record's pieces from newest back, whole while they fit; the next older piece is cut
    to its most recent tokens to fill what is left (MedAlign keeps the last N tokens)."""
    newest_first = sorted(pieces, key=_chrono_key, reverse=True)
    chosen: list[tuple[Chunk, str | None]] = []
    used = 0
    truncated = None
    for c in newest_first:
        cost = _cost(counter, c, len(chosen) + 1 + 9)
        if used + cost <= budget:
            chosen.append((c, None))
            used += cost
            continue
        # The cut piece keeps its first line (date, kind) so it still says when it is from.
        header = sanitize(c.text).split("\n", 1)[0]
        lead = f"{header}\n..."
        prefix = counter.count(f"[{len(chosen) + 10}] {lead}\n")
        tail = tail_tokens(sanitize(c.text), budget - used - prefix, counter)
        if tail.strip():
            chosen.append((c, lead + tail))
            truncated = c.chunk_id
        break
    return _finish(chosen, budget, counter, order, truncated)


def pack_all(pieces: Sequence[Chunk], budget: int, counter: TokenCounter, order: str = "chronological") -> Packed:
    """Every piece, or :class:`ContextTooLongError` when the record does not fit."""
    chosen: list[tuple[Chunk, str | None]] = [(c, None) for c in pieces]
    total = sum(_cost(counter, c, i) for i, c in enumerate(pieces, start=1))
    if total > budget:
        raise ContextTooLongError(
            f"the whole record needs about {total} tokens but the budget for evidence is {budget}; "
            "use --strategy rag or recent, or a model with a larger window"
        )
    packed = _finish(chosen, budget, counter, order)
    if len(packed.items) < len(pieces):
        raise ContextTooLongError(
            f"the whole record does not fit the evidence budget of {budget} tokens; use --strategy rag or recent"
        )
    return packed
