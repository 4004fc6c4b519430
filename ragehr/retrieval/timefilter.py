"""Time in questions: calendar dates in the forms people write, relative expressions, and
explicit ``--since``/``--until`` values, each read as a time window.

Recognised in a question (case-insensitive), the longest match first:

- a day with its year: ``May 5, 2019``, ``May 5th 2019``, ``May 6, '24``, ``5 May 2019``,
  ``6 May '24``, ``the 5th of May, 2019``, ``6-May-2024``, ``06-MAY-24``, ``06MAY2024``,
  ``2019-05-05``, ``2019/05/05``, ``20190505``, ``05/05/2019``, ``5/5/19``, ``5.5.19``.
  Numeric dates are read month first, as in US records (``day_first=False``, the default;
  ``retrieval.day_first: true`` in the configuration reads them day first), unless the first
  number cannot be a month (``25/12/2019``); days that do not exist are not dates;
- a day without a year: ``on the 3rd of March``, ``March 3rd``, ``on 3 March``: the latest such
  day on or before the record's end;
- a weekday: ``last Tuesday``, ``on Tuesday``: the latest such weekday before the record's end
  day; ``yesterday``, ``today``;
- a month: ``May 2019``, ``in May of 2019``, ``Nov-2024``, ``Nov '24``, ``05/2019``,
  ``2019-05``; a part of a month: ``early May 2019`` (days 1-10), ``mid-May 2019`` (11-20),
  ``late May 2019`` (21 to the month's end);
- a quarter: ``Q2 2024``, ``Q2-2024``, ``2024 Q2``, ``the 2nd quarter of 2024``;
- a half year: ``the first half of 2022`` (January-June), ``2nd half of 2022``, ``H2 2022``;
- a season, as the meteorological seasons of the northern hemisphere: ``spring of 2021``
  (March-May), ``summer 2021`` (June-August), ``fall``/``autumn 2021`` (September-November),
  ``winter 2021`` (the winter whose January is in 2021: December 2020 to February 2021;
  ``winter 2020-21`` says the same);
- a third of a year: ``early 2020`` / ``the beginning of 2020`` (January-April), ``mid-2021`` /
  ``the middle of 2021`` (May-August), ``late 2020`` / ``the end of 2020`` (September-December);
- relative spans: ``last 6 months``, ``past 24 hours``, ``within 2 weeks``; ``this year``,
  ``this month``, ``this week`` (from the first day of the record end's year, month or week,
  Monday first);
- a year: ``in 2019``, ``during 2019``, ``since 2019``, ``before 2019``, ``since the year 1``;
  years: ``between 2019 and 2021``, ``from 2019 to 2021``, ``2019-2021``, ``2019 through 2021``;
  a decade: ``the 2010s``, ``the early 2000s`` (2000-2003), ``mid-1990s`` (1994-1996),
  ``late 1990s`` (1997-1999). Years and decades name no day, so a question about one alone is
  not a "what was it on ..." question.

Four-digit years in a full date may be any year from 1000 to 9999; where only a month, a period
or a bare year is named, the year must look like one (1900-2099, or ``the year N``), so that
``in 1500 mg`` or ``Q2 3000`` are not dates. Two-digit years (``'24``, ``5/6/24``) are 2000-2069
for 00-69 and 1970-1999 for 70-99, as ``strptime``'s ``%y``.

A date preceded by ``since``/``after``/``from`` opens a window from it onwards; by
``before``/``prior to``/``until`` a window up to it. Relative time is anchored on the record's
last event, not on today's date: a record that ends in 2022 asked about "the last year" means
2021-2022. Calendar windows (days, months, years) are compared with each chunk's own calendar
dates (the dates its text shows), not with UTC instants, so an evening event in a western
offset stays on its day. Expressions relative to clinical events ("since her stroke") are not
recognised here, nor are future spans ("next 2 weeks").

Every string is accepted: a phrase that reaches past the representable calendar ("the past
999999 days", "last 3000 years", "since the year 0", "in the year 99999") is clamped to it
(:data:`MIN_TIME` .. :data:`MAX_TIME`, UTC), never an error. Pure functions over precompiled
patterns; no I/O.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

MIN_TIME = datetime.min.replace(tzinfo=UTC)
"""The earliest instant a window can hold: 0001-01-01T00:00 UTC."""
MAX_TIME = datetime.max.replace(tzinfo=UTC)
"""The latest instant a window can hold: 9999-12-31T23:59:59.999999 UTC."""

_F = re.IGNORECASE | re.ASCII  # ASCII: "\d" is 0-9 only, and no Unicode case folding ("ſept" is not "sept")

_UNITS = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30.44),
    "year": timedelta(days=365.25),
}
_NUM_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "eighteen": 18,
    "twenty-four": 24,
    "a": 1,
    "an": 1,
}
_NUM = r"(\d+|" + "|".join(sorted(_NUM_WORDS, key=len, reverse=True)) + ")"
_LAST_N = re.compile(rf"\b(?:last|past|previous|prior|recent)\s+(?:{_NUM}\s+)?(hour|day|week|month|year)s?\b", _F)
_WITHIN = re.compile(rf"\bwithin\s+(?:the\s+)?(?:last\s+|past\s+)?{_NUM}\s+(hour|day|week|month|year)s?\b", _F)
# A number followed by a unit is an amount, not a year ("in 2000 mL", "May 5, 1000 mg").
_NO_UNIT = (
    r"(?!\s*(?:%|(?:mg|mcg|ug|g|kg|lbs?|ml|l|dl|units?|iu|meq|mmol|mosm|cc|mm|cm|tabs?|tablets?|caps?|capsules?"
    r"|puffs?|drops?|doses?|times)\b))"
)
# A bare year must look like one (19xx, 20xx); "the year N" may be any number (clamped).
_YEARISH = r"(?:(?:the\s+)?year\s+(?P<yy>\d+)|(?P<y>(?:19|20)\d{2}))(?!\d)" + _NO_UNIT
_IN_YEAR = re.compile(rf"\b(?:in|during|of|for|throughout)\s+{_YEARISH}", _F)
_SINCE_YEAR = re.compile(rf"\b(?:since|after|from)\s+{_YEARISH}", _F)
_BEFORE_YEAR = re.compile(rf"\b(?:before|prior to|until)\s+{_YEARISH}", _F)

_MONTHS = {
    "jan": 1,
    "january": 1,
    "feb": 2,
    "february": 2,
    "mar": 3,
    "march": 3,
    "apr": 4,
    "april": 4,
    "may": 5,
    "jun": 6,
    "june": 6,
    "jul": 7,
    "july": 7,
    "aug": 8,
    "august": 8,
    "sep": 9,
    "sept": 9,
    "september": 9,
    "oct": 10,
    "october": 10,
    "nov": 11,
    "november": 11,
    "dec": 12,
    "december": 12,
}
_MON_NAME = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")"
_MON = _MON_NAME + r"\.?"
_DAY = r"(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?"
# The year of a full date (1000-9999 or 'yy), and of a month or period (19xx, 20xx or 'yy).
_YD = r"(?:(?P<y>[1-9]\d{3})|['\u2019](?P<y2>\d{2}))(?!\w)" + _NO_UNIT
_YP = r"(?:(?P<y>(?:19|20)\d{2})|['\u2019](?P<y2>\d{2}))(?!\w)" + _NO_UNIT
_WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
_WEEKDAY_ABBR = {d.lower(): i for i, d in enumerate(calendar.day_abbr)}
_NOT_AFTER = r"(?![A-Za-z0-9_]|[-/.]\d)"  # a number ends here (a full stop may follow)

# Day with a year.
_ISO_DAY = re.compile(  # with an ISO time of day, if any: 2019-05-05T10:30:00Z
    r"(?<![\w/.-])(?P<y>[1-9]\d{3})(?P<sep>[-/.])(?P<mo>\d{1,2})(?P=sep)(?P<d>\d{1,2})"
    r"(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d|[/.:-]\d)",
    _F,
)
_COMPACT_DAY = re.compile(
    r"(?<![\w/.#-])(?P<y>(?:19|20)\d{2})(?P<mo>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])" + _NOT_AFTER, _F
)
_NUM_DAY = re.compile(
    r"(?<![\w/.-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?!\d|[/.-]\d)", _F
)
_MDY_TEXT = re.compile(rf"\b{_MON}(?:\s+|-){_DAY}\b(?:,?\s+|,\s*|-){_YD}", _F)
_DMY_TEXT = re.compile(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MON},?\s+{_YD}", _F)
_DMY_DASH = re.compile(  # 6-May-2024, 06-MAY-24, 6/May/24, 06MAY2024
    rf"(?<![\w/.-])(?P<d>\d{{1,2}})(?P<sep>[-/.]?){_MON_NAME}(?P=sep)(?P<y>[1-9]\d{{3}}|\d{{2}})" + _NOT_AFTER, _F
)
# Day without a year (the year comes from the record's end).
_MD_TEXT = re.compile(rf"\b{_MON}\s+{_DAY}\b(?!\s*,?\s*\d)", _F)
_DM_TEXT = re.compile(rf"\b(?P<lead>the\s+|on\s+)?{_DAY}\s+(?P<of>of\s+)?{_MON}\b(?!\.?,?\s*\d)", _F)
# Month with a year; a part of a month.
_MONTH_YEAR = re.compile(rf"\b{_MON}(?:,?\s+(?:of\s+)?|[-/]|(?=['\u2019])){_YP}", _F)
_NUM_MONTH = re.compile(r"(?<![\w/.-])(?P<mo>\d{1,2})/(?P<y>(?:19|20)\d{2})" + _NOT_AFTER, _F)
_ISO_MONTH = re.compile(r"(?<![\w/.-])(?P<y>(?:19|20)\d{2})-(?P<mo>0[1-9]|1[0-2])" + _NOT_AFTER, _F)
_PART_MONTH = re.compile(
    rf"\b(?:the\s+)?(?P<p>early|mid|middle\s+of|late|beginning\s+of|start\s+of|end\s+of)(?:\s+|-|\s*-\s*)"
    rf"{_MON}(?:,?\s+(?:of\s+)?|[-/]|(?=['\u2019])){_YP}",
    _F,
)
# Periods of a year.
_SEP_Y = r"(?:\s+of\s+|\s*,\s*|\s+|[-/]|(?=['\u2019]))(?:the\s+year\s+)?"
_ORDINAL = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_QUARTER = re.compile(
    rf"\b(?:the\s+)?(?:Q(?P<q>[1-4])|(?P<qw>first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter){_SEP_Y}{_YP}", _F
)
_QUARTER_AFTER = re.compile(r"\b(?P<y>(?:19|20)\d{2})\s*[-/]?\s*Q(?P<q>[1-4])\b", _F)
_HALF = re.compile(rf"\b(?:the\s+)?(?:(?P<hw>first|second|1st|2nd|latter)\s+half|H(?P<h>[12])){_SEP_Y}{_YP}", _F)
_HALF_AFTER = re.compile(r"\b(?P<y>(?:19|20)\d{2})\s*[-/]?\s*H(?P<h>[12])\b", _F)
_SEASON = re.compile(
    rf"\b(?:the\s+)?(?P<s>spring|summer|fall|autumn|winter)(?:\s+of\s+|\s*,\s*|\s+)(?:the\s+year\s+)?{_YP}"
    r"(?:\s*[-/]\s*(?P<y_end>(?:19|20)?\d{2})(?!\d))?",
    _F,
)
_YEAR_RANGE = re.compile(  # between 2019 and 2021, from 2019 to 2021, 2019-2021, 2019 through 2021
    r"\b(?:(?:between|from)\s+(?:the\s+years?\s+)?(?P<a1>(?:19|20)\d{2})"
    r"\s*(?:\s(?:and|to|through|thru|until)\s|-|\u2013)"
    r"|(?P<a2>(?:19|20)\d{2})(?:\s*(?:-|\u2013)\s*|\s+(?:to|through|thru)\s+))"
    r"\s*(?P<b>(?:19|20)\d{2})(?!\w)" + _NO_UNIT,
    _F,
)
_THIS = re.compile(r"\b(?:this|the\s+current)\s+(?P<unit>year|month|week)\b", _F)
_DECADE = re.compile(r"\b(?:the\s+)?(?:(?P<p>early|mid|late)(?:\s+|\s*-\s*))?(?P<y>(?:19|20)\d0)['\u2019]?s\b", _F)
_SEASON_MONTHS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}
_PART_YEAR = re.compile(
    rf"\b(?:the\s+)?(?P<p>early|mid|middle\s+of|late|beginning\s+of|start\s+of|end\s+of)"
    rf"(?:\s+in\s+|\s*-\s*|\s+)(?:the\s+year\s+)?{_YP}",
    _F,
)
# Weekdays and named days.
_WEEKDAY = re.compile(
    r"\b(?P<lead>last|on|this past|past)\s+(?P<wd>"
    + "|".join(sorted([*_WEEKDAYS, *_WEEKDAY_ABBR], key=len, reverse=True))
    + r")\b\.?",
    _F,
)
_NAMED_DAY = re.compile(r"\b(yesterday|today)\b", _F)
_MAY_VERB_OK = re.compile(r"\b(?:on|of|since|after|before|until|by)\s+$", _F)

_OPEN_SINCE = re.compile(r"\b(?:since|after|from|starting|beginning)\s+(?:on\s+|in\s+)?$", _F)
_OPEN_UNTIL = re.compile(r"\b(?:before|prior\s+to|until|till|up\s+to|by)\s+(?:on\s+|in\s+)?$", _F)
_BETWEEN = re.compile(r"\b(?:between|from)\s+$", _F)
_LEAD_PREP = re.compile(r"\b(?:on|in|during|since|after|before|from|until|by|of|between|at|as of)\s+$", re.I)
_DIGIT_HINT = re.compile(r"\d", re.ASCII)
_YEAR_HINT = re.compile(r"(?:19|20)\d\d|['\u2019]\d\d", re.ASCII)
_MONTH_HINT = re.compile(r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec", _F)


def _ends_with(rx: re.Pattern[str], text: str) -> re.Match[str] | None:
    """``rx`` (ending in ``$``) at the end of ``text``, looking only at its last 40 characters."""
    return rx.search(text, max(0, len(text) - 40))


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
        """A closed window on one day or a period named by the calendar (a month, a quarter, a
        season: a "what was it on / in ..." question); a whole year is not one."""
        return self.since is not None and self.until is not None and self.target is not None


_BIG = 10**9  # more than any unit spans in the calendar (3,652,059 days)


def _n(token: str | None) -> int:
    if token is None:
        return 1
    if token.isdigit():
        return int(token) if len(token) <= 9 else _BIG  # int() refuses > 4300 digits
    return _NUM_WORDS[token.lower()]


def day_start(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def day_end(d: date) -> datetime:
    return datetime.combine(d, time.max, UTC)


def _clamp_year(y: int) -> int:
    return min(max(y, date.min.year), date.max.year)


def _month_end(y: int, m: int) -> date:
    return date(y, m, calendar.monthrange(y, m)[1])


def _year2(y: str) -> int:
    """A two-digit year: 00-69 are 20xx, 70-99 are 19xx (as strptime's %y)."""
    n = int(y)
    return n if len(y) == 4 else (2000 + n if n < 70 else 1900 + n)


def _year(m: re.Match[str]) -> int:
    """The year of a match with a four-digit ``y`` or an apostrophe's two-digit ``y2``."""
    return int(m["y"]) if m["y"] else _year2(m["y2"])


def _back(anchor: datetime, n: int, unit: str) -> datetime:
    """``anchor`` minus ``n`` units, clamped to the calendar's first instant."""
    try:
        return anchor - n * _UNITS[unit]
    except OverflowError:
        return MIN_TIME if anchor.tzinfo is not None else datetime.min


def _latest_on_or_before(month: int, day: int, anchor: date) -> date | None:
    for y in range(anchor.year, anchor.year - 9, -1):
        try:
            d = date(y, month, day)
        except ValueError:
            continue
        if d <= anchor:
            return d
    return None


def _safe(y: int, mo: int, d: int) -> date | None:
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def _period(y: int, first_month: int, months: int) -> tuple[date, date, date] | None:
    """``months`` calendar months from ``first_month`` of year ``y`` (may run into the next
    year): (first day, last day, middle day), or None outside the calendar."""
    lo_y, lo_m = y + (first_month - 1) // 12, (first_month - 1) % 12 + 1
    end = lo_m + months - 1
    hi_y, hi_m = lo_y + (end - 1) // 12, (end - 1) % 12 + 1
    if not (date.min.year <= lo_y and hi_y <= date.max.year):
        return None
    lo, hi = date(lo_y, lo_m, 1), _month_end(hi_y, hi_m)
    return lo, hi, lo + (hi - lo) // 2


_PART_OF_YEAR = {"early": 1, "beginning": 1, "start": 1, "mid": 5, "middle": 5, "late": 9, "end": 9}
_PART_OF_MONTH = {
    "early": (1, 10),
    "beginning": (1, 10),
    "start": (1, 10),
    "mid": (11, 20),
    "middle": (11, 20),
    "late": (21, 31),
    "end": (21, 31),
}


@dataclass(frozen=True)
class _Mention:
    first: date
    last: date
    start: int
    end: int
    target: date | None
    hold: bool = False
    """A day written in full that does not exist ("31 April 2020"): not a window, but it holds
    its place, so no shorter reading inside it ("April 2020") becomes one."""


def _day_mentions(q: str, anchor: date | None, day_first: bool = False) -> list[_Mention]:
    """Calendar days and periods named in ``q``, leftmost first; where two readings overlap,
    the longer one ("mid-May 2021" over "May 2021")."""
    cands: list[_Mention] = []

    def add(m: re.Match[str], span: tuple[date, date, date | None] | None, *, hold: bool = False) -> None:
        if span is not None:
            cands.append(_Mention(span[0], span[1], m.start(), m.end(), span[2]))
        elif hold:
            cands.append(_Mention(date.min, date.min, m.start(), m.end(), None, hold=True))

    def day(d: date | None) -> tuple[date, date, date] | None:
        return (d, d, d) if d else None

    # Cheap hints first: most patterns need a digit, a year-like number or a month word, and
    # most questions have none of them (half the cost of a question without a date).
    digit = _DIGIT_HINT.search(q) is not None
    year = digit and _YEAR_HINT.search(q) is not None
    month = _MONTH_HINT.search(q) is not None
    low = q.lower() if year else ""
    has_quarter = "q" in low
    has_half = "half" in low or "h1" in low or "h2" in low
    has_season = any(w in low for w in ("spring", "summer", "fall", "autumn", "winter"))
    has_part = any(w in low for w in ("early", "mid", "late", "beginning", "start", "end"))
    has_decade = "0s" in low or "0's" in low or "0\u2019s" in low

    def scan(rx: re.Pattern[str], ok: bool) -> Iterator[re.Match[str]]:
        return rx.finditer(q) if ok else iter(())

    for m in scan(_ISO_DAY, digit):
        add(m, day(_safe(int(m["y"]), int(m["mo"]), int(m["d"]))), hold=True)
    for m in scan(_COMPACT_DAY, year):
        add(m, day(_safe(int(m["y"]), int(m["mo"]), int(m["d"]))))
    for m in scan(_NUM_DAY, digit):
        a, b, y = int(m["a"]), int(m["b"]), _year2(m["y"])
        mo, dd = (b, a) if day_first else (a, b)
        if mo > 12:
            mo, dd = dd, mo
        add(m, day(_safe(y, mo, dd)), hold=True)
    for m in scan(_MDY_TEXT, digit and month):
        add(m, day(_safe(_year(m), _MONTHS[m["mon"].lower()], int(m["d"]))), hold=True)
    for m in scan(_DMY_TEXT, digit and month):
        add(m, day(_safe(_year(m), _MONTHS[m["mon"].lower()], int(m["d"]))), hold=True)
    for m in scan(_DMY_DASH, digit and month):
        add(m, day(_safe(_year2(m["y"]), _MONTHS[m["mon"].lower()], int(m["d"]))), hold=True)
    for m in scan(_MONTH_YEAR, year and month):
        add(m, _period(_year(m), _MONTHS[m["mon"].lower()], 1))
    for rx in (_NUM_MONTH, _ISO_MONTH):
        for m in scan(rx, year):
            mo = int(m["mo"])
            if 1 <= mo <= 12:
                add(m, _period(int(m["y"]), mo, 1))
    for m in scan(_PART_MONTH, has_part and month):
        y, mo = _year(m), _MONTHS[m["mon"].lower()]
        lo_d, hi_d = _PART_OF_MONTH[m["p"].split()[0].lower()]
        lo, hi = date(y, mo, lo_d), date(y, mo, min(hi_d, calendar.monthrange(y, mo)[1]))
        add(m, (lo, hi, lo + (hi - lo) // 2))
    for rx in (_QUARTER, _QUARTER_AFTER):
        for m in scan(rx, has_quarter):
            n = int(m["q"]) if m["q"] else _ORDINAL[m["qw"].lower()]
            add(m, _period(_year(m) if rx is _QUARTER else int(m["y"]), 3 * n - 2, 3))
    for rx in (_HALF, _HALF_AFTER):
        for m in scan(rx, has_half):
            second = m["h"] == "2" if m["h"] else m["hw"].lower() in ("second", "2nd", "latter")
            add(m, _period(_year(m) if rx is _HALF else int(m["y"]), 7 if second else 1, 6))
    for m in scan(_SEASON, has_season):
        y, season = _year(m), m["s"].lower()
        if season == "winter":
            # "winter 2021": the winter whose January is in 2021; "winter 2020-21": the same one.
            y_end = m["y_end"]
            if y_end is not None:
                y2 = _year2(y_end) if len(y_end) == 2 else int(y_end)
                if y2 != y + 1:
                    continue  # "winter 2020-23" is not one winter
                y = y2
            add(m, _period(y - 1, 12, 3))
        elif m["y_end"] is None:
            add(m, _period(y, _SEASON_MONTHS[season], 3))
    for m in scan(_PART_YEAR, has_part):
        add(m, _period(_year(m), _PART_OF_YEAR[m["p"].split()[0].lower()], 4))
    for m in scan(_YEAR_RANGE, year):  # whole years, no target day
        a, b = int(m["a1"] or m["a2"]), int(m["b"])
        cands.append(_Mention(date(min(a, b), 1, 1), date(max(a, b), 12, 31), m.start(), m.end(), None))
    for m in scan(_DECADE, has_decade):  # the 2010s; early (0-3), mid (4-6), late (7-9) 2010s: no target day
        y, part = int(m["y"]), (m["p"] or "").lower()
        y_lo, y_hi = {"early": (0, 3), "mid": (4, 6), "late": (7, 9)}.get(part, (0, 9))
        cands.append(_Mention(date(y + y_lo, 1, 1), date(y + y_hi, 12, 31), m.start(), m.end(), None))
    if anchor is not None:
        for m in scan(_MD_TEXT, digit and month):
            mon = m["mon"].lower()
            if mon == "may" and not m["ord"] and not _ends_with(_MAY_VERB_OK, q[: m.start()]):
                continue  # "may 5" could be the verb
            add(m, day(_latest_on_or_before(_MONTHS[mon], int(m["d"]), anchor)))
        for m in scan(_DM_TEXT, digit and month):
            if not (m["ord"] or m["of"] or m["lead"]):
                continue  # a bare number before a month word is too often something else
            add(m, day(_latest_on_or_before(_MONTHS[m["mon"].lower()], int(m["d"]), anchor)))
        for m in _WEEKDAY.finditer(q):
            idx = _WEEKDAYS.get(m["wd"].lower(), _WEEKDAY_ABBR.get(m["wd"].lower()))
            back = (anchor.weekday() - idx) % 7 or 7 if idx is not None else None
            if back is not None and anchor.toordinal() > back:
                add(m, day(anchor - timedelta(days=back)))
        for m in _NAMED_DAY.finditer(q):
            yesterday = m.group(1).lower() == "yesterday"
            if not (yesterday and anchor == date.min):
                add(m, day(anchor - timedelta(days=1) if yesterday else anchor))
    found: list[_Mention] = []
    for c in sorted(cands, key=lambda c: (c.start - c.end, c.start)):
        if not any(c.start < f.end and f.start < c.end for f in found):
            found.append(c)
    return sorted((f for f in found if not f.hold), key=lambda x: x.start)


def _year_of(m: re.Match[str]) -> int:
    """A bare year (19xx, 20xx) or ``the year N``, clamped to the calendar."""
    if m["y"]:
        return int(m["y"])
    digits = m["yy"].lstrip("0")
    return _clamp_year(int(digits) if 0 < len(digits) <= 5 else (0 if not digits else _BIG))


def parse_time_expression(question: str, anchor: datetime | None, *, day_first: bool = False) -> TimeWindow:
    """Read a time window from a question. Dates with a year are read without an anchor;
    relative ones ("last 6 months", "on the 3rd of March", "last Tuesday") need ``anchor``
    (the record's last event). ``day_first`` reads ``5/6/24`` as 5 June (default: May 6).
    Returns an empty window when nothing is recognised; never raises for any string, and
    clamps to :data:`MIN_TIME` .. :data:`MAX_TIME`."""
    q = question
    anchor_day = anchor.date() if anchor is not None else None
    mentions = _day_mentions(q, anchor_day, day_first)
    if len(mentions) >= 2 and _ends_with(_BETWEEN, q[: mentions[0].start]):
        a, b = mentions[0], mentions[1]
        lo, hi = min(a.first, b.first), max(a.last, b.last)
        return TimeWindow(
            since=day_start(lo),
            until=day_end(hi),
            phrase=q[a.start : b.end],
            calendar=True,
            span=(a.start, b.end),
        )
    if mentions:
        mn = mentions[0]
        before = q[: mn.start]
        phrase = q[mn.start : mn.end]
        if _ends_with(_OPEN_SINCE, before):
            return TimeWindow(since=day_start(mn.first), phrase=phrase, calendar=True, span=(mn.start, mn.end))
        if _ends_with(_OPEN_UNTIL, before):
            return TimeWindow(until=day_end(mn.last), phrase=phrase, calendar=True, span=(mn.start, mn.end))
        return TimeWindow(
            since=day_start(mn.first),
            until=day_end(mn.last),
            phrase=phrase,
            calendar=True,
            target=day_start(mn.target) if mn.target else None,
            span=(mn.start, mn.end),
        )
    if anchor is not None:
        m = _THIS.search(q)
        if m:  # this year / month / week: from its first day to the record's end
            unit, end = m["unit"].lower(), anchor.date()
            first = {"year": end.replace(month=1, day=1), "month": end.replace(day=1)}.get(unit)
            if first is None:
                first = end - timedelta(days=end.weekday()) if end.toordinal() > end.weekday() else date.min
            return TimeWindow(since=day_start(first), phrase=m.group(0), calendar=True, span=m.span())
        for rx in (_WITHIN, _LAST_N):
            m = rx.search(q)
            if m:
                n, unit = _n(m.group(1)), m.group(2).lower()
                return TimeWindow(since=_back(anchor, n, unit), phrase=m.group(0), span=m.span())
    m = _IN_YEAR.search(q)
    if m:
        y = _year_of(m)
        return TimeWindow(
            since=day_start(date(y, 1, 1)),
            until=day_end(date(y, 12, 31)),
            phrase=m.group(0),
            calendar=True,
            span=m.span(),
        )
    m = _SINCE_YEAR.search(q)
    if m:
        return TimeWindow(since=day_start(date(_year_of(m), 1, 1)), phrase=m.group(0), calendar=True, span=m.span())
    m = _BEFORE_YEAR.search(q)
    if m:
        y = _year_of(m)
        until = day_end(date(y - 1, 12, 31)) if y > date.min.year else MIN_TIME  # nothing is before year 1
        return TimeWindow(until=until, phrase=m.group(0), calendar=True, span=m.span())
    return TimeWindow()


def strip_phrase(question: str, window: TimeWindow) -> str:
    """The question without the time phrase that became ``window`` (and a preposition right
    before it), for the text side of retrieval once the time is a filter."""
    if window.span is None:
        return question
    s, e = window.span
    head = question[:s]
    m = _ends_with(_LEAD_PREP, head)
    if m:
        head = head[: m.start()]
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
    ("%Y-%m-%dT%H:%M:%S%z", None),
    ("%Y-%m-%dT%H:%M:%S", None),
    ("%Y-%m-%dT%H:%M", None),
    ("%Y-%m-%d", "day"),
    ("%Y-%m", "month"),
    ("%Y", "year"),
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
