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
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ragehr.errors import RagehrError
from ragehr.tokens import TokenCounter
from ragehr.types import Chunk, EvidenceItem

CLOSE_TAG = "</ehr>"


class ContextTooLongError(RagehrError):
    """The whole record does not fit the model's window (the ``full`` strategy)."""

    exit_code = 2


# Characters that read as the delimiters' but that NFKC leaves alone.
_LOOKALIKE = {
    "\u2039": "<", "\u203a": ">", "\u2329": "<", "\u232a": ">", "\u3008": "<", "\u3009": ">",
    "\u27e8": "<", "\u27e9": ">", "\u02c2": "<", "\u02c3": ">", "\u1438": "<", "\u1433": ">",
    "\u276c": "<", "\u276d": ">", "\u2770": "<", "\u2771": ">", "\u29fc": "<", "\u29fd": ">",
    "\u2215": "/", "\u2044": "/", "\u29f8": "/", "\u30ce": "/",
    "\u0435": "e", "\u0415": "e", "\u04bb": "h", "\u04ba": "h", "\u0570": "h", "\u0433": "r", "\u1d26": "r",
    "\u0280": "r", "\u027e": "r", "\u1d07": "e", "\u029c": "h",
}
_LT_LIKE = "<&\ufe64\uff1c" + "".join(k for k, v in _LOOKALIKE.items() if v == "<")
"""Every character that can begin a tag once folded: ``<``, ``&`` (an entity), the characters
whose NFKC holds ``<`` (a test checks all of Unicode) and the lookalikes. Text without any of
them is returned at once."""
_MAY_HOLD_TAG = re.compile("[" + re.escape(_LT_LIKE) + "]")
_IGNORABLE = frozenset({"Cf", "Mn", "Me", "Cc"})
_ENTITY = re.compile(r"&(?:(lt|gt|sol)|#0*(60|62|47)|#x0*(3c|3e|2f));?", re.IGNORECASE)
_ENTITY_CHAR = {"lt": "<", "gt": ">", "sol": "/", "60": "<", "62": ">", "47": "/", "3c": "<", "3e": ">", "2f": "/"}
# In the folded text: an opening bracket, then optional space and slash, then e-h-r (spaces
# allowed between the letters), not followed by a name character; up to the closing bracket.
_TAG = re.compile(r"<\s*(?:/\s*)?e\s*h\s*r(?![a-z0-9_-])(?P<rest>[^<>]{0,200}>)?")


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


def _folded(text: str) -> tuple[str, list[int]]:
    """``text`` as it reads (see :func:`_fold_char`; HTML entities for < > / decoded), and for
    each folded character the index in ``text`` of the character it came from."""
    chars: list[str] = []
    origin: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "&":
            m = _ENTITY.match(text, i)
            if m:
                key = next(g for g in m.groups() if g).lower()
                chars.append(_ENTITY_CHAR[key])
                origin.append(i)
                i = m.end()
                continue
        for f in _fold_char(ch):
            chars.append(f)
            origin.append(i)
        i += 1
    return "".join(chars), origin


def _span_end(text: str, origin: list[int], j: int) -> int:
    """The index in ``text`` just after the source of folded character ``j``."""
    start = origin[j]
    m = _ENTITY.match(text, start) if text[start] == "&" else None
    return m.end() if m else start + 1


def sanitize(text: str) -> str:
    """Evidence may never close or reopen the ``<ehr>`` block it sits in.

    Every variant of the delimiter tags is neutralised: any case, whitespace inside the tag
    (``</ehr >``, ``< /EHR>``), Unicode lookalikes (folded with NFKC first, so fullwidth
    ``＜/ｅｈｒ＞``, plus angle-bracket and Cyrillic lookalikes NFKC keeps), invisible format
    characters inside the tag and HTML entities (``&lt;/ehr&gt;``). The tag's brackets become
    ``[`` and ``]``, so the text still says what it said; nothing else is changed."""
    if not text or not _MAY_HOLD_TAG.search(text):
        return text
    folded, origin = _folded(text)
    if "<" not in folded:
        return text
    repl: dict[tuple[int, int], str] = {}
    for m in _TAG.finditer(folded):
        a = origin[m.start()]
        repl[(a, _span_end(text, origin, m.start()))] = "["
        if m.group("rest"):
            z = m.end() - 1
            repl[(origin[z], _span_end(text, origin, z))] = "]"
    if not repl:
        return text
    out = []
    pos = 0
    for (a, b), r in sorted(repl.items()):
        if a < pos:
            continue
        out.append(text[pos:a])
        out.append(r)
        pos = b
    out.append(text[pos:])
    result = "".join(out)
    # Replacing a bracket can never create a new tag, but check: a hostile text must not find
    # a path through this function.
    return result if result == text or not _TAG.search(_folded(result)[0]) else sanitize(result)


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


def _item(marker: int, chunk: Chunk, counter: TokenCounter, text: str | None = None) -> EvidenceItem:
    body = sanitize(text if text is not None else chunk.text)
    return EvidenceItem(
        marker=marker,
        chunk_id=chunk.chunk_id,
        kind=chunk.kind,
        start=chunk.start,
        end=chunk.end,
        text=body,
        source=chunk.sources[0] if chunk.sources else "",
        n_tokens=counter.count(f"[{marker}] {body}\n"),
        event_ids=chunk.event_ids,
    )


def _chrono_key(c: Chunk) -> tuple[int, float, int, str]:
    return (0, 0.0, c.ordinal, c.chunk_id) if c.start is None else (1, c.start.timestamp(), c.ordinal, c.chunk_id)


def _finish(
    chosen: list[tuple[Chunk, str | None]], budget: int, counter: TokenCounter, order: str, truncated: str | None = None
) -> Packed:
    """Order the chosen pieces (given best first), number them, and make sure the joined
    block fits; if a real tokenizer's boundary effects push it over, drop the least wanted."""
    if order not in ("chronological", "relevance"):
        raise ValueError(f"order must be 'chronological' or 'relevance', not {order!r}")
    while True:
        shown = sorted(chosen, key=lambda ct: _chrono_key(ct[0])) if order == "chronological" else chosen
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
