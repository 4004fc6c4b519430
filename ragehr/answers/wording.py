"""The one owner of how a computed answer reads: plain sentences that state value, unit and
date, each number cited with the ``[n]`` marker of the packed evidence item holding its event.

:func:`word` takes a :class:`~ragehr.answers.compute.Computed` and the packed evidence (the
same items the prompt would show) and returns a :class:`Worded` answer, or a
:class:`~ragehr.answers.compute.Declined` when an event the answer needs is not in the
evidence (the answer never cites what the reader cannot see).

Numbers that the computation makes rather than reads (a count, an average, a gap in days) are
listed in :attr:`Worded.derived`; every other number and every date of the text is in the
evidence it cites, so :func:`ragehr.pipeline.grounding.check_grounding` passes with
``derived`` by construction. Value answers state one number (the value) and no other, so a
strict scorer reads exactly that value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragehr.answers.compute import MEASURED, Computed, Declined, Part
from ragehr.answers.rules import display_name
from ragehr.ehr.render import format_value
from ragehr.ehr.times import format_time
from ragehr.retrieval.timefilter import TimeWindow
from ragehr.types import Event, EventKind, EvidenceItem, TimePrecision

__all__ = ["DECLINE_PREFIX", "Worded", "decline_text", "markers_for", "word"]

DECLINE_PREFIX = "Cannot answer from the structured record"
"""How a declined computed answer begins when it is shown as the answer (``--answer
computed``): an abstention to the scorers."""


@dataclass(frozen=True)
class Worded:
    text: str
    derived: tuple[str, ...] = ()
    """Numbers the computation produced (counts, averages, day gaps), as the text writes them."""
    cited: tuple[int, ...] = ()


def decline_text(reason: str) -> str:
    return f"{DECLINE_PREFIX}: {reason}."


def markers_for(items: Sequence[EvidenceItem]) -> dict[str, int]:
    """Event id -> the first (lowest) marker whose item holds it."""
    out: dict[str, int] = {}
    for it in sorted(items, key=lambda i: i.marker):
        for eid in it.event_ids:
            out.setdefault(eid, it.marker)
    return out


def _cite(markers: Sequence[int]) -> str:
    """``[3]``, ``[1, 4]`` or ``[2-5]`` (runs of three or more as ranges)."""
    ms = sorted(set(markers))
    if not ms:
        return ""
    parts: list[str] = []
    i = 0
    while i < len(ms):
        j = i
        while j + 1 < len(ms) and ms[j + 1] == ms[j] + 1:
            j += 1
        parts.append(f"{ms[i]}-{ms[j]}" if j - i >= 2 else ", ".join(str(m) for m in ms[i : j + 1]))
        i = j + 1
    return "[" + ", ".join(parts) + "]"


def _date(e: Event) -> str:
    prec = (
        TimePrecision.DAY
        if e.precision in (TimePrecision.DAY, TimePrecision.MINUTE, TimePrecision.SECOND)
        else e.precision
    )
    return format_time(e.start, prec)


def _when(e: Event, text: str | None) -> str:
    """The event's date, with its clock time when the cited text shows it."""
    full = format_time(e.start, e.precision)
    if len(full) > 10 and text is not None and full in text:
        return full
    return _date(e)


def _value(e: Event) -> str:
    v = format_value(e.value)
    return f"{v} {e.unit}" if e.unit and v else v


def _fmt_mean(x: float, evs: Sequence[Event]) -> str:
    decimals = 0
    for e in evs:
        s = format_value(e.value)
        if "." in s:
            decimals = max(decimals, len(s.split(".")[1]))
    return f"{x:.{min(decimals + 1, 3)}f}"


class _Ctx:
    def __init__(self, items: Sequence[EvidenceItem]) -> None:
        self.markers = markers_for(items)
        self.text = {it.marker: it.text for it in items}
        self.missing: list[str] = []
        self.cited: set[int] = set()
        self.derived: list[str] = []

    def cite(self, evs: Sequence[Event]) -> str:
        ms = []
        for e in evs:
            m = self.markers.get(e.event_id)
            if m is None:
                self.missing.append(e.event_id)
            else:
                ms.append(m)
        self.cited.update(ms)
        return _cite(ms)

    def cite_some(self, evs: Sequence[Event]) -> tuple[str, list[Event]]:
        """Cite the events that the evidence holds (a count may be larger than the window):
        the markers, and the events they hold. Never a marker for an event that
        is not shown; at least one must be, else the event is reported missing."""
        shown = [e for e in evs if e.event_id in self.markers]
        if not shown:
            self.missing.append(evs[0].event_id)
            return "", []
        ms = [self.markers[e.event_id] for e in shown]
        self.cited.update(ms)
        return _cite(ms), shown

    def when(self, e: Event) -> str:
        m = self.markers.get(e.event_id)
        return _when(e, self.text.get(m) if m is not None else None)


def _values_on(c: _Ctx, evs: Sequence[Event]) -> str:
    """``98 mg/dL on 2019-01-03 [2]``; several different values: each with its time."""
    if len({(repr(e.value), e.unit) for e in evs}) == 1:
        e = evs[0]
        days = sorted({_date(x) for x in evs})
        return f"{_value(e)} on {', '.join(days)} {c.cite(evs)}"
    return "; ".join(f"{_value(e)} on {c.when(e)} {c.cite([e])}" for e in evs)


_KIND_WORDS = frozenset({"medications", "problems", "allergies", "immunizations", "procedures", "encounters"})
_KIND_LABEL = {
    EventKind.MEDICATION: "medication",
    EventKind.CONDITION: "problem",
    EventKind.ALLERGY: "allergy",
    EventKind.IMMUNIZATION: "immunization",
    EventKind.PROCEDURE: "procedure",
}
_COUNT_VERB = {
    EventKind.LAB: "measured",
    EventKind.VITAL: "measured",
    EventKind.OBSERVATION: "recorded",
    EventKind.MEDICATION: "prescribed",
    EventKind.CONDITION: "recorded",
    EventKind.PROCEDURE: "performed",
    EventKind.IMMUNIZATION: "given",
    EventKind.ALLERGY: "recorded",
}


def _span(evs: Sequence[Event]) -> str:
    if not evs:
        return ""
    a, b = _date(evs[0]), _date(evs[-1])
    return f"from {a} to {b}" if a != b else f"on {a}"


def _sentence(c: _Ctx, comp: Computed, p: Part) -> str:
    shape = comp.shape
    period = " in the period asked" if comp.in_window else ""
    if shape == "value":
        if not p.stated:
            return _nearest(c, p, comp.window)
        return f"{p.label}{period and ' on the date asked'}: {_values_on(c, p.stated)}."
    if shape == "nearest":
        return _nearest(c, p, comp.window)
    if shape in ("latest", "first"):
        if p.label in _KIND_WORDS:
            names = "; ".join(sorted({display_name(e) for e in p.stated}))
            what = _KIND_LABEL.get(p.kind, "entry")
            return f"The {shape} {what}{period} is {names}, on {_date(p.stated[0])} {c.cite(p.stated)}."
        if p.kind in MEASURED and any(e.value is not None for e in p.stated):
            word = "most recent" if shape == "latest" else "first recorded"
            return f"The {word} {p.label}{period} was {_values_on(c, p.stated)}."
        verb = "first recorded" if shape == "first" else "last recorded"
        return f"{p.label} was {verb}{period} on {_date(p.stated[0])} {c.cite(p.stated)}."
    if shape in ("count", "encounters"):
        n = int(p.figure or 0)
        c.derived.append(str(n))
        if shape == "encounters":
            noun = "encounter" if n == 1 else "encounters"
            cites = c.cite(p.basis)
            return (
                f"The patient had {n} {noun}{period}"
                + (f" {cites}" if cites else "")
                + (f" ({_span(p.basis)})." if p.basis else ".")
            )
        times = "time" if n == 1 else "times"
        verb = _COUNT_VERB.get(p.kind, "recorded")
        if p.label in _KIND_WORDS:
            return f"{n} {p.label} {'was' if n == 1 else 'were'} recorded{period}" + (
                f" {c.cite(p.basis)} ({_span(p.basis)})." if p.basis else "."
            )
        if not p.basis:
            return f"{p.label} was {verb} 0 {times}{period}."
        cites, shown = c.cite_some(p.basis)
        if len(shown) < len(p.basis):
            c.derived.append(str(len(shown)))
            return (
                f"{p.label} was {verb} {n} {times}{period} {cites} (the evidence shown holds {len(shown)} of them, "
                f"{_span(shown)})."
            )
        return f"{p.label} was {verb} {n} {times}{period} {cites} ({_span(p.basis)})."
    if shape in ("max", "min"):
        word = "highest" if shape == "max" else "lowest"
        return f"The {word} {p.label}{period} was {_values_on(c, p.stated)}."
    if shape == "average":
        mean = _fmt_mean(float(p.figure or 0.0), p.basis)
        c.derived.extend([mean, str(len(p.basis))])
        unit = p.basis[0].unit if p.basis and p.basis[0].unit else ""
        return (
            f"The average {p.label}{period} was {mean}{' ' + unit if unit else ''}, over {len(p.basis)} values "
            f"{_span(p.basis)} {c.cite(p.basis)}."
        )
    if shape == "trend":
        evs = p.basis
        first, last = evs[0], evs[-1]
        lo = min(evs, key=lambda e: (e.value, e.start))
        hi = max(evs, key=lambda e: (e.value, -e.start.timestamp()))  # type: ignore[union-attr]
        c.derived.append(str(len(evs)))
        return (
            f"{p.label}{period}: {len(evs)} values {_span(evs)}; it {p.direction}, from {_value(first)} on "
            f"{c.when(first)} {c.cite([first])} to {_value(last)} on {c.when(last)} {c.cite([last])}. "
            f"Lowest {_value(lo)} on {c.when(lo)} {c.cite([lo])}; highest {_value(hi)} on {c.when(hi)} {c.cite([hi])}."
        )
    if shape == "status":
        return _status(c, comp, p)
    if shape == "list":
        return _list(c, comp, p)
    raise ValueError(f"unknown shape {shape!r}")


def _nearest(c: _Ctx, p: Part, asked: TimeWindow) -> str:
    """Nothing on the date asked: the nearest value before and after, each with its gap in
    days (a derived number)."""
    out = [f"No {p.label} is recorded on the date asked."]
    near = []
    for e, side in ((p.before, "before"), (p.after, "after")):
        if e is None or e.start is None:
            continue
        if side == "before" and asked.since is not None:
            gap = (asked.since.date() - e.start.date()).days
        elif side == "after" and asked.until is not None:
            gap = (e.start.date() - asked.until.date()).days
        else:
            gap = None
        said = f" ({gap} day{'s' if gap != 1 else ''} {'earlier' if side == 'before' else 'later'})" if gap else ""
        if gap:
            c.derived.append(str(gap))
        near.append(f"{side}: {_value(e) or display_name(e)} on {_date(e)} {c.cite([e])}{said}")
    if near:
        out.append("Nearest " + "; ".join(near) + ".")
    else:
        out.append("The record has no other value of it.")
    return " ".join(out)


def _status(c: _Ctx, comp: Computed, p: Part) -> str:
    yes = p.answer == "yes"
    if p.after is not None and not p.stated:
        return f"No. {p.label} is first recorded on {_date(p.after)} {c.cite([p.after])}, after the date asked."
    if not p.stated:
        return f'No. Nothing named "{p.label}" appears in the record (structured events or notes).'
    when = "at the end of the record" if comp.at_record_end else "on the date asked"
    if p.kind is EventKind.MEDICATION and comp.as_of is not None:
        e = p.stated[-1]
        if yes:
            return f"Yes. {p.label} was active {when}: ordered {_date(e)} {c.cite(p.stated)}."
        return f"No. {p.label} was not active {when}; its last order was {_date(e)} {c.cite([e])}."
    if comp.as_of is not None:
        e = p.stated[-1]
        state = "active" if yes else (e.status.value if e.status is not None else "ended")
        return (
            f"{'Yes' if yes else 'No'}. {p.label} is recorded as {state} (latest entry {_date(e)} {c.cite(p.stated)})."
        )
    e = p.stated[0]
    return f"Yes. {p.label} is in the record, first on {_date(e)} {c.cite([e])}."


def _list(c: _Ctx, comp: Computed, p: Part) -> str:
    if comp.at_record_end:
        head = f"{p.label.capitalize()} active at the end of the record"
    elif comp.as_of is not None and p.label in ("medications", "problems"):
        shown = {_date(e) for _, evs in p.items for e in evs}
        day = comp.as_of.isoformat()
        head = (
            f"{p.label.capitalize()} active on {day}"
            if day in shown
            else f"{p.label.capitalize()} active on the date asked"
        )
    elif comp.in_window:
        head = f"{p.label.capitalize()} in the period asked"
    else:
        head = f"{p.label.capitalize()} in the record"
    if not p.items:
        return (
            f"None: no {p.label} {'active' if comp.as_of else 'recorded'}"
            + head[len(p.label) :].replace(" active", "", 1)
            + "."
        )
    lines = [head + ":"]
    for name, evs in p.items:
        lines.append(f"- {name} {c.cite(evs)}")
    return "\n".join(lines)


def word(comp: Computed, items: Sequence[EvidenceItem]) -> Worded | Declined:
    """The answer's text, citing ``items`` (the packed evidence); declined when an event it
    needs is not among them."""
    c = _Ctx(items)
    sentences = [_sentence(c, comp, p) for p in comp.parts]
    if c.missing:
        return Declined(f"{len(set(c.missing))} of the events the answer needs did not fit in the context window")
    text = (
        "\n".join(sentences)
        if comp.shape == "list" or len(sentences) > 1 and any("\n" in s for s in sentences)
        else " ".join(sentences)
    )
    if len(comp.parts) > 1 and comp.shape != "list":
        text = f"The question matches {len(comp.parts)} things in the record; each is given:\n" + "\n".join(
            f"- {s}" for s in sentences
        )
        c.derived.append(str(len(comp.parts)))
    return Worded(text=text, derived=tuple(dict.fromkeys(c.derived)), cited=tuple(sorted(c.cited)))
