"""The canonical text of events and records.

One rendering, used by the chunker and by the long-context baselines alike, so that the two
arms of every ablation read the same words. A structured event is one line::

    2018-10-08 20:05 | vital | Systolic blood pressure: 165 mmHg | LOINC 8480-6

A note is a header line and its text::

    2018-10-08 20:10 | note | emergency department note | <title>
    <text>
"""

from __future__ import annotations

from ragehr.ehr.times import format_time
from ragehr.types import Event, EventKind, PatientRecord


def format_value(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def event_header(e: Event) -> str:
    """The first line of an event's rendering: date, kind and what it is."""
    when = format_time(e.start, e.precision)
    if e.end is not None:
        when += f" to {format_time(e.end, e.precision)}"
    parts = [when, e.kind.value]
    if e.kind is EventKind.NOTE:
        if e.note_type:
            parts.append(e.note_type)
        if e.title and e.title != e.note_type:
            parts.append(e.title)
        return " | ".join(parts)
    what = e.text or (e.code or "")
    val = format_value(e.value)
    if val:
        what += f": {val}" + (f" {e.unit}" if e.unit else "")
    parts.append(what)
    if e.code:
        parts.append(f"{e.system} {e.code}" if e.system else e.code)
    if e.status is not None:
        parts.append(e.status.value)
    return " | ".join(parts)


def render_event(e: Event) -> str:
    """An event's canonical text: one line, or for notes a header line and the note body."""
    if e.kind is EventKind.NOTE:
        return f"{event_header(e)}\n{e.text}"
    return event_header(e)


def render_record(record: PatientRecord) -> str:
    """The whole record, chronological, events separated by newlines (notes by blank lines)."""
    out: list[str] = []
    for e in record.events:
        text = render_event(e)
        out.append(f"\n{text}\n" if e.kind is EventKind.NOTE else text)
    return "\n".join(out).strip("\n") + "\n"
