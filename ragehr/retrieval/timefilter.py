"""Time in questions: explicit filters, and relative expressions read from the question.

Relative time ("last 6 months", "past 24 hours", "in 2019", "since 2019", "most recent") is
anchored on the record's last event, not on today's date: a record that ends in 2022 asked
about "the last year" means 2021-2022. Expressions relative to clinical events ("since her
stroke") are not recognised. Pure functions; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

UTC = timezone.utc

_UNITS = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30.44),
    "year": timedelta(days=365.25),
}
_NUM_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "eighteen": 18, "twenty-four": 24,
    "a": 1, "an": 1,
}
_NUM = r"(\d+|" + "|".join(sorted(_NUM_WORDS, key=len, reverse=True)) + ")"
_LAST_N = re.compile(
    rf"\b(?:last|past|previous|prior|recent)\s+(?:{_NUM}\s+)?(hour|day|week|month|year)s?\b", re.I
)
_WITHIN = re.compile(rf"\bwithin\s+(?:the\s+)?(?:last\s+|past\s+)?{_NUM}\s+(hour|day|week|month|year)s?\b", re.I)
_IN_YEAR = re.compile(r"\b(?:in|during|of)\s+((?:19|20)\d{2})\b", re.I)
_SINCE_YEAR = re.compile(r"\b(?:since|after)\s+((?:19|20)\d{2})\b", re.I)
_BEFORE_YEAR = re.compile(r"\b(?:before|prior to)\s+((?:19|20)\d{2})\b", re.I)
_RECENT = re.compile(r"\b(most recent|latest|last|newest|current(?:ly)?|recent(?:ly)?)\b", re.I)


@dataclass(frozen=True)
class TimeWindow:
    """A time filter and/or a wish for recent evidence, with the phrase that set it."""

    since: datetime | None = None
    until: datetime | None = None
    recency: bool = False
    phrase: str | None = None

    @property
    def is_filter(self) -> bool:
        return self.since is not None or self.until is not None


def _n(token: str | None) -> int:
    if token is None:
        return 1
    return int(token) if token.isdigit() else _NUM_WORDS[token.lower()]


def parse_time_expression(question: str, anchor: datetime | None) -> TimeWindow:
    """Read a relative time window from a question, anchored on ``anchor`` (the record's
    last event). Returns an empty window when nothing is recognised or there is no anchor."""
    if anchor is None:
        return TimeWindow()
    for rx in (_WITHIN, _LAST_N):
        m = rx.search(question)
        if m:
            n, unit = _n(m.group(1)), m.group(2).lower()
            return TimeWindow(since=anchor - n * _UNITS[unit], until=None, phrase=m.group(0))
    m = _IN_YEAR.search(question)
    if m:
        y = int(m.group(1))
        return TimeWindow(
            since=datetime(y, 1, 1, tzinfo=UTC), until=datetime(y + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
            phrase=m.group(0),
        )
    m = _SINCE_YEAR.search(question)
    if m:
        return TimeWindow(since=datetime(int(m.group(1)), 1, 1, tzinfo=UTC), phrase=m.group(0))
    m = _BEFORE_YEAR.search(question)
    if m:
        return TimeWindow(until=datetime(int(m.group(1)), 1, 1, tzinfo=UTC) - timedelta(microseconds=1), phrase=m.group(0))
    m = _RECENT.search(question)
    if m:
        return TimeWindow(recency=True, phrase=m.group(0))
    return TimeWindow()


def overlaps(start: datetime | None, end: datetime | None, since: datetime | None, until: datetime | None) -> bool:
    """Whether [start, end] meets [since, until]. Undated things never pass a time filter."""
    if since is None and until is None:
        return True
    if start is None:
        return False
    end = end or start
    if since is not None and end < since:
        return False
    if until is not None and start > until:
        return False
    return True


def parse_date_option(value: str) -> datetime:
    """A ``--since``/``--until`` value: ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or ISO datetime."""
    v = value.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            continue
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise ValueError(f"not a date: {value!r} (use YYYY, YYYY-MM, YYYY-MM-DD or an ISO datetime)")
