"""Time in questions: calendar dates in the forms people write, relative expressions, and
explicit ``--since``/``--until`` values, each read as a time window.

Recognised in a question (case-insensitive), most specific first:

- a day with its year: ``May 5, 2019``, ``May 5th 2019``, ``5 May 2019``, ``the 5th of May,
  2019``, ``2019-05-05``, ``2019/05/05``, ``05/05/2019``, ``5/5/19`` (numeric dates are read
  month first, as in US records, unless the first number cannot be a month: ``25/12/2019``);
- a day without a year: ``on the 3rd of March``, ``March 3rd``, ``on 3 March``: the latest such
  day on or before the record's end;
- a weekday: ``last Tuesday``, ``on Tuesday``: the latest such weekday before the record's end
  day; ``yesterday``, ``today``;
- a month: ``May 2019``, ``in May of 2019``, ``05/2019``;
- relative spans: ``last 6 months``, ``past 24 hours``, ``within 2 weeks``;
- a year: ``in 2019``, ``during 2019``, ``since 2019``, ``before 2019``.

A date preceded by ``since``/``after``/``from`` opens a window from it onwards; by
``before``/``prior to``/``until`` a window up to it. Relative time is anchored on the record's
last event, not on today's date: a record that ends in 2022 asked about "the last year" means
2021-2022. Calendar windows (days, months, years) are compared with each chunk's own calendar
dates (the dates its text shows), not with UTC instants, so an evening event in a western
offset stays on its day. Expressions relative to clinical events ("since her stroke") are not
recognised here. Pure functions; no I/O.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

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
_IN_YEAR = re.compile(r"\b(?:in|during|of|for|throughout)\s+(?:the\s+year\s+)?((?:19|20)\d{2})\b", re.I)
_SINCE_YEAR = re.compile(r"\b(?:since|after|from)\s+((?:19|20)\d{2})\b", re.I)
_BEFORE_YEAR = re.compile(r"\b(?:before|prior to|until)\s+((?:19|20)\d{2})\b", re.I)

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9,
    "sept": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12,
    "december": 12,
}
_MON = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?"
_YEAR4 = r"(?P<y>(?:19|20)\d{2})"
_WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
_WEEKDAY_ABBR = {d.lower(): i for i, d in enumerate(calendar.day_abbr)}

# Day with a year.
_ISO_DAY = re.compile(r"\b(?P<y>(?:19|20)\d{2})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})\b")
_NUM_DAY = re.compile(r"(?<![\d/.-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?![\d/.-])")
_MDY_TEXT = re.compile(rf"\b{_MON}\s+{_DAY}\b,?\s+{_YEAR4}\b", re.I)
_DMY_TEXT = re.compile(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MON},?\s+{_YEAR4}\b", re.I)
# Day without a year (the year comes from the record's end).
_MD_TEXT = re.compile(rf"\b{_MON}\s+{_DAY}\b(?!\s*,?\s*\d)", re.I)
_DM_TEXT = re.compile(rf"\b(?P<lead>the\s+|on\s+)?{_DAY}\s+(?P<of>of\s+)?{_MON}\b(?!\.?,?\s*\d)", re.I)
# Month with a year.
_MONTH_YEAR = re.compile(rf"\b{_MON},?\s+(?:of\s+)?{_YEAR4}\b", re.I)
_NUM_MONTH = re.compile(r"(?<![\d/.-])(?P<mo>\d{1,2})/(?P<y>(?:19|20)\d{2})(?![\d/.-])")
# Weekdays and named days.
_WEEKDAY = re.compile(
    r"\b(?P<lead>last|on|this past|past)\s+(?P<wd>"
    + "|".join(sorted([*_WEEKDAYS, *_WEEKDAY_ABBR], key=len, reverse=True))
    + r")\b\.?",
    re.I,
)
_NAMED_DAY = re.compile(r"\b(yesterday|today)\b", re.I)

_OPEN_SINCE = re.compile(r"\b(?:since|after|from|starting|beginning)\s+(?:on\s+|in\s+)?$", re.I)
_OPEN_UNTIL = re.compile(r"\b(?:before|prior\s+to|until|till|up\s+to|by)\s+(?:on\s+|in\s+)?$", re.I)


@dataclass(frozen=True)
class TimeWindow:
    """A time filter read from a question or given explicitly, with the phrase that set it.

    ``since``/``until`` are inclusive instants; ``calendar`` says they came from calendar
    days (compare dates, not instants: see :func:`overlaps`); ``target`` is the day asked
    about, for "nearest evidence" when nothing falls inside; ``span`` is where the phrase
    sits in the question (to take it out of the text query)."""

    since: datetime | None = None
    until: datetime | None = None
    phrase: str | None = None
    calendar: bool = False
    target: datetime | None = None
    span: tuple[int, int] | None = None
    recency: bool = False
    """Kept for callers of the old API: the question asked for the latest evidence. Set by
    :mod:`ragehr.retrieval.intent`, not here."""

    @property
    def is_filter(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def is_point(self) -> bool:
        """A closed window on one day or month (a "what was it on ..." question)."""
        return self.since is not None and self.until is not None and self.target is not None


def _n(token: str | None) -> int:
    if token is None:
        return 1
    return int(token) if token.isdigit() else _NUM_WORDS[token.lower()]


def day_start(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def day_end(d: date) -> datetime:
    return datetime.combine(d, time.max, UTC)


def _month_end(y: int, m: int) -> date:
    return date(y, m, calendar.monthrange(y, m)[1])


def _year2(y: str) -> int:
    """A two-digit year: 00-69 are 20xx, 70-99 are 19xx (as strptime's %y)."""
    n = int(y)
    return n if len(y) == 4 else (2000 + n if n < 70 else 1900 + n)


def _latest_on_or_before(month: int, day: int, anchor: date) -> date | None:
    for y in range(anchor.year, anchor.year - 9, -1):
        try:
            d = date(y, month, day)
        except ValueError:
            continue
        if d <= anchor:
            return d
    return None


@dataclass(frozen=True)
class _Mention:
    first: date
    last: date
    start: int
    end: int
    target: date | None


def _day_mentions(q: str, anchor: date | None) -> list[_Mention]:
    """Calendar days and months named in ``q``, each once, leftmost first."""
    found: list[_Mention] = []
    taken: list[tuple[int, int]] = []

    def add(m: re.Match[str], first: date, last: date, target: date | None) -> None:
        s, e = m.span()
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        found.append(_Mention(first, last, s, e, target))

    def safe(y: int, mo: int, d: int) -> date | None:
        try:
            return date(y, mo, d)
        except ValueError:
            return None

    for m in _ISO_DAY.finditer(q):
        d = safe(int(m["y"]), int(m["mo"]), int(m["d"]))
        if d:
            add(m, d, d, d)
    for m in _NUM_DAY.finditer(q):
        a, b, y = int(m["a"]), int(m["b"]), _year2(m["y"])
        mo, dd = (a, b) if a <= 12 else (b, a)
        d = safe(y, mo, dd)
        if d:
            add(m, d, d, d)
    for rx in (_MDY_TEXT, _DMY_TEXT):
        for m in rx.finditer(q):
            d = safe(int(m["y"]), _MONTHS[m["mon"].lower()], int(m["d"]))
            if d:
                add(m, d, d, d)
    for m in _MONTH_YEAR.finditer(q):
        y, mo = int(m["y"]), _MONTHS[m["mon"].lower()]
        add(m, date(y, mo, 1), _month_end(y, mo), date(y, mo, 15))
    for m in _NUM_MONTH.finditer(q):
        y, mo = int(m["y"]), int(m["mo"])
        if 1 <= mo <= 12:
            add(m, date(y, mo, 1), _month_end(y, mo), date(y, mo, 15))
    if anchor is not None:
        for m in _MD_TEXT.finditer(q):
            mon = m["mon"].lower()
            if mon == "may" and not m["ord"] and not re.search(r"\b(?:on|of|since|after|before|until|by)\s+$", q[: m.start()], re.I):
                continue  # "may 5" could be the verb
            d = _latest_on_or_before(_MONTHS[mon], int(m["d"]), anchor)
            if d:
                add(m, d, d, d)
        for m in _DM_TEXT.finditer(q):
            if not (m["ord"] or m["of"] or m["lead"]):
                continue  # a bare number before a month word is too often something else
            d = _latest_on_or_before(_MONTHS[m["mon"].lower()], int(m["d"]), anchor)
            if d:
                add(m, d, d, d)
        for m in _WEEKDAY.finditer(q):
            wd = m["wd"].lower()
            idx = _WEEKDAYS.get(wd, _WEEKDAY_ABBR.get(wd))
            if idx is None:
                continue
            back = (anchor.weekday() - idx) % 7 or 7
            d = anchor - timedelta(days=back)
            add(m, d, d, d)
        for m in _NAMED_DAY.finditer(q):
            d = anchor - timedelta(days=1) if m.group(1).lower() == "yesterday" else anchor
            add(m, d, d, d)
    found.sort(key=lambda x: x.start)
    return found


def parse_time_expression(question: str, anchor: datetime | None) -> TimeWindow:
    """Read a time window from a question. Dates with a year are read without an anchor;
    relative ones ("last 6 months", "on the 3rd of March", "last Tuesday") need ``anchor``
    (the record's last event). Returns an empty window when nothing is recognised."""
    q = question
    anchor_day = anchor.date() if anchor is not None else None
    mentions = _day_mentions(q, anchor_day)
    if len(mentions) >= 2 and re.search(r"\b(?:between|from)\s+$", q[: mentions[0].start], re.I):
        a, b = mentions[0], mentions[1]
        lo, hi = min(a.first, b.first), max(a.last, b.last)
        return TimeWindow(
            since=day_start(lo), until=day_end(hi), phrase=q[a.start : b.end], calendar=True,
            span=(a.start, b.end),
        )
    if mentions:
        m = mentions[0]
        before = q[: m.start]
        phrase = q[m.start : m.end]
        if _OPEN_SINCE.search(before):
            return TimeWindow(since=day_start(m.first), phrase=phrase, calendar=True, span=(m.start, m.end))
        if _OPEN_UNTIL.search(before):
            return TimeWindow(until=day_end(m.last), phrase=phrase, calendar=True, span=(m.start, m.end))
        return TimeWindow(
            since=day_start(m.first), until=day_end(m.last), phrase=phrase, calendar=True,
            target=day_start(m.target) if m.target else None, span=(m.start, m.end),
        )
    if anchor is not None:
        for rx in (_WITHIN, _LAST_N):
            m = rx.search(q)
            if m:
                n, unit = _n(m.group(1)), m.group(2).lower()
                return TimeWindow(since=anchor - n * _UNITS[unit], phrase=m.group(0), span=m.span())
    m = _IN_YEAR.search(q)
    if m:
        y = int(m.group(1))
        return TimeWindow(
            since=day_start(date(y, 1, 1)), until=day_end(date(y, 12, 31)), phrase=m.group(0),
            calendar=True, span=m.span(),
        )
    m = _SINCE_YEAR.search(q)
    if m:
        return TimeWindow(since=day_start(date(int(m.group(1)), 1, 1)), phrase=m.group(0), calendar=True, span=m.span())
    m = _BEFORE_YEAR.search(q)
    if m:
        return TimeWindow(
            until=day_end(date(int(m.group(1)) - 1, 12, 31)), phrase=m.group(0), calendar=True, span=m.span()
        )
    return TimeWindow()


def strip_phrase(question: str, window: TimeWindow) -> str:
    """The question without the time phrase that became ``window`` (and a preposition right
    before it), for the text side of retrieval once the time is a filter."""
    if window.span is None:
        return question
    s, e = window.span
    head = re.sub(r"\b(?:on|in|during|since|after|before|from|until|by|of|between|at|as of)\s+$", "", question[:s], flags=re.I)
    return " ".join((head + " " + question[e:]).split())


def overlaps(
    start: datetime | None,
    end: datetime | None,
    since: datetime | None,
    until: datetime | None,
    *,
    by_date: bool = False,
) -> bool:
    """Whether [start, end] meets [since, until]. Undated things never pass a time filter.

    With ``by_date``, each side is compared by calendar date (a chunk's own dates against the
    window's UTC dates), for windows read as calendar days."""
    if since is None and until is None:
        return True
    if start is None:
        return False
    end = end or start
    if by_date:
        if since is not None and end.date() < since.date():
            return False
        if until is not None and start.date() > until.date():
            return False
        return True
    if since is not None and end < since:
        return False
    if until is not None and start > until:
        return False
    return True


def distance_days(start: datetime | None, end: datetime | None, target: datetime) -> float:
    """Days between ``target``'s date and the nearest date of [start, end] (0 inside)."""
    if start is None:
        return float("inf")
    lo, hi, t = start.date(), (end or start).date(), target.date()
    if lo <= t <= hi:
        return 0.0
    return float(min(abs((lo - t).days), abs((hi - t).days)))


_OPTION_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%z", None), ("%Y-%m-%dT%H:%M:%S", None), ("%Y-%m-%dT%H:%M", None),
    ("%Y-%m-%d", "day"), ("%Y-%m", "month"), ("%Y", "year"),
)


def parse_date_option(value: str, *, end: bool = False) -> datetime:
    """A ``--since``/``--until`` value: ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or ISO datetime.

    With ``end`` (for ``--until``) a period means its last instant: ``2022`` is
    2022-12-31T23:59:59.999999, ``2022-02`` the end of February, ``2022-02-03`` the end of that
    day. A full datetime is taken as given."""
    v = value.strip()
    for fmt, period in _OPTION_FORMATS:
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            continue
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        if end and period == "year":
            return day_end(date(dt.year, 12, 31))
        if end and period == "month":
            return day_end(_month_end(dt.year, dt.month))
        if end and period == "day":
            return day_end(dt.date())
        return dt
    raise ValueError(f"not a date: {value!r} (use YYYY, YYYY-MM, YYYY-MM-DD or an ISO datetime)")
