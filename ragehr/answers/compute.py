"""Answers computed from a record's structured events: what a question asks (read from its
:class:`~ragehr.retrieval.intent.QuestionPlan` and the concepts it names), and the events that
answer it.

:func:`compute` returns a :class:`Computed` (the shape of the answer and, per concept, the
events it states and the events it is computed from) or a :class:`Declined` with the reason.
It never words anything (:mod:`ragehr.answers.wording` does) and never reads notes' free
text for an answer: a question that needs language (a summary, a reason, a plan, what someone
recommended), or whose concept the structured events do not hold, is declined so that the
generator answers it.

Shapes (:attr:`Computed.shape`):

``value``
    Value(s) on a day or in a period (``point`` plans); ``nearest`` when that window holds
    none: the nearest before and after, with the gap.
``latest`` / ``first``
    The newest / oldest occurrence (value, diagnosis, prescription, procedure, immunization).
``count``, ``max``, ``min``, ``average``, ``trend``
    Over the plan's window (the whole record when none): how many; the highest / lowest with
    its date; the mean; first and last, lowest and highest, n and direction.
``list``
    A kind's events in a window or at a date: the medications active on a day (or at the
    record's end), the active problems, the allergies, the immunizations or procedures in a
    period; ``encounters``: how many visits in a period.
``status``
    Yes/no: is a condition still active, is a medication taken now, was a drug ever
    prescribed.

The rules for what an event means (a medication covering a day, a condition being active,
display names) are :mod:`ragehr.answers.rules`, shared with the generated QA gold.
Pure functions; no I/O, no index.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from ragehr.answers.rules import (
    condition_state,
    display_name,
    is_number,
    medication_covers,
    name_key,
    sorted_names,
    usable,
)
from ragehr.retrieval.concepts import ConceptMatch, RecordLexicon, Resolution, resolve, words
from ragehr.retrieval.intent import QuestionPlan
from ragehr.retrieval.timefilter import TimeWindow
from ragehr.types import Event, EventKind, PatientRecord

__all__ = ["SHAPES", "Computed", "Declined", "Part", "compute"]

SHAPES = (
    "value",
    "nearest",
    "latest",
    "first",
    "count",
    "max",
    "min",
    "average",
    "trend",
    "list",
    "encounters",
    "status",
)

MEASURED = (EventKind.LAB, EventKind.VITAL, EventKind.OBSERVATION)

_NEEDS_LANGUAGE = re.compile(
    r"\b(?:why|reasons?|recommend\w*|suggest\w*|plan(?:s|ned)?|summar\w+|explain\w*|describe\w*|discuss\w*|"
    r"assess\w*|impression|advi[cs]e\w*|should|instruct\w*|counsel\w*|goals?|interpret\w*|concern\w*|"
    r"opinion|how\s+(?:is|was|did|does)\s+(?:she|he|they|the\s+patient)\s+(?:doing|feel\w*|tolerat\w*)|"
    r"what\s+(?:did|does)\s+(?:the\s+)?\w+\s+(?:say|think|note|write))\b",
    re.I,
)
"""Questions that need language, not a lookup: the generator answers them."""

_COUNT = re.compile(r"\b(?:how\s+many|how\s+often|number\s+of|count\s+of|times)\b", re.I)
_MAX = re.compile(r"\b(?:highest|maximum|max|peak|largest|greatest|worst)\b", re.I)
_MIN = re.compile(r"\b(?:lowest|minimum|min|smallest|least)\b", re.I)
_AVG = re.compile(
    r"\b(?:average|avg|mean(?!\s+(?:arterial|corpuscular|cell|platelet|blood\s+pressure|volume|hemoglobin|hgb|MAP)\b))\b",
    re.I,
)
_FIRST_Q = re.compile(r"\b(?:first|earliest|initial(?:ly)?|onset)\b|\bwhen\s+(?:was|were|did)\b", re.I)
_EVER = re.compile(
    r"\b(?:ever|at\s+any\s+time|previously)\b.{0,40}?\b(?:prescribed|taken|took|on|received|given|had|used)\b"
    r"|\b(?:has|have|had|did)\s+(?:she|he|they|the\s+patient)\s+(?:ever\s+)?(?:been\s+)?(?:prescribed|taken|received)\b",
    re.I,
)

_KIND_NOUNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("medication", re.compile(r"\b(?:medications?|meds|medicines?|drugs?|prescriptions?)\b", re.I)),
    ("condition", re.compile(r"\b(?:problems?|problem\s+list|diagnos[ie]s|conditions?)\b", re.I)),
    ("allergy", re.compile(r"\ballerg(?:y|ies)\b", re.I)),
    ("immunization", re.compile(r"\b(?:immuni[sz]ations?|vaccines?|vaccinations?|shots?)\b", re.I)),
    ("procedure", re.compile(r"\b(?:procedures?|surger(?:y|ies)|operations?)\b", re.I)),
    ("encounter", re.compile(r"\b(?:encounters?|visits?|appointments?|admissions?)\b", re.I)),
)
_KIND_OF = {
    "medication": EventKind.MEDICATION,
    "condition": EventKind.CONDITION,
    "allergy": EventKind.ALLERGY,
    "immunization": EventKind.IMMUNIZATION,
    "procedure": EventKind.PROCEDURE,
    "encounter": EventKind.ENCOUNTER,
}
_LIST_FILLER = frozenset(
    "patient patients pt receive received get got given give have had has take taking took list all any "
    "performed done did does do currently current active now present ongoing still on what which were is "
    "are was the her his their she he they how many number count times time total recorded documented "
    "during period same day last first most recent latest new".split()
)
"""Words that may stand beside a kind noun in a question about the kind as a whole ("which
vaccines did the patient receive"): anything else names a particular thing ("medications for
diabetes") and the question is left to the concept path or the generator."""

_STOP = frozenset(
    "patient patients pt value values level levels result results reading readings ever been prescribed taken "
    "received given used any how much many often it its this that whats what's s".split()
)
"""Words of a concept text that name no concept: they need not be matched."""


@dataclass(frozen=True)
class Part:
    """One labelled piece of an answer: what it says about one concept (or one kind)."""

    label: str
    """The concept's name as the record states it (or the kind: ``medications``)."""
    kind: EventKind
    stated: tuple[Event, ...] = ()
    """Events whose value, date or name the sentence states (each is cited)."""
    basis: tuple[Event, ...] = ()
    """Every event the figure is computed from (counted, averaged, the series of a trend);
    cited together. Empty when the figure is read off ``stated`` alone."""
    figure: float | int | None = None
    """The computed number (a count, an average) for ``count``/``average``/``encounters``."""
    answer: str | None = None
    """``yes``/``no`` for ``status``."""
    before: Event | None = None
    """``nearest``: the nearest event before the window."""
    after: Event | None = None
    """``nearest``: the nearest event after the window."""
    items: tuple[tuple[str, tuple[Event, ...]], ...] = ()
    """``list``: (name, its events) per listed item, sorted by name."""
    direction: str | None = None
    """``trend``: ``rose``, ``fell`` or ``was stable``."""
    code: str | None = None
    """The concept's code (``LOINC 2823-3``), for labels."""


@dataclass(frozen=True)
class Computed:
    """An answer computed from the record, not yet worded."""

    shape: str
    parts: tuple[Part, ...]
    reason: str
    """Why it was computed (which plan and concept): shown as ``answer_reason``."""
    window: TimeWindow = field(default_factory=TimeWindow)
    as_of: date | None = None
    """``list``/``status`` at a date: the day the state is read at."""
    at_record_end: bool = False
    """``list``/``status``: state at the record's end (no date asked)."""
    in_window: bool = False
    """Whether the plan's window limited the events."""
    resolution: Resolution | None = None

    @property
    def needed(self) -> tuple[str, ...]:
        """Event ids the worded answer cites: they must be in the packed context."""
        out: dict[str, None] = {}
        for p in self.parts:
            for e in (*p.stated, *p.basis, *(x for x in (p.before, p.after) if x is not None)):
                out[e.event_id] = None
            for _, evs in p.items:
                for e in evs:
                    out[e.event_id] = None
        return tuple(out)

    def highlighted(self) -> tuple[str, ...]:
        """Ids of the events the answer states (a chart's highlighted points): the stated
        values, or every event of a count or average."""
        out: dict[str, None] = {}
        for p in self.parts:
            for e in p.stated or p.basis:
                out[e.event_id] = None
        return tuple(out)

    def series(self) -> list[tuple[str, str | None, list[Event]]]:
        """(label, unit, numeric events oldest first) per part with two or more numeric values
        (what a chart draws)."""
        out = []
        for p in self.parts:
            evs = [e for e in (p.basis or p.stated) if is_number(e.value) and e.start is not None]
            if len({e.start for e in evs}) >= 2:
                units = {e.unit for e in evs}
                out.append((p.label, units.pop() if len(units) == 1 else None, sorted(evs, key=_order)))
        return out


@dataclass(frozen=True)
class Declined:
    """The computed path steps aside: the generator answers, and ``reason`` says why."""

    reason: str


def _order(e: Event) -> float:
    """Oldest first; ties keep their order (every sort here is stable over lists in record or
    lexicon order, so the result is deterministic without hashing event ids)."""
    return e.start.timestamp() if e.start else 0.0


def _day(e: Event) -> date:
    assert e.start is not None
    return e.start.date()


def in_window(e: Event, w: TimeWindow) -> bool:
    """Whether a dated event falls in ``w``: calendar windows compare dates (the event's own
    calendar date), others instants."""
    if e.start is None:
        return False
    if w.calendar:
        d = e.start.date()
        return (w.since is None or d >= w.since.date()) and (w.until is None or d <= w.until.date())
    return (w.since is None or e.start >= w.since) and (w.until is None or e.start <= w.until)


def _distinct_values(evs: Iterable[Event]) -> int:
    return len({(repr(e.value), e.unit) for e in evs})


# --- reading the question ---------------------------------------------------------------------


def _kind_question(question: str, plan: QuestionPlan) -> str | None:
    """The kind a question asks about as a whole ("which vaccines in 2020", "current
    medications", "how many visits"), or ``None`` when it names something in particular."""
    found = [name for name, rx in _KIND_NOUNS if rx.search(plan.concept) or rx.search(question)]
    if len(found) != 1:
        return None
    kind = found[0]
    rest = _KIND_NOUNS[[n for n, _ in _KIND_NOUNS].index(kind)][1].sub(" ", plan.concept)
    left = [w for w in words(rest) if w not in _LIST_FILLER and not w.isdigit()]
    return kind if not left else None


def _matches(
    plan: QuestionPlan, lexicon: RecordLexicon, kinds: Sequence[EventKind] | None = None
) -> list[ConceptMatch]:
    """The record concepts the plan's concept text means, narrowed to those that explain the
    question's words:

    - every content word of the concept text must be matched (by a concept's names or code,
      or by a vocabulary's term): "hemoglobin A1c" in a record with hemoglobin but no A1c
      matches nothing, rather than the wrong test;
    - a concept whose whole name the question holds beats concepts that share only some words
      (a question naming "Cholesterol [Mass/volume] in Serum or Plasma" means total
      cholesterol, not HDL too);
    - otherwise concepts whose names the question covers at least half as well as the best
      one's are kept (so "cholesterol" gives total, LDL and HDL, but not a panel whose name
      lists forty results)."""
    res = resolve(plan.concept, lexicon, kinds)
    if not res.matches:
        return []
    qwords = {w for w in words(plan.concept) if w not in _STOP}
    if not qwords:
        return []
    matched: set[str] = set()
    for m in res.matches:
        matched.update(words(m.term))
        matched.update(qwords & m.concept.terms)
    if qwords - matched:
        return []
    full = [m for m in res.matches if set(words(m.concept.name)) <= qwords]
    if full:
        most = max(len(set(words(m.concept.name))) for m in full)
        return [m for m in full if len(set(words(m.concept.name))) == most]

    def cover(m: ConceptMatch) -> float:
        name = set(words(m.concept.name)) or {m.concept.key}
        return len(name & (qwords | set(words(m.term)))) / len(name)

    best = max(cover(m) for m in res.matches)
    return [m for m in res.matches if cover(m) >= 0.5 * best]


def _concept_events(
    lexicon: RecordLexicon, matches: Sequence[ConceptMatch]
) -> list[tuple[str, EventKind, str | None, list[Event]]]:
    """(label, kind, code, usable events oldest first) per matched concept; concepts whose
    display names are equal (the same test under two codes) are one."""
    groups: dict[str, tuple[str, EventKind, str | None, list[Event]]] = {}
    for m in matches:
        c = m.concept
        evs = [e for e in lexicon.events(c.key) if usable(e)]
        if not evs:
            continue
        key = name_key(evs[-1]) or c.key
        code = f"{c.system} {c.code}" if c.code and c.system else c.code
        if key in groups:
            label, kind, code0, old = groups[key]
            groups[key] = (label, kind, code0, sorted(old + evs, key=_order))
        else:
            groups[key] = (display_name(evs[-1]) or c.name, c.kind, code, evs)
    return [groups[k] for k in sorted(groups)]


_LABELS: weakref.WeakKeyDictionary[RecordLexicon, dict[str, dict[str, list[Event]]]] = weakref.WeakKeyDictionary()


def _labels(lexicon: RecordLexicon, key: str) -> dict[str, list[Event]]:
    """A concept's usable events by label (:func:`name_key`), oldest first; computed once per
    lexicon (that is, once per opened index)."""
    per = _LABELS.setdefault(lexicon, {})
    got = per.get(key)
    if got is None:
        got = {}
        for e in lexicon.events(key):
            if usable(e):
                got.setdefault(name_key(e), []).append(e)
        per[key] = got
    return got


def _named_in_question(
    question: str, lexicon: RecordLexicon, res: Resolution
) -> list[tuple[str, EventKind, str | None, list[Event]]] | None:
    """When the question names one of the record's own labels exactly ("Sodium, Serum",
    "MCHC [Mass/volume] by Automated count"), the events under that label only (the longest
    label found, case-insensitive, at word boundaries), as the generated QA gold reads a
    name; ``None`` when it names none. A code shared by several labels is thus read under the
    label asked for; a question in other words gets every label of the matched concepts."""
    q = " ".join(question.casefold().split())
    best: str | None = None
    for m in res.matches:
        for label in _labels(lexicon, m.concept.key):
            if len(label) < 3 or (best is not None and len(label) <= len(best)) or label not in q:
                continue
            if re.search(r"(?<![\w])" + re.escape(label) + r"(?![\w])", q):
                best = label
    if best is None:
        return None
    evs: list[Event] = []
    kind = None
    code = None
    for m in res.matches:
        got = _labels(lexicon, m.concept.key).get(best)
        if got:
            evs.extend(got)
            kind = kind or m.concept.kind
            c = m.concept
            code = code or (f"{c.system} {c.code}" if c.code and c.system else c.code)
    if not evs or kind is None:
        return None
    evs = sorted({id(e): e for e in evs}.values(), key=_order)
    return [(display_name(evs[-1]), kind, code, evs)]


# --- computing ---------------------------------------------------------------------------------


def _first_day_group(evs: Sequence[Event], newest: bool) -> list[Event]:
    day = _day(evs[-1] if newest else evs[0])
    return [e for e in evs if _day(e) == day]


def _series_part(shape: str, label: str, kind: EventKind, code: str | None, evs: list[Event]) -> Part | None:
    if shape == "count":
        return Part(label, kind, basis=tuple(evs), figure=len(evs), code=code)
    nums = [e for e in evs if is_number(e.value)]
    if not nums:
        return None
    if len({e.unit for e in nums}) > 1:
        return None  # values in several units: not compared here
    if shape in ("max", "min"):
        best = max(e.value for e in nums) if shape == "max" else min(e.value for e in nums)  # type: ignore[type-var]
        return Part(label, kind, stated=tuple(e for e in nums if e.value == best), basis=tuple(nums), code=code)
    if shape == "average":
        mean = sum(_number(e) for e in nums) / len(nums)
        return Part(label, kind, basis=tuple(nums), figure=mean, code=code)
    # trend
    first, last = nums[0], nums[-1]
    lo = min(nums, key=lambda e: (e.value, _order(e)))
    hi = max(nums, key=lambda e: (e.value, -_order(e)))
    a, b = float(first.value), float(last.value)  # type: ignore[arg-type]
    if abs(b - a) <= 0.05 * max(abs(a), 1e-9):
        direction = "was stable"
    else:
        direction = "rose" if b > a else "fell"
    stated = tuple(dict.fromkeys((first, last, lo, hi)))
    return Part(label, kind, stated=stated, basis=tuple(nums), direction=direction, code=code)


def _series_shape(question: str, plan: QuestionPlan) -> str:
    if _COUNT.search(question):
        return "count"
    if _MAX.search(question):
        return "max"
    if _MIN.search(question):
        return "min"
    if _AVG.search(question):
        return "average"
    return "trend"


def _state_day(plan: QuestionPlan, record: PatientRecord) -> tuple[date | None, bool]:
    """The day a state question reads the state at, and whether that is the record's end."""
    if plan.window.until is not None:
        return plan.window.until.date(), False
    last = record.last_time
    return (last.date() if last else None), True


def _kind_answer(kind_name: str, question: str, plan: QuestionPlan, record: PatientRecord) -> Computed | Declined:
    kind = _KIND_OF[kind_name]
    w = plan.window
    evs = sorted((e for e in record.events if e.kind is kind and usable(e)), key=_order)
    if kind is EventKind.ENCOUNTER:
        if not _COUNT.search(question):
            return Declined("a question about visits that is not a count is left to the generator")
        visits: dict[str, list[Event]] = {}
        for e in evs:
            visits.setdefault(e.visit_id or f"event:{e.event_id}", []).append(e)
        firsts = sorted((min(v, key=_order) for v in visits.values()), key=_order)
        kept = [e for e in firsts if in_window(e, w)] if w.is_filter else firsts
        part = Part("encounters", kind, basis=tuple(kept), figure=len(kept))
        return Computed(
            "encounters",
            (part,),
            "a count of visits (encounters sharing a visit count once)",
            window=w,
            in_window=w.is_filter,
        )
    named = [e for e in evs if display_name(e)]
    if kind is EventKind.MEDICATION and (plan.intent == "current" or w.is_point):
        day, at_end = _state_day(plan, record)
        if day is None:
            return Declined("the record has no dated events to read the medications at")
        covering = [e for e in named if medication_covers(e, day)]
        items = _items(covering)
        part = Part("medications", kind, items=items)
        why = "the medications active at the record's end" if at_end else f"the medications active on {day.isoformat()}"
        return Computed(
            "list", (part,), why + " (start, end and status of each order)", window=w, as_of=day, at_record_end=at_end
        )
    if kind is EventKind.CONDITION and plan.intent == "current":
        day, at_end = _state_day(plan, record)
        if day is None:
            return Declined("the record has no dated events to read the problems at")
        by_name: dict[str, list[Event]] = {}
        for e in named:
            if _day(e) <= day:
                by_name.setdefault(name_key(e), []).append(e)
        active = []
        for group in by_name.values():
            latest = _first_day_group(group, newest=True)
            states = {condition_state(e) for e in latest}
            if states == {"yes"} and all(e.end is None or e.end.date() >= day for e in latest):
                active.extend(latest)
        part = Part("problems", kind, items=_items(active))
        why = (
            "the problems marked active at the record's end"
            if at_end
            else f"the problems marked active on {day.isoformat()}"
        )
        return Computed("list", (part,), why, window=w, as_of=day, at_record_end=at_end)
    if kind is EventKind.ALLERGY:
        kept = [e for e in named if in_window(e, w)] if w.is_filter else named
        return Computed(
            "list",
            (Part("allergies", kind, items=_items(kept)),),
            "the allergies the record lists",
            window=w,
            in_window=w.is_filter,
        )
    if plan.intent == "series" and _COUNT.search(question):
        kept = [e for e in named if in_window(e, w)] if w.is_filter else named
        return Computed(
            "count",
            (Part(_plural(kind), kind, basis=tuple(kept), figure=len(kept)),),
            f"a count of the record's {_plural(kind)}",
            window=w,
            in_window=w.is_filter,
        )
    if w.is_filter:
        kept = [e for e in named if in_window(e, w)]
        return Computed(
            "list",
            (Part(_plural(kind), kind, items=_items(kept)),),
            f"the {_plural(kind)} recorded in the period asked",
            window=w,
            in_window=True,
        )
    if plan.intent in ("latest", "first") and named:
        group = _first_day_group(named, newest=plan.intent == "latest")
        return Computed(
            plan.intent,
            (Part(_plural(kind), kind, stated=tuple(group)),),
            f"the {plan.intent} of the record's {_plural(kind)}",
            window=w,
        )
    return Declined(f"a question about {_plural(kind)} without a period or a date is left to the generator")


def _plural(kind: EventKind) -> str:
    return {
        EventKind.MEDICATION: "medications",
        EventKind.CONDITION: "problems",
        EventKind.ALLERGY: "allergies",
        EventKind.IMMUNIZATION: "immunizations",
        EventKind.PROCEDURE: "procedures",
        EventKind.ENCOUNTER: "encounters",
    }.get(kind, kind.value)


def _items(evs: Iterable[Event]) -> tuple[tuple[str, tuple[Event, ...]], ...]:
    """(name, events) per distinct display name (case-insensitive), sorted like the gold."""
    evs = list(evs)
    out = []
    for name in sorted_names(evs):
        out.append((name, tuple(sorted((e for e in evs if display_name(e).casefold() == name.casefold()), key=_order))))
    return tuple(out)


def compute(question: str, plan: QuestionPlan, record: PatientRecord, lexicon: RecordLexicon) -> Computed | Declined:
    """The computed answer to ``question`` (read as ``plan``) from ``record``'s structured
    events, or why there is none. ``lexicon`` is the record's concepts
    (:meth:`ragehr.index.search.PatientIndex.lexicon`)."""
    if _NEEDS_LANGUAGE.search(question):
        return Declined("the question asks for language (a summary, a reason, a plan or an opinion), not a value")
    if plan.event_anchor is not None and not plan.window.is_filter:
        return Declined(f"the period is anchored on an event ({plan.event_anchor[1]!r}) that the record does not date")
    kind_name = _kind_question(question, plan)
    if kind_name is not None:
        return _kind_answer(kind_name, question, plan, record)
    matches = _matches(plan, lexicon)
    res = resolve(plan.concept, lexicon)
    if not matches:
        if _EVER.search(question):
            return _never(question, plan, record)
        return Declined(f"nothing in the record's structured events matches {plan.concept!r}")
    groups = _concept_events(lexicon, matches)
    named = _named_in_question(question, lexicon, res)
    if named is not None:
        groups = named
    if not groups:
        return Declined(f"the record's events about {plan.concept!r} are all undated or negated")
    names = "; ".join(f'"{g[0]}"' for g in groups)
    w = plan.window
    if plan.intent == "series" and _series_shape(question, plan) == "trend" and _FIRST_Q.search(question):
        # "When was History of X first diagnosed?": "history of" is part of the name
        plan = replace(plan, intent="first")
    if _EVER.search(question) and plan.intent in ("none", "first"):
        parts = tuple(Part(label, kind, stated=(evs[0],), answer="yes", code=code) for label, kind, code, evs in groups)
        return Computed("status", parts, f"whether {names} occurs in the record", resolution=res)
    if plan.intent == "current":
        return _status(plan, record, groups, names, res)
    if plan.intent == "point":
        return _point(w, groups, names, res)
    if plan.intent in ("latest", "first") or (plan.intent == "none" and not w.is_filter):
        measured = [g for g in groups if g[1] in MEASURED]
        if plan.intent == "none" and len(measured) != len(groups):
            return Declined(f"no time asked and {names} is not a measurement: left to the generator")
        newest = plan.intent != "first"
        kept = [
            (label, kind, code, [e for e in evs if in_window(e, w)] if w.is_filter else evs)
            for label, kind, code, evs in groups
        ]
        kept = [g for g in kept if g[3]]
        if not kept:
            return Declined(f"no event about {names} falls in the period asked")
        parts = tuple(
            Part(label, kind, stated=tuple(_first_day_group(evs, newest)), code=code) for label, kind, code, evs in kept
        )
        shape = "latest" if newest else "first"
        why = f"the {'latest' if newest else 'first'} {'value' if kept[0][1] in MEASURED else 'entry'} of {names}"
        return Computed(
            shape,
            parts,
            why + (" (no time asked)" if plan.intent == "none" else ""),
            window=w,
            in_window=w.is_filter,
            resolution=res,
        )
    if plan.intent == "series" or (plan.intent == "none" and w.is_filter):
        shape = _series_shape(question, plan) if plan.intent == "series" else "trend"
        parts_l = []
        for label, kind, code, evs in groups:
            kept_evs = [e for e in evs if in_window(e, w)] if w.is_filter else evs
            if shape != "count" and kind not in MEASURED:
                return Declined(f"{shape} of {names}: not a measurement")
            if shape != "count" and not kept_evs:
                return Declined(f"no value of {names} falls in the period asked")
            part = _series_part(shape, label, kind, code, kept_evs)
            if part is None:
                return Declined(f"{shape} of {names}: the values are not numbers in one unit")
            parts_l.append(part)
        return Computed(
            shape,
            tuple(parts_l),
            f"the {shape} of {names}" + (" in the period asked" if w.is_filter else ""),
            window=w,
            in_window=w.is_filter,
            resolution=res,
        )
    return Declined("the question is not one of the shapes computed from the record")


def _point(w: TimeWindow, groups, names: str, res: Resolution) -> Computed | Declined:
    parts = []
    shape = "value"
    for label, kind, code, evs in groups:
        inside = [e for e in evs if in_window(e, w)]
        if inside:
            parts.append(Part(label, kind, stated=tuple(inside), code=code))
            continue
        before = [e for e in evs if w.since is not None and _day(e) < w.since.date()]
        after = [e for e in evs if w.until is not None and _day(e) > w.until.date()]
        parts.append(
            Part(label, kind, before=before[-1] if before else None, after=after[0] if after else None, code=code)
        )
        shape = "nearest"
    if shape == "nearest" and any(p.stated for p in parts):
        # some concepts have values that day and some do not: say each as it is
        shape = "value"
    return Computed(
        shape, tuple(parts), f"the value of {names} on the date asked", window=w, in_window=True, resolution=res
    )


def _status(plan: QuestionPlan, record: PatientRecord, groups, names: str, res: Resolution) -> Computed | Declined:
    day, at_end = _state_day(plan, record)
    if day is None:
        return Declined("the record has no dated events to read the state at")
    parts = []
    for label, kind, code, evs in groups:
        upto = [e for e in evs if _day(e) <= day]
        if not upto:
            parts.append(Part(label, kind, answer="no", after=evs[0], code=code))
            continue
        if kind is EventKind.MEDICATION:
            covering = [e for e in upto if medication_covers(e, day)]
            parts.append(
                Part(label, kind, stated=tuple(covering or upto[-1:]), answer="yes" if covering else "no", code=code)
            )
        elif kind in (EventKind.CONDITION, EventKind.ALLERGY):
            latest = _first_day_group(upto, newest=True)
            states = {condition_state(e) for e in latest}
            if len(states) != 1 or None in states:
                return Declined(f"the record does not say whether {names} is still active")
            parts.append(Part(label, kind, stated=tuple(latest), answer=states.pop(), code=code))
        else:
            return Declined(f"whether {names} is current is not a state the record keeps")
    why = f"whether {names} is active " + ("at the record's end" if at_end else f"on {day.isoformat()}")
    return Computed("status", tuple(parts), why, window=plan.window, as_of=day, at_record_end=at_end, resolution=res)


_EVER_WHAT = re.compile(
    r"\b(?:prescribed|taken|took|on|received|given|had|used)\s+(?:with\s+|any\s+)?(?P<what>[A-Za-z][^?!]*?)\s*[?.!]*$",
    re.I,
)


def _never(question: str, plan: QuestionPlan, record: PatientRecord) -> Computed | Declined:
    """ "Has the patient ever been prescribed X?" when no medication of the record is X: "no"
    only when X's name occurs in no event's text at all (notes included); a name found only in
    notes is left to the generator."""
    m = _EVER_WHAT.search(question)
    what = m.group("what").strip() if m else ""
    what = re.sub(r"^(?:an?|the|any|some)\s+", "", what, flags=re.I)
    what = re.sub(r"\s+(?:before|previously|in\s+the\s+past|ever|at\s+all|already)$", "", what, flags=re.I).strip()
    if not words(what) or len(what) < 3:
        return Declined("could not read what the question asks about")
    terms = [w for w in words(what) if len(w) >= 3]
    for e in record.events:
        hay = " ".join((e.text, e.title or "", e.note_type or "")).casefold()
        if what.casefold() in hay or any(w in hay for w in terms):
            return Declined(f"{what!r} (or a word of it) is in the record but not as a structured medication")
    part = Part(what, EventKind.MEDICATION, answer="no")
    return Computed("status", (part,), f"no event of the record names {what!r}")


def as_datetime_day(d: datetime | None) -> date | None:
    return d.date() if d else None


def _number(e: Event) -> float:
    """A measured event's value as a float (callers keep only events whose value is a number)."""
    if isinstance(e.value, bool) or not isinstance(e.value, int | float):
        raise TypeError(f"event {e.event_id} has no numeric value")
    return float(e.value)
