"""Generated QA: question/answer items derived from a patient's structured events.

Given a :class:`~ragehr.types.PatientRecord`, :func:`generate_qa` writes templated questions
whose gold answers are read straight off the record's structured events (labs, vitals,
conditions, medications, immunizations, procedures, encounters, allergies), each with the ids of
the events that prove it and where those events sit in the timeline (``depth``), so retrieval
recall can be measured by depth.

Question types (``qtype``), each skipped silently when the record has no material for it:

``latest_value``
    "What is the most recent <lab or vital>?" for names measured at least twice.
``value_on_date``
    "What was the <name> on <YYYY-MM-DD>?" for days with exactly one distinct value.
``first_diagnosis_date`` / ``first_medication_date``
    The date of the earliest condition / medication event with that name.
``ever_prescribed``
    About half "yes" (a medication in the record) and half "no": true negatives drawn from
    :data:`COMMON_DRUGS` whose name and brand names occur in *no* event text of the record (notes
    included), case-insensitively.
``active_medications_on_date``
    See :func:`medication_covers` for the rule; only dates with 1 to 6 medications.
``immunizations_in_year``, ``procedures_in_period`` (a calendar month, 1 to 6 procedures),
``encounter_count_in_year`` (distinct visits: encounter events sharing a ``visit_id`` count
once), ``allergies``, ``condition_status`` ("Is <condition> still active?" from the latest
event's explicit status/end).

Rules shared by every type: events with status ``negated`` are ignored as evidence (they say
the thing did not happen); dates are calendar dates in the event's own UTC offset (as
:func:`ragehr.ehr.times.format_time` shows them); day-level questions use only events whose
precision is a day or finer; a candidate is dropped when another event with the same name on the
same day would give a different answer. Names are compared case-insensitively; they are the
event's display text with a trailing ``(dosage: ...)`` and a trailing bracketed copy of the unit
removed.

Selection is spread over time: each type's candidates are split into ``per_type`` equal-width
time bins over the span of that type's candidates, and picked round-robin, one per non-empty bin,
at random within a bin. Randomness comes from ``random.Random(seed ^ sha256(patient id, qtype))``
over sorted candidate lists, so the output is a function of (record, seed, per_type) only.

List answers are joined with ``"; "``, not commas: Synthea names such as "Influenza, seasonal,
injectable, preservative free" contain commas. ``answer_items`` holds the list itself.

This module does not parse files (see :mod:`ragehr.ehr`), call any model, read notes for
answers, or score anything.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragehr.answers.rules import display_name, medication_covers, sorted_names
from ragehr.ehr.render import format_value
from ragehr.ehr.times import format_time
from ragehr.errors import InputError
from ragehr.types import Event, EventKind, PatientRecord, Status, TimePrecision

AnswerType = Literal["number", "date", "yes_no", "text", "list", "count"]

QTYPES: tuple[str, ...] = (
    "latest_value",
    "value_on_date",
    "first_diagnosis_date",
    "first_medication_date",
    "ever_prescribed",
    "active_medications_on_date",
    "immunizations_in_year",
    "procedures_in_period",
    "encounter_count_in_year",
    "allergies",
    "condition_status",
)
"""The default question types, in the order :func:`generate_qa` emits them."""

TIME_QTYPES: tuple[str, ...] = (
    "value_on_written_date",
    "most_recent_value",
    "first_value",
    "value_count",
    "max_in_year",
)
"""Question types that stress time on records where the same measurement repeats dozens of
times (opt in with ``generate_qa(..., qtypes=...)``):

``value_on_written_date``
    "What was the patient's <name> on <date>?" with the date written in one of
    :data:`DATE_FORMATS` (rotating), for days with exactly one distinct value.
``most_recent_value``
    "What was the patient's most recent / latest / last <name>?" (rotating wording), for names
    measured on at least 5 days.
``first_value``
    "What was the first recorded <name>?" (names measured on at least 5 days).
``value_count``
    "How many times was <name> measured?": the number of measurements; every one is evidence.
``max_in_year``
    "What was the highest <name> in <year>?" (numeric, at least 3 values that year): every value
    of that year is evidence.
"""

ALL_QTYPES: tuple[str, ...] = QTYPES + TIME_QTYPES

DATE_FORMATS: tuple[str, ...] = ("long", "iso", "us", "us_short", "day_month", "ordinal")
"""How ``value_on_written_date`` writes a day: ``May 5, 2019``, ``2019-05-05``,
``05/05/2019``, ``5/5/19``, ``5 May 2019``, ``the 5th of May, 2019``."""

MAX_LIST = 6
"""The longest list answer asked for."""

COMMON_DRUGS: tuple[tuple[str, ...], ...] = (
    ("warfarin", "coumadin", "jantoven"),
    ("metformin", "glucophage"),
    ("lisinopril", "zestril", "prinivil"),
    ("atorvastatin", "lipitor"),
    ("insulin glargine", "lantus", "basaglar", "toujeo"),
    ("amoxicillin", "amoxil", "augmentin"),
    ("albuterol", "salbutamol", "proair", "ventolin"),
    ("sertraline", "zoloft"),
    ("levothyroxine", "synthroid", "levoxyl"),
    ("prednisone", "deltasone"),
    ("omeprazole", "prilosec"),
    ("amlodipine", "norvasc"),
    ("metoprolol", "lopressor", "toprol"),
    ("gabapentin", "neurontin"),
    ("clopidogrel", "plavix"),
    ("furosemide", "lasix"),
    ("losartan", "cozaar"),
    ("fluoxetine", "prozac"),
    ("montelukast", "singulair"),
    ("pantoprazole", "protonix"),
    ("escitalopram", "lexapro"),
    ("apixaban", "eliquis"),
    ("tamsulosin", "flomax"),
    ("ibuprofen", "advil", "motrin"),
    ("azithromycin", "zithromax"),
    ("ciprofloxacin", "cipro"),
)
"""Drugs for ``ever_prescribed`` negatives: the generic name (asked about) then brand names. A
drug is a negative only when none of these strings occurs in any event text of the record."""


class QAItem(BaseModel):
    """One generated question with its gold answer and the evidence that proves it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    """Stable id: 16 hex digits of sha256 over (patient id, qtype, question)."""
    patient_id: str
    question: str
    qtype: str
    """One of :data:`ALL_QTYPES`."""
    answer: str
    """The gold short answer as text: ``165 mmHg``, ``2019-03-02``, ``yes``, ``3``, or list items
    joined with ``"; "``."""
    answer_type: AnswerType
    answer_value: float | int | str | None = None
    """The machine-comparable value: the number, the ISO date, ``yes``/``no``, the count, or
    (for lists and text) the same string as ``answer``."""
    unit: str | None = None
    answer_items: tuple[str, ...] = ()
    """For list answers: the items, sorted case-insensitively; empty otherwise."""
    evidence_event_ids: tuple[str, ...] = ()
    """``Event.event_id`` of the events that prove the answer, in record order; empty for a
    negative (``ever_prescribed`` "no")."""
    evidence_dates: tuple[str, ...] = ()
    """ISO dates of the evidence events, parallel to ``evidence_event_ids``."""
    anchor_time: str | None = None
    """The record's last event time (ISO 8601): "now" for relative questions."""
    depth: float = Field(ge=0.0, le=1.0)
    """Where the earliest evidence event sits in the record's timeline: 0 = first event, 1 =
    last. 0.5 when the timeline has zero width or there is no evidence (negatives; filter on
    ``evidence_event_ids`` for recall-by-depth)."""


# --- small pure helpers -----------------------------------------------------------------------


def stable_hash(*parts: str) -> int:
    """A 64-bit hash of strings that is the same in every process (unlike ``hash()``)."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return int(h.hexdigest()[:16], 16)


def make_item_id(patient_id: str, qtype: str, question: str) -> str:
    return hashlib.sha256("\x1f".join((patient_id, qtype, question)).encode("utf-8")).hexdigest()[:16]


_DAY_OR_FINER = (TimePrecision.DAY, TimePrecision.MINUTE, TimePrecision.SECOND)


def _day(e: Event) -> date:
    assert e.start is not None
    return e.start.date()


def _date_text(e: Event) -> str:
    """The event's date at most to the day: ``2019-03-02``, or ``2019-03`` / ``2019`` when the
    source gave less."""
    prec = TimePrecision.DAY if e.precision in _DAY_OR_FINER else e.precision
    return format_time(e.start, prec)


def _value_text(e: Event) -> str:
    val = format_value(e.value)
    return f"{val} {e.unit}" if e.unit else val


def _value_key(e: Event) -> tuple[str, str | None]:
    return (repr(e.value), e.unit)


_T = TypeVar("_T")


def stratified_pick(candidates: Sequence[tuple[float, _T]], n: int, rng: random.Random) -> list[tuple[float, _T]]:
    """Pick up to ``n`` of ``(time, payload)`` candidates spread over time.

    The span of the candidates' times is split into ``n`` equal-width bins; picks go round-robin
    over the non-empty bins, uniformly at random within a bin. ``candidates`` must already be in
    a deterministic order. The result is sorted by time (ties keep candidate order)."""
    if n <= 0 or not candidates:
        return []
    ordered = sorted(candidates, key=lambda c: c[0])
    lo, hi = ordered[0][0], ordered[-1][0]
    bins: list[list[tuple[float, _T]]] = [[] for _ in range(n)]
    for c in ordered:
        i = 0 if hi == lo else min(n - 1, int((c[0] - lo) / (hi - lo) * n))
        bins[i].append(c)
    picked: list[tuple[int, float, _T]] = []
    index = {id(c): k for k, c in enumerate(ordered)}
    while len(picked) < n and any(bins):
        for b in bins:
            if b and len(picked) < n:
                c = b.pop(rng.randrange(len(b)))
                picked.append((index[id(c)], c[0], c[1]))
    picked.sort(key=lambda p: (p[1], p[0]))
    return [(t, payload) for _, t, payload in picked]


# --- generation -------------------------------------------------------------------------------


class _Ctx:
    """What every question type needs: the record's usable events and its timeline."""

    def __init__(self, record: PatientRecord, seed: int) -> None:
        self.record = record
        self.seed = seed
        self.events: list[Event] = [e for e in record.events if e.start is not None and e.status is not Status.NEGATED]
        self.order = {id(e): i for i, e in enumerate(record.events)}
        first, last = record.first_time, record.last_time
        self.t0 = first.timestamp() if first else 0.0
        self.t1 = last.timestamp() if last else 0.0
        self.anchor = last.isoformat() if last else None

    def rng(self, qtype: str) -> random.Random:
        return random.Random(self.seed ^ stable_hash(self.record.patient_id, qtype))

    def of(self, *kinds: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def depth(self, evidence: Sequence[Event]) -> float:
        if not evidence or self.t1 <= self.t0:
            return 0.5
        t = min(e.start.timestamp() for e in evidence if e.start is not None)
        return min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0)))

    def item(
        self,
        qtype: str,
        question: str,
        answer: str,
        answer_type: AnswerType,
        answer_value: float | int | str | None,
        evidence: Iterable[Event],
        *,
        unit: str | None = None,
        items: tuple[str, ...] = (),
    ) -> QAItem:
        ev = sorted(set_by_id(evidence), key=lambda e: self.order[id(e)])
        pid = self.record.patient_id
        return QAItem(
            item_id=make_item_id(pid, qtype, question),
            patient_id=pid,
            question=question,
            qtype=qtype,
            answer=answer,
            answer_type=answer_type,
            answer_value=answer_value,
            unit=unit,
            answer_items=items,
            evidence_event_ids=tuple(e.event_id for e in ev),
            evidence_dates=tuple(_date_text(e) for e in ev),
            anchor_time=self.anchor,
            depth=self.depth(ev),
        )


def set_by_id(events: Iterable[Event]) -> list[Event]:
    """Events without repeats of the same object, first occurrence kept."""
    seen: set[int] = set()
    out = []
    for e in events:
        if id(e) not in seen:
            seen.add(id(e))
            out.append(e)
    return out


def _group(events: Iterable[Event], key: Callable[[Event], Any]) -> dict[Any, list[Event]]:
    out: dict[Any, list[Event]] = {}
    for e in events:
        out.setdefault(key(e), []).append(e)
    return out


def _ts(e: Event) -> float:
    assert e.start is not None
    return e.start.timestamp()


def _join(items: Sequence[str]) -> str:
    return "; ".join(items)


def _valued(ctx: _Ctx) -> dict[str, list[Event]]:
    """Lab and vital events with a value and a day-precise time, by display name (casefolded)."""
    evs = [
        e
        for e in ctx.of(EventKind.LAB, EventKind.VITAL)
        if e.value is not None and e.precision in _DAY_OR_FINER and display_name(e)
    ]
    return _group(evs, lambda e: display_name(e).casefold())


def _answer_for_value(e: Event) -> tuple[str, AnswerType, float | int | str | None]:
    if isinstance(e.value, (int, float)) and not isinstance(e.value, bool):
        return _value_text(e), "number", e.value
    return _value_text(e), "text", _value_text(e)


def _q_latest_value(ctx: _Ctx, n: int) -> list[QAItem]:
    cands: list[tuple[float, tuple[str, Event]]] = []
    groups = _valued(ctx)
    for key in sorted(groups):
        evs = groups[key]
        if len({_day(e) for e in evs}) < 2:
            continue  # measured on one day only: "most recent" would not matter
        latest = max(evs, key=lambda e: (_ts(e), -ctx.order[id(e)]))
        name = display_name(latest)
        same_day = [e for e in evs if _day(e) == _day(latest)]
        if len({_value_key(e) for e in same_day}) != 1:
            continue  # two different values on the latest day: ambiguous
        cands.append((_ts(latest), (name, latest)))
    out = []
    for _, (name, e) in stratified_pick(cands, n, ctx.rng("latest_value")):
        answer, atype, value = _answer_for_value(e)
        out.append(ctx.item("latest_value", f"What is the most recent {name}?", answer, atype, value, [e], unit=e.unit))
    return out


def _single_value_days(ctx: _Ctx) -> list[tuple[float, tuple[str, list[Event]]]]:
    """(time, (name, events)) for every valued name's day with one value (a day with two
    different values is ambiguous), the candidates of the "value on a date" questions."""
    cands: list[tuple[float, tuple[str, list[Event]]]] = []
    groups = _valued(ctx)
    for key in sorted(groups):
        by_day = _group(groups[key], _day)
        for d in sorted(by_day):
            evs = by_day[d]
            if len({_value_key(e) for e in evs}) == 1:
                cands.append((_ts(evs[0]), (display_name(evs[0]), evs)))
    return cands


def _q_value_on_date(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = _single_value_days(ctx)
    out = []
    for _, (name, evs) in stratified_pick(cands, n, ctx.rng("value_on_date")):
        e = evs[0]
        answer, atype, value = _answer_for_value(e)
        q = f"What was the {name} on {_day(e).isoformat()}?"
        out.append(ctx.item("value_on_date", q, answer, atype, value, evs, unit=e.unit))
    return out


def _first_by_name(events: list[Event]) -> list[tuple[float, tuple[str, Event]]]:
    groups = _group([e for e in events if display_name(e)], lambda e: display_name(e).casefold())
    cands = []
    for key in sorted(groups):
        first = min(groups[key], key=_ts)  # min keeps the first of equals: record order
        cands.append((_ts(first), (display_name(first), first)))
    return cands


def _q_first_date(ctx: _Ctx, n: int, kind: EventKind, qtype: str, verb: str) -> list[QAItem]:
    """The date of the earliest event of each name of ``kind``: "When was X first <verb>?"."""
    cands = _first_by_name(ctx.of(kind))
    out = []
    for _, (name, e) in stratified_pick(cands, n, ctx.rng(qtype)):
        d = _date_text(e)
        out.append(ctx.item(qtype, f"When was {name} first {verb}?", d, "date", d, [e]))
    return out


def _q_first_diagnosis_date(ctx: _Ctx, n: int) -> list[QAItem]:
    return _q_first_date(ctx, n, EventKind.CONDITION, "first_diagnosis_date", "diagnosed")


def _q_first_medication_date(ctx: _Ctx, n: int) -> list[QAItem]:
    return _q_first_date(ctx, n, EventKind.MEDICATION, "first_medication_date", "prescribed")


def _q_ever_prescribed(ctx: _Ctx, n: int) -> list[QAItem]:
    rng = ctx.rng("ever_prescribed")
    meds = ctx.of(EventKind.MEDICATION)
    groups = _group([e for e in meds if display_name(e)], lambda e: display_name(e).casefold())
    yes_cands = []
    for key in sorted(groups):
        evs = groups[key]
        first = min(evs, key=_ts)
        yes_cands.append((_ts(first), (display_name(first), evs)))
    # Negatives are checked against every event's text, negated and undated ones included.
    all_text = "\n".join(" ".join((e.text, e.title or "", e.note_type or "")) for e in ctx.record.events)
    all_text = all_text.casefold()
    no_cands = [names[0] for names in COMMON_DRUGS if not any(s in all_text for s in names)]
    n_yes = min(len(yes_cands), (n + 1) // 2)
    n_no = min(len(no_cands), n - n_yes)
    n_yes = min(len(yes_cands), n - n_no)
    out = []
    for _, (name, evs) in stratified_pick(yes_cands, n_yes, rng):
        q = f"Has the patient ever been prescribed {name}?"
        out.append(ctx.item("ever_prescribed", q, "yes", "yes_no", "yes", evs))
    for drug in sorted(rng.sample(no_cands, n_no)):
        q = f"Has the patient ever been prescribed {drug}?"
        out.append(ctx.item("ever_prescribed", q, "no", "yes_no", "no", []))
    return out


def _q_active_medications_on_date(ctx: _Ctx, n: int) -> list[QAItem]:
    meds = [e for e in ctx.of(EventKind.MEDICATION) if display_name(e)]
    dayly = [e for e in meds if e.precision in _DAY_OR_FINER]
    days = sorted({_day(e) for e in dayly})
    cands: list[tuple[float, tuple[date, list[Event]]]] = []
    for d in days:
        covering = [e for e in meds if medication_covers(e, d)]
        if any(e.precision not in _DAY_OR_FINER for e in covering):
            continue  # a month- or year-precise start cannot be placed on a day
        names = sorted_names(covering)
        if 1 <= len(names) <= MAX_LIST:
            t = min(_ts(e) for e in dayly if _day(e) == d)
            cands.append((t, (d, covering)))
    out = []
    for _, (d, evs) in stratified_pick(cands, n, ctx.rng("active_medications_on_date")):
        names = sorted_names(evs)
        q = f"Which medications was the patient taking on {d.isoformat()}?"
        out.append(ctx.item("active_medications_on_date", q, _join(names), "list", _join(names), evs, items=names))
    return out


def _q_immunizations_in_year(ctx: _Ctx, n: int) -> list[QAItem]:
    imms = [e for e in ctx.of(EventKind.IMMUNIZATION) if display_name(e)]
    by_year = _group(imms, lambda e: e.start.year if e.start else 0)
    cands = []
    for y in sorted(by_year):
        names = sorted_names(by_year[y])
        if 1 <= len(names) <= MAX_LIST:
            cands.append((min(_ts(e) for e in by_year[y]), (y, by_year[y])))
    out = []
    for _, (y, evs) in stratified_pick(cands, n, ctx.rng("immunizations_in_year")):
        names = sorted_names(evs)
        q = f"Which immunizations did the patient receive in {y}?"
        out.append(ctx.item("immunizations_in_year", q, _join(names), "list", _join(names), evs, items=names))
    return out


def _month_bounds(d: date) -> tuple[date, date]:
    first = d.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


def _coarse_overlaps(e: Event, month_start: date) -> bool:
    if e.start is None or e.precision in _DAY_OR_FINER:
        return False
    if e.precision is TimePrecision.MONTH:
        return (e.start.year, e.start.month) == (month_start.year, month_start.month)
    return e.start.year == month_start.year


def _q_procedures_in_period(ctx: _Ctx, n: int) -> list[QAItem]:
    procs = [e for e in ctx.of(EventKind.PROCEDURE) if display_name(e)]
    months = sorted({_month_bounds(_day(e)) for e in procs if e.precision in _DAY_OR_FINER})
    cands = []
    for lo, hi in months:
        if any(_coarse_overlaps(e, lo) for e in procs):
            continue  # a month- or year-precise procedure may fall in the window: ambiguous
        evs = [e for e in procs if lo <= _day(e) <= hi]
        names = sorted_names(evs)
        if 1 <= len(names) <= MAX_LIST:
            cands.append((min(_ts(e) for e in evs), (lo, hi, evs)))
    out = []
    for _, (lo, hi, evs) in stratified_pick(cands, n, ctx.rng("procedures_in_period")):
        names = sorted_names(evs)
        q = f"Which procedures were performed between {lo.isoformat()} and {hi.isoformat()}?"
        out.append(ctx.item("procedures_in_period", q, _join(names), "list", _join(names), evs, items=names))
    return out


def _q_encounter_count_in_year(ctx: _Ctx, n: int) -> list[QAItem]:
    # One encounter per visit: MedAlign gives a visit and its visit_detail as two encounter
    # events with one visit_id. Events without a visit_id count singly. A visit counts in the
    # year of its earliest encounter event.
    encs = ctx.of(EventKind.ENCOUNTER)
    visits = _group(encs, lambda e: e.visit_id or f"event:{e.event_id}")
    by_year: dict[int, list[list[Event]]] = {}
    for key in sorted(visits):
        evs = visits[key]
        by_year.setdefault(min(evs, key=_ts).start.year, []).append(evs)  # type: ignore[union-attr]
    cands = []
    for y in sorted(by_year):
        evs = [e for v in by_year[y] for e in v]
        cands.append((min(_ts(e) for e in evs), (y, len(by_year[y]), evs)))
    out = []
    for _, (y, count, evs) in stratified_pick(cands, n, ctx.rng("encounter_count_in_year")):
        q = f"How many encounters did the patient have in {y}?"
        out.append(ctx.item("encounter_count_in_year", q, str(count), "count", count, evs))
    return out


def _q_allergies(ctx: _Ctx, n: int) -> list[QAItem]:
    allergies = [e for e in ctx.of(EventKind.ALLERGY) if display_name(e)]
    if not allergies or n <= 0:
        return []
    names = sorted_names(allergies)
    q = "What allergies does the patient have?"
    return [ctx.item("allergies", q, _join(names), "list", _join(names), allergies, items=names)]


def _condition_answer(e: Event) -> str | None:
    if e.status in (Status.RESOLVED, Status.INACTIVE) or e.end is not None:
        return "no"
    if e.status is Status.ACTIVE:
        return "yes"
    return None


def _q_condition_status(ctx: _Ctx, n: int) -> list[QAItem]:
    conds = [e for e in ctx.of(EventKind.CONDITION) if display_name(e)]
    groups = _group(conds, lambda e: display_name(e).casefold())
    by_answer: dict[str, list[tuple[float, tuple[str, Event]]]] = {"yes": [], "no": []}
    for key in sorted(groups):
        evs = groups[key]
        latest = max(evs, key=lambda e: (_ts(e), -ctx.order[id(e)]))
        answers = {_condition_answer(e) for e in evs if _day(e) == _day(latest)}
        if len(answers) != 1 or None in answers:
            continue
        (ans,) = answers
        assert ans is not None
        by_answer[ans].append((_ts(latest), (display_name(latest), latest)))
    rng = ctx.rng("condition_status")
    n_yes = min(len(by_answer["yes"]), (n + 1) // 2)
    n_no = min(len(by_answer["no"]), n - n_yes)
    n_yes = min(len(by_answer["yes"]), n - n_no)
    picks = [("yes", p) for p in stratified_pick(by_answer["yes"], n_yes, rng)]
    picks += [("no", p) for p in stratified_pick(by_answer["no"], n_no, rng)]
    out = []
    for ans, (_, (name, e)) in picks:
        out.append(ctx.item("condition_status", f"Is {name} still active?", ans, "yes_no", ans, [e]))
    return out


def written_date(d: date, style: str) -> str:
    """A day as people write it (see :data:`DATE_FORMATS`)."""
    month = d.strftime("%B")
    if style == "long":
        return f"{month} {d.day}, {d.year}"
    if style == "iso":
        return d.isoformat()
    if style == "us":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == "us_short":
        return f"{d.month}/{d.day}/{d.year % 100:02d}"
    if style == "day_month":
        return f"{d.day} {month} {d.year}"
    if style == "ordinal":
        suffix = "th" if 11 <= d.day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
        return f"the {d.day}{suffix} of {month}, {d.year}"
    raise ValueError(f"unknown date style {style!r}")


def _q_value_on_written_date(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = _single_value_days(ctx)
    out = []
    for i, (_, (name, evs)) in enumerate(stratified_pick(cands, n, ctx.rng("value_on_written_date"))):
        e = evs[0]
        answer, atype, value = _answer_for_value(e)
        when = written_date(_day(e), DATE_FORMATS[i % len(DATE_FORMATS)])
        q = f"What was the patient's {name} on {when}?"
        out.append(ctx.item("value_on_written_date", q, answer, atype, value, evs, unit=e.unit))
    return out


def _series(ctx: _Ctx, min_days: int) -> list[tuple[str, list[Event]]]:
    """Valued names measured on at least ``min_days`` days, each with its events in time order.
    Names that differ only by invisible format characters (Synthea writes some with a
    zero-width space) are one series: "the first recorded X" must not depend on them."""
    groups: dict[str, list[Event]] = {}
    for key, evs in _valued(ctx).items():
        groups.setdefault("".join(ch for ch in key if unicodedata.category(ch) != "Cf"), []).extend(evs)
    out = []
    for key, evs in sorted(groups.items()):
        if len({_day(e) for e in evs}) >= min_days:
            out.append((key, sorted(evs, key=lambda e: (_ts(e), ctx.order[id(e)]))))
    return out


def _q_most_recent_value(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = []
    for _, evs in _series(ctx, 5):
        latest = evs[-1]
        if len({_value_key(e) for e in evs if _day(e) == _day(latest)}) == 1:
            cands.append((_ts(latest), (display_name(latest), latest)))
    wording = ("most recent", "latest", "last")
    out = []
    for i, (_, (name, e)) in enumerate(stratified_pick(cands, n, ctx.rng("most_recent_value"))):
        answer, atype, value = _answer_for_value(e)
        q = f"What was the patient's {wording[i % 3]} {name}?"
        out.append(ctx.item("most_recent_value", q, answer, atype, value, [e], unit=e.unit))
    return out


def _q_first_value(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = []
    for _, evs in _series(ctx, 5):
        first = evs[0]
        if len({_value_key(e) for e in evs if _day(e) == _day(first)}) == 1:
            cands.append((_ts(first), (display_name(first), first)))
    out = []
    for _, (name, e) in stratified_pick(cands, n, ctx.rng("first_value")):
        answer, atype, value = _answer_for_value(e)
        out.append(
            ctx.item("first_value", f"What was the first recorded {name}?", answer, atype, value, [e], unit=e.unit)
        )
    return out


def _q_value_count(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = [(_ts(evs[0]), (display_name(evs[0]), evs)) for _, evs in _series(ctx, 3)]
    out = []
    for _, (name, evs) in stratified_pick(cands, n, ctx.rng("value_count")):
        q = f"How many times was {name} measured?"
        out.append(ctx.item("value_count", q, str(len(evs)), "count", len(evs), evs))
    return out


def _q_max_in_year(ctx: _Ctx, n: int) -> list[QAItem]:
    cands = []
    for _, evs in _series(ctx, 3):
        for year, yevs in sorted(_group(evs, lambda e: _day(e).year).items()):
            nums = [e for e in yevs if isinstance(e.value, (int, float)) and not isinstance(e.value, bool)]
            if len(nums) >= 3 and len(nums) == len(yevs) and len({e.unit for e in nums}) == 1:
                cands.append((_ts(nums[0]), (display_name(nums[0]), year, nums)))
    out = []
    for _, (name, year, evs) in stratified_pick(cands, n, ctx.rng("max_in_year")):
        top = max(evs, key=lambda e: e.value)  # type: ignore[arg-type, return-value]
        answer, atype, value = _answer_for_value(top)
        q = f"What was the highest {name} in {year}?"
        out.append(ctx.item("max_in_year", q, answer, atype, value, evs, unit=top.unit))
    return out


_GENERATORS: dict[str, Callable[[_Ctx, int], list[QAItem]]] = {
    "value_on_written_date": _q_value_on_written_date,
    "most_recent_value": _q_most_recent_value,
    "first_value": _q_first_value,
    "value_count": _q_value_count,
    "max_in_year": _q_max_in_year,
    "latest_value": _q_latest_value,
    "value_on_date": _q_value_on_date,
    "first_diagnosis_date": _q_first_diagnosis_date,
    "first_medication_date": _q_first_medication_date,
    "ever_prescribed": _q_ever_prescribed,
    "active_medications_on_date": _q_active_medications_on_date,
    "immunizations_in_year": _q_immunizations_in_year,
    "procedures_in_period": _q_procedures_in_period,
    "encounter_count_in_year": _q_encounter_count_in_year,
    "allergies": _q_allergies,
    "condition_status": _q_condition_status,
}


def generate_qa(
    record: PatientRecord, *, seed: int = 0, per_type: int = 3, qtypes: Sequence[str] | None = None
) -> list[QAItem]:
    """Up to ``per_type`` items of each type in ``qtypes`` (default :data:`QTYPES`; see also
    :data:`TIME_QTYPES`; one ``allergies`` item), in that order; deterministic for (record,
    seed, per_type, qtypes). Types without material are skipped."""
    if per_type < 0:
        raise ValueError("per_type must be >= 0")
    chosen = QTYPES if qtypes is None else tuple(qtypes)
    unknown = [q for q in chosen if q not in _GENERATORS]
    if unknown:
        raise ValueError(f"unknown question type(s) {', '.join(unknown)}; use any of {', '.join(ALL_QTYPES)}")
    ctx = _Ctx(record, seed)
    out: list[QAItem] = []
    seen: set[str] = set()
    for qtype in chosen:
        for item in _GENERATORS[qtype](ctx, per_type):
            if item.item_id not in seen:
                seen.add(item.item_id)
                out.append(item)
    return out


# --- files ------------------------------------------------------------------------------------


def write_jsonl(items: Iterable[QAItem], path: str | Path) -> None:
    """One item per line, as JSON (plain write, not atomic)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for item in items:
            f.write(item.model_dump_json())
            f.write("\n")


def read_jsonl(path: str | Path) -> list[QAItem]:
    """Items written by :func:`write_jsonl`. Raises :class:`InputError` for a bad line."""
    out: list[QAItem] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(QAItem.model_validate_json(line))
            except ValidationError as exc:
                raise InputError(path, f"line {lineno}: not a QA item ({exc.error_count()} errors)") from None
    return out


__all__ = [
    "ALL_QTYPES",
    "COMMON_DRUGS",
    "DATE_FORMATS",
    "TIME_QTYPES",
    "written_date",
    "MAX_LIST",
    "QAItem",
    "QTYPES",
    "display_name",
    "generate_qa",
    "medication_covers",
    "read_jsonl",
    "stable_hash",
    "stratified_pick",
    "write_jsonl",
]
