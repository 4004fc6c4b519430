"""Cutting a :class:`PatientRecord` into retrievable chunks. Pure functions; no I/O.

- Notes are split on section headers, then sentences, into chunks of at most
  ``max_tokens`` with a small overlap of previous sentences. Each chunk starts with the
  note's header line (date, ``note``, type, title), so it states its date when read alone.
- Structured events are grouped by (calendar day, kind) into chunks of canonical lines
  ("Lab results on 2021-03-02:" then one line per result), split when over ``max_tokens``.

- Measured events (labs, vitals, observations with a value) are also gathered per concept
  (same system and code, or the same normalised name when uncoded) into compact dated tables,
  one per year, split by rows when long (:func:`chunk_series`); each row is one event, and the
  chunk's ``event_ids`` and ``sources`` run parallel to its rows. Off with
  ``ChunkingConfig(series=False)`` (the long-context baselines use that: no repeats).

Every event lands in at least one chunk, and chunk ids are stable for the same record and
config. This module does not index, embed or rank anything.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import TypeVar

from ragehr.config import ChunkingConfig
from ragehr.ehr.codes import concept_key
from ragehr.ehr.render import event_header, format_value
from ragehr.ehr.times import format_time
from ragehr.tokens import EstimateCounter, TokenCounter
from ragehr.types import Chunk, Event, EventKind, PatientRecord

KIND_TITLES: dict[EventKind, str] = {
    EventKind.LAB: "Lab results",
    EventKind.VITAL: "Vital signs",
    EventKind.MEDICATION: "Medications",
    EventKind.CONDITION: "Conditions and diagnoses",
    EventKind.PROCEDURE: "Procedures",
    EventKind.IMMUNIZATION: "Immunizations",
    EventKind.ALLERGY: "Allergies",
    EventKind.OBSERVATION: "Observations",
    EventKind.ENCOUNTER: "Encounters and visits",
    EventKind.OTHER: "Other events",
    EventKind.NOTE: "Notes",
}

_HEADER_LINE = re.compile(r"^(?:[A-Z][A-Za-z /&,()'-]{1,60}:|[A-Z][A-Z0-9 /&,()'-]{2,60})\s*$")
_INLINE_HEADER = re.compile(r"^([A-Z][A-Za-z /&()'-]{1,40}):\s+(\S.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sections(text: str) -> list[tuple[str | None, list[str]]]:
    """A note's text as (header, lines) sections. A header is a short line ending in a colon
    or in capitals; a line like ``Plan: continue eliquis`` opens a section too."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if _HEADER_LINE.match(line) and len(line.split()) <= 8:
            sections.append((line.rstrip(":").strip(), []))
            continue
        m = _INLINE_HEADER.match(line)
        if m and len(m.group(1).split()) <= 5 and sections[-1][1]:
            sections.append((m.group(1).strip(), [m.group(2)]))
            continue
        sections[-1][1].append(line)
    return [(h, lines) for h, lines in sections if lines or h]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _split_long(text: str, max_tokens: int, counter: TokenCounter) -> list[str]:
    """Cut a piece with no sentence breaks into word windows that fit."""
    words = text.split()
    out: list[str] = []
    cur: list[str] = []
    for w in words:
        while counter.count(w) > max_tokens:  # a single absurd token: cut by characters
            cut = max(1, max_tokens * 3 - 3)
            if cur:
                out.append(" ".join(cur))
                cur = []
            out.append(w[:cut])
            w = w[cut:]
        if cur and counter.count(" ".join([*cur, w])) > max_tokens:
            out.append(" ".join(cur))
            cur = []
        cur.append(w)
    if cur:
        out.append(" ".join(cur))
    return out


def _chunk_id(config_hash: str, patient_id: str, event_ids: Sequence[str], ordinal: int, text: str) -> str:
    h = hashlib.sha256()
    for part in (config_hash, patient_id, ",".join(event_ids), str(ordinal), text):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def chunk_note(
    note: Event, patient_id: str, config: ChunkingConfig, counter: TokenCounter | None = None
) -> list[Chunk]:
    """A note as chunks, each starting with the note's header line."""
    counter = counter or EstimateCounter()
    header = event_header(note)
    room = max(8, config.max_tokens - counter.count(header) - 1)
    # Units: sentences, each tagged with its section header (shown once per chunk).
    units: list[tuple[str | None, str]] = []
    for section, lines in split_sections(note.text):
        for line in lines:
            for sent in split_sentences(line):
                # Leave room for the section name that may prefix the sentence in a chunk.
                fit = max(4, room - 24)
                for piece in _split_long(sent, fit, counter) if counter.count(sent) > fit else [sent]:
                    units.append((section, piece))
        if not lines and section:
            units.append((None, section))
    bodies: list[str] = []
    cur: list[tuple[str | None, str]] = []

    def render(units_: list[tuple[str | None, str]]) -> str:
        parts: list[str] = []
        last: str | None = None
        for sec, sent in units_:
            if sec and sec != last:
                parts.append(f"\n{sec}: {sent}" if parts else f"{sec}: {sent}")
            else:
                parts.append(sent)
            last = sec
        return " ".join(parts).replace(" \n", "\n")

    i = 0
    while i < len(units):
        candidate = [*cur, units[i]]
        if cur and counter.count(render(candidate)) > room:
            bodies.append(render(cur))
            # overlap: carry the last sentences that fit in overlap_tokens
            carry: list[tuple[str | None, str]] = []
            for u in reversed(cur):
                if counter.count(render([u, *carry])) > config.overlap_tokens:
                    break
                carry.insert(0, u)
            if carry and counter.count(render([*carry, units[i]])) > room:
                carry = []
            cur = carry
            continue
        cur = candidate
        i += 1
    if cur or not bodies:
        bodies.append(render(cur))
    chunks = []
    eid = note.event_id
    for ordinal, body in enumerate(bodies):
        text = f"{header}\n{body}" if body else header
        chunks.append(
            Chunk(
                chunk_id=_chunk_id(config.config_hash(), patient_id, (eid,), ordinal, text),
                patient_id=patient_id,
                kind=EventKind.NOTE,
                start=note.start,
                end=note.end or note.start,
                text=text,
                n_tokens=counter.count(text),
                event_ids=(eid,),
                sources=(str(note.source),),
                visit_id=note.visit_id,
                note_type=note.note_type,
                title=note.title,
                ordinal=ordinal,
            )
        )
    return chunks


def _day(e: Event) -> date | None:
    return e.start.date() if e.start is not None else None


T = TypeVar("T")


def _fill(items: Sequence[T], room: int, counter: TokenCounter, line_of: Callable[[T], str]) -> list[list[T]]:
    """``items`` cut greedily into pieces of at most ``room`` tokens, each line counted with
    its newline; a line longer than ``room`` gets a piece of its own (never an empty piece)."""
    pieces: list[list[T]] = [[]]
    used = 0
    for item in items:
        n = counter.count(line_of(item)) + 1
        if pieces[-1] and used + n > room:
            pieces.append([])
            used = 0
        pieces[-1].append(item)
        used += n
    return pieces


def chunk_events(
    events: Sequence[Event],
    patient_id: str,
    config: ChunkingConfig,
    counter: TokenCounter | None = None,
) -> list[Chunk]:
    """Events of one (day, kind) group as chunks of canonical lines under a dated title."""
    counter = counter or EstimateCounter()
    if not events:
        return []
    kind = events[0].kind
    day = _day(events[0])
    title = f"{KIND_TITLES[kind]} on {day.isoformat()}:" if day else f"{KIND_TITLES[kind]} (undated):"
    room = config.max_tokens - counter.count(title) - 1
    lines: list[tuple[Event, str]] = []
    for e in events:
        line = event_header(e)
        lines += [(e, ln) for ln in ([line] if counter.count(line) <= room else _split_long(line, room, counter))]
    pieces = _fill(lines, room, counter, lambda item: item[1])
    chunks = []
    for ordinal, piece in enumerate(pieces):
        evs: list[Event] = []
        for e, _ in piece:
            if not evs or evs[-1] is not e:
                evs.append(e)
        text = title + "\n" + "\n".join(ln for _, ln in piece)
        eids = tuple(e.event_id for e in evs)
        starts = [e.start for e in evs if e.start is not None]
        ends = [e.end or e.start for e in evs if e.start is not None]
        visits = {e.visit_id for e in evs}
        chunks.append(
            Chunk(
                chunk_id=_chunk_id(config.config_hash(), patient_id, eids, ordinal, text),
                patient_id=patient_id,
                kind=kind,
                start=min(starts) if starts else None,
                end=max(ends) if ends else None,
                text=text,
                n_tokens=counter.count(text),
                event_ids=eids,
                sources=tuple(str(e.source) for e in evs),
                visit_id=visits.pop() if len(visits) == 1 else None,
                ordinal=ordinal,
            )
        )
    return chunks


def group_events(events: Iterable[Event]) -> list[list[Event]]:
    """Structured (non-note) events grouped by (calendar day, kind), in time order."""
    groups: dict[tuple[date | None, EventKind], list[Event]] = {}
    for e in events:
        if e.kind is not EventKind.NOTE:
            groups.setdefault((_day(e), e.kind), []).append(e)
    return list(groups.values())


_MEASURED = (EventKind.LAB, EventKind.VITAL, EventKind.OBSERVATION)


def _row(e: Event, with_unit: bool, with_clock: bool) -> str:
    """One table row: the date (and the clock time when the day has several rows), the value
    (with its unit unless the title states the one unit of every row), a status if any."""
    when = format_time(e.start, e.precision)
    if not with_clock:
        when = when[:10]
    out = f"{when} | {format_value(e.value)}" + (f" {e.unit}" if with_unit and e.unit else "")
    if e.status is not None:
        out += f" | {e.status.value}"
    return out


def chunk_series(
    events: Sequence[Event], patient_id: str, config: ChunkingConfig, counter: TokenCounter | None = None
) -> list[Chunk]:
    """Per-concept time-series chunks: for each measured concept with values on two or more
    occasions, a dated table per calendar year (split by rows when over ``max_tokens``)::

        Glucose [Mass/volume] in Blood (LOINC 2339-0): lab values in mg/dL in 2019, rows 1-14 of 14:
        2019-01-03 | 98
        2019-01-24 09:40 | 131
        2019-01-24 16:05 | 188

    The unit goes in the title when every row shares it; a row shows its clock time only when
    its day has several rows. Each row is one event; ``event_ids``/``sources`` are in row
    order."""
    counter = counter or EstimateCounter()
    groups: dict[str, list[Event]] = {}
    for e in events:
        if e.kind in _MEASURED and e.value is not None and e.start is not None and (e.text or e.code):
            groups.setdefault(concept_key(e), []).append(e)
    chunks: list[Chunk] = []
    for key in sorted(groups):
        evs = sorted(groups[key], key=lambda e: (e.start, e.event_id))
        if len({e.start for e in evs}) < 2:
            continue
        names: dict[str, int] = {}
        for e in evs:
            nm = " ".join((e.text or e.code or "").split())
            names[nm] = names.get(nm, 0) + 1
        name = max(names, key=lambda nm: (names[nm], nm))
        code = (
            f" ({evs[0].system} {evs[0].code})"
            if evs[0].code and evs[0].system
            else (f" ({evs[0].code})" if evs[0].code else "")
        )
        by_year: dict[int, list[Event]] = {}
        for e in evs:
            by_year.setdefault(e.start.year, []).append(e)  # type: ignore[union-attr]
        units = {e.unit for e in evs}
        one_unit = len(units) == 1 and None not in units
        unit = f" in {evs[0].unit}" if one_unit else ""
        per_day: dict[object, int] = {}
        for e in evs:
            per_day[e.start.date()] = per_day.get(e.start.date(), 0) + 1  # type: ignore[union-attr]
        for year, yevs in sorted(by_year.items()):
            rows = [(_row(e, not one_unit, per_day[e.start.date()] > 1), e) for e in yevs]  # type: ignore[union-attr]
            probe = f"{name}{code}: {evs[0].kind.value} values{unit} in {year}, rows 9999-9999 of 9999:"
            room = max(8, config.max_tokens - counter.count(probe) - 1)
            pieces = _fill(rows, room, counter, lambda item: item[0])
            first_row = 1
            for ordinal, piece in enumerate(pieces):
                last_row = first_row + len(piece) - 1
                title = f"{name}{code}: {evs[0].kind.value} values{unit} in {year}, rows {first_row}-{last_row} of {len(rows)}:"
                first_row = last_row + 1
                text = title + "\n" + "\n".join(line for line, _ in piece)
                pevs = [e for _, e in piece]
                eids = tuple(e.event_id for e in pevs)
                chunks.append(
                    Chunk(
                        chunk_id=_chunk_id(config.config_hash(), patient_id, ("series", key, *eids), ordinal, text),
                        patient_id=patient_id,
                        kind=evs[0].kind,
                        start=pevs[0].start,
                        end=max((e.end or e.start) for e in pevs),  # type: ignore[type-var]
                        text=text,
                        n_tokens=counter.count(text),
                        event_ids=eids,
                        sources=tuple(str(e.source) for e in pevs),
                        title=name,
                        ordinal=ordinal,
                        concept=key,
                    )
                )
    return chunks


def chunk_record(
    record: PatientRecord, config: ChunkingConfig | None = None, counter: TokenCounter | None = None
) -> list[Chunk]:
    """All chunks of a record: notes and day groups interleaved in the record's time order,
    then the per-concept series chunks (unless ``config.series`` is off)."""
    config = config or ChunkingConfig()
    counter = counter or EstimateCounter()
    # The same event twice (same content, same source locator) is chunked once.
    seen_ids: set[str] = set()
    events = []
    for e in record.events:
        if e.event_id not in seen_ids:
            seen_ids.add(e.event_id)
            events.append(e)
    chunks: list[Chunk] = []
    seen_groups: set[tuple[date | None, EventKind]] = set()
    groups = {(_day(g[0]), g[0].kind): g for g in group_events(events)}
    for e in events:
        if e.kind is EventKind.NOTE:
            chunks.extend(chunk_note(e, record.patient_id, config, counter))
            continue
        key = (_day(e), e.kind)
        if key not in seen_groups:
            seen_groups.add(key)
            chunks.extend(chunk_events(groups[key], record.patient_id, config, counter))
    if config.series:
        chunks.extend(chunk_series(events, record.patient_id, config, counter))
    return chunks
