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

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ragehr.errors import RagehrError
from ragehr.packing.lookalikes import CONFUSABLE
from ragehr.tokens import TokenCounter
from ragehr.types import Chunk, EventKind, EvidenceItem

CLOSE_TAG = "</ehr>"
ORDERS = ("chronological", "relevance", "edges")


class ContextTooLongError(RagehrError):
    """The whole record does not fit the model's window (the ``full`` strategy)."""

    exit_code = 2


# Characters that read as the delimiters' but that NFKC leaves alone.
_LOOKALIKE = {
    "\u2039": "<",
    "\u203a": ">",
    "\u2329": "<",
    "\u232a": ">",
    "\u3008": "<",
    "\u3009": ">",
    "\u27e8": "<",
    "\u27e9": ">",
    "\u02c2": "<",
    "\u02c3": ">",
    "\u1438": "<",
    "\u1433": ">",
    "\u276c": "<",
    "\u276d": ">",
    "\u2770": "<",
    "\u2771": ">",
    "\u29fc": "<",
    "\u29fd": ">",
    "\u2215": "/",
    "\u2044": "/",
    "\u29f8": "/",
    "\u30ce": "/",
    "\u0435": "e",
    "\u0415": "e",
    "\u04bb": "h",
    "\u04ba": "h",
    "\u0570": "h",
    "\u0433": "r",
    "\u1d26": "r",
    "\u0280": "r",
    "\u027e": "r",
    "\u1d07": "e",
    "\u029c": "h",
}
_LOOKALIKE.update({k: v for k, v in CONFUSABLE.items() if k not in _LOOKALIKE})
_LT_LIKE = "<&\ufe64\uff1c" + "".join(k for k, v in _LOOKALIKE.items() if v == "<")
"""Every character that can begin a tag once folded: ``<``, ``&`` (an entity), the characters
whose NFKC holds ``<`` (a test checks all of Unicode) and the lookalikes. Text without any of
them is returned at once."""
_MAY_HOLD_TAG = re.compile("[" + re.escape(_LT_LIKE) + "]")
_IGNORABLE = frozenset({"Cf", "Mn", "Me", "Cc"})
_ENTITY = re.compile(r"&(?:(?:amp|#0*38|#x0*26);?)*(?:(lt|gt|sol)|#0*(60|62|47)|#x0*(3c|3e|2f));?", re.IGNORECASE)
"""An entity for ``<``, ``>`` or ``/``, also nested in encodings of ``&`` (``&amp;lt;``,
``&amp;amp;lt;``, ``&#x26;lt;``, ``&#38;#60;``): text unescaped twice must not turn into a tag."""
_ENTITY_CHAR = {"lt": "<", "gt": ">", "sol": "/", "60": "<", "62": ">", "47": "/", "3c": "<", "3e": ">", "2f": "/"}
_NAME_CHAR = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_REST = 200
"""How far (in folded characters) after ``<ehr`` a closing ``>`` is looked for."""


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """What one character reads as: NFKC, then lookalikes, lower case; ``""`` for invisible
    characters (zero-width space, soft hyphen, combining marks, control characters)."""
    if unicodedata.category(ch) in _IGNORABLE and not ch.isspace():
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        c = _LOOKALIKE.get(c, c)
        out.append(c.lower() if len(c.lower()) == 1 else c)
    return "".join(out)


def _read(text: str, i: int) -> tuple[str, int]:
    """The folded reading of the source character (or HTML entity) at ``i`` and the index
    just after it."""
    if text[i] == "&":
        m = _ENTITY.match(text, i)
        if m:
            return _ENTITY_CHAR[next(g for g in m.groups() if g).lower()], m.end()
    return _fold_char(text[i]), i + 1


def _tag_at(text: str, start: int) -> tuple[int, tuple[int, int] | None] | None:
    """If a delimiter tag begins at ``start`` (as the text reads once folded: ``<``, spaces, an
    optional ``/``, ``e``, ``h``, ``r`` with spaces between, then no name character), the
    source end of its ``<`` and the source span of its closing ``>`` (``None`` when there is
    none within reach); else ``None``. Reads the text lazily, so it stops at the first
    character that cannot continue a tag."""
    first, i = _read(text, start)
    if first != "<":
        return None
    lt_end = i
    want = "/ehr"  # what may come next, in order; "/" is optional
    state = 0
    n = len(text)
    while i < n:
        src = i
        folded, i = _read(text, i)
        for c in folded:
            if state == 4:  # after "ehr": the tag's name must end here
                if c in _NAME_CHAR and _plainly_continues(text, src):
                    return None
                return lt_end, _closing(text, src, folded, i)
            if c.isspace():
                continue
            if state == 0 and c == "/":
                state = 1
            elif c == want[max(state, 1)]:
                state = max(state, 1) + 1
            else:
                return None
    return (lt_end, None) if state == 4 else None


def _plainly_continues(text: str, src: int) -> bool:
    """Whether the character at ``src`` (with the combining marks after it) plainly continues
    a tag's name: its NFKC, lower-cased, begins with an ASCII letter, digit, ``_`` or ``-``.
    A lookalike of one (``È``, Cyrillic ``е``) reads as ``e`` for finding a tag but does not
    continue the name here: a reader may take ``<ehrÈ`` for ``<ehr`` and a letter, so it is
    neutralised (the safe side)."""
    j = src + 1
    while j < len(text) and unicodedata.category(text[j]) in ("Mn", "Me"):
        j += 1
    plain = unicodedata.normalize("NFKC", text[src:j]).lower()
    return bool(plain) and plain[0] in _NAME_CHAR


def _closing(text: str, src: int, folded: str, after: int) -> tuple[int, int] | None:
    """The source span of the ``>`` that ends a tag whose name ended before ``src``."""
    seen = 0
    i, pending = after, folded
    pos = src
    while True:
        for c in pending:
            if c == ">":
                return pos, i
            if c == "<":
                return None
            seen += 1
            if seen > _REST:
                return None
        if i >= len(text):
            return None
        pos = i
        pending, i = _read(text, i)


def sanitize(text: str) -> str:
    """Evidence may never close or reopen the ``<ehr>`` block it sits in.

    Every variant of the delimiter tags is neutralised: any case, whitespace inside the tag
    (``</ehr >``, ``< /EHR>``), Unicode lookalikes (folded with NFKC first, so fullwidth
    ``＜/ｅｈｒ＞``, plus angle-bracket and Cyrillic lookalikes NFKC keeps), invisible characters
    inside the tag and HTML entities (``&lt;/ehr&gt;``, also nested: ``&amp;lt;/ehr&amp;gt;``,
    ``&#x26;lt;``), and the confusables of :mod:`ragehr.packing.lookalikes`. The tag's brackets become ``[`` and
    ``]``, so the text still says what it said; nothing else is changed. Text without any
    character that can read as ``<`` is returned at once."""
    if not text or not _MAY_HOLD_TAG.search(text):
        return text
    out: list[str] = []
    pos = 0
    for m in _MAY_HOLD_TAG.finditer(text):
        s0 = m.start()
        if s0 < pos:
            continue
        found = _tag_at(text, s0)
        if found is None:
            continue
        lt_end, gt = found
        out.append(text[pos:s0])
        out.append("[")
        pos = lt_end
        if gt is not None:
            out.append(text[pos : gt[0]])
            out.append("]")
            pos = gt[1]
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


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
