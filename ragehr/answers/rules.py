"""The record's rules for what an event means, shared by computed answers and the generated QA
gold (:mod:`ragehr.eval.generated` imports them), so the two cannot drift apart.

- :func:`display_name`: an event's name for questions and answers;
- :func:`medication_covers`: whether a medication event counts as taken on a day;
- :func:`condition_state`: whether a condition event says it is active (``yes``), over
  (``no``) or does not say (``None``);
- :func:`usable`: events that count as evidence at all (dated, not negated).

Pure functions over :class:`~ragehr.types.Event`; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date

from ragehr.types import Event, Status, TimePrecision

__all__ = [
    "DAY_OR_FINER",
    "condition_state",
    "display_name",
    "is_number",
    "medication_covers",
    "name_key",
    "sorted_names",
    "usable",
]

DAY_OR_FINER = (TimePrecision.DAY, TimePrecision.MINUTE, TimePrecision.SECOND)

_DOSAGE = re.compile(r"\s+\(dosage:", re.IGNORECASE)
_TRAILING_GROUP = re.compile(r"\s*[\(\[]([^\(\)\[\]]*)[\)\]]\s*$")


def _norm_unit(u: str) -> str:
    return re.sub(r"\s+", "", u).casefold()


def display_name(e: Event) -> str:
    """An event's name for questions and answers: its text, whitespace collapsed, without a
    trailing ``(dosage: ...)`` or a trailing ``(unit)``/``[unit]`` equal to the event's unit."""
    text = " ".join((e.text or e.code or "").split())
    m = _DOSAGE.search(text)
    if m:
        text = text[: m.start()]
    if e.unit:
        g = _TRAILING_GROUP.search(text)
        if g and _norm_unit(g.group(1)) == _norm_unit(e.unit):
            text = text[: g.start()]
    return text.rstrip(" :,;")


def name_key(e: Event) -> str:
    """:func:`display_name` casefolded, invisible format characters removed (Synthea writes
    some names with a zero-width space): events with equal keys are one series."""
    return "".join(ch for ch in display_name(e).casefold() if unicodedata.category(ch) != "Cf")


def usable(e: Event) -> bool:
    """Dated and not negated: an event that can be evidence of something having happened."""
    return e.start is not None and e.status is not Status.NEGATED


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def medication_covers(e: Event, d: date) -> bool:
    """Whether medication event ``e`` counts as taken on calendar day ``d``.

    - ``start`` must be on or before ``d`` (undated and negated events never count);
    - with an ``end``: ``d`` must be on or before the end's date;
    - without an end, status ``active`` or none: ongoing, so every day from the start counts;
    - without an end and any other status (``completed``, ``stopped``, ...): the start day only
      (an order known to be over, with no stated end, is not assumed to have lasted).
    """
    if e.start is None or e.status is Status.NEGATED:
        return False
    if e.start.date() > d:
        return False
    if e.end is not None:
        return d <= e.end.date()
    if e.status in (None, Status.ACTIVE):
        return True
    return d == e.start.date()


def condition_state(e: Event) -> str | None:
    """``no`` when the event says the condition is over (resolved, inactive, or an end),
    ``yes`` when it says active, ``None`` when it says neither."""
    if e.status in (Status.RESOLVED, Status.INACTIVE) or e.end is not None:
        return "no"
    if e.status is Status.ACTIVE:
        return "yes"
    return None


def sorted_names(events: Iterable[Event]) -> tuple[str, ...]:
    """Distinct display names, compared case-insensitively (the first spelling in sorted order
    stands for the others), sorted case-insensitively."""
    names = sorted({display_name(e) for e in events}, key=lambda s: (s.casefold(), s))
    out: list[str] = []
    for name in names:
        if not out or out[-1].casefold() != name.casefold():
            out.append(name)
    return tuple(out)
