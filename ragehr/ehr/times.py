"""Parsing the time formats found in EHR sources into aware datetimes with a precision.

Sources without a UTC offset are read as UTC (see ``ragehr.types.record``).

An invalid or out-of-range time (a FHIR leap second ``2016-12-31T23:59:60Z``, an impossible
``2020-02-30``) is kept at the precision that is valid (``2016-12-31 23:59``, ``2020-02``), or
left undated when not even its year is, and a warning is recorded
(:func:`collect_time_warnings`; ``ragehr inspect`` shows them). It is never replaced by another
field of the source.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from ragehr.types import TimePrecision

log = logging.getLogger(__name__)

MAX_WARNINGS = 200


class TimeWarnings(list):
    """The warnings about invalid times of one parse (the first :data:`MAX_WARNINGS`);
    ``dropped`` counts the rest."""

    dropped: int = 0

    def summary(self) -> tuple[str, ...]:
        more = (f"... and {self.dropped} more invalid time(s)",) if self.dropped else ()
        return tuple(self) + more


_warnings: ContextVar[TimeWarnings | None] = ContextVar("ragehr_time_warnings", default=None)


@contextlib.contextmanager
def collect_time_warnings() -> Iterator[TimeWarnings]:
    """Collect the warnings about invalid times raised while parsing inside this block."""
    bucket = TimeWarnings()
    token = _warnings.set(bucket)
    try:
        yield bucket
    finally:
        _warnings.reset(token)


def warn_time(message: str) -> None:
    """Record a warning about a time (and log it at DEBUG only: it holds a date of the record)."""
    log.debug("%s", message)
    bucket = _warnings.get()
    if bucket is None:
        return
    if len(bucket) < MAX_WARNINGS:
        bucket.append(message)
    else:
        bucket.dropped += 1


def _shown(raw: str) -> str:
    raw = raw.strip()
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def _salvage(
    raw: str, parts: list[int | None], tz: timezone | None, given: TimePrecision
) -> tuple[datetime, TimePrecision] | None:
    """The most precise valid prefix of a time given as [year, month, day, hour, minute,
    second, microsecond] (``None`` for what the source did not give) and ``given`` precision;
    a warning when that is less than what was given. ``tz`` ``None``: an invalid offset, so
    the time of day is not trusted (the date as written is kept)."""
    y, mo, d, h, mi, sec, us = (list(parts) + [None] * 7)[:7]
    levels: list[tuple[TimePrecision, tuple[Any, ...], timezone]] = []
    if tz is not None and None not in (y, mo, d, h, mi):
        if sec is not None:
            levels.append((TimePrecision.SECOND, (y, mo, d, h, mi, sec, us or 0), tz))
        levels.append((TimePrecision.MINUTE, (y, mo, d, h, mi), tz))
    if None not in (y, mo, d):
        levels.append((TimePrecision.DAY, (y, mo, d), tz or UTC))
    if None not in (y, mo):
        levels.append((TimePrecision.MONTH, (y, mo, 1), tz or UTC))
    if y is not None:
        levels.append((TimePrecision.YEAR, (y, 1, 1), tz or UTC))
    order = list(TimePrecision)
    for prec, fields, zone in levels:
        if order.index(prec) > order.index(given):
            continue
        try:
            dt = datetime(*fields, tzinfo=zone)  # type: ignore[misc]
        except (ValueError, OverflowError, TypeError):
            continue
        if prec is not given:
            warn_time(f"time {_shown(raw)} is not valid; kept as {format_time(dt, prec)} ({prec.value} precision)")
        return dt, prec
    warn_time(f"time {_shown(raw)} is not a valid date; not used")
    return None


def _int(x: str | None) -> int | None:
    return int(x) if x else None


def _frac(x: str | None) -> int | None:
    return int(x[:6].ljust(6, "0")) if x else None


_HL7_TS = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,6}))?(?P<tz>[+-]\d{4}|Z)?$"
)


def _tz(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[3:5])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset {text!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _precision(g: dict[str, str | None]) -> TimePrecision:
    """How much of a time was given, from the regex groups y/mo/d/h/mi/s."""
    if g["s"]:
        return TimePrecision.SECOND
    if g["h"]:
        return TimePrecision.MINUTE
    if g["d"]:
        return TimePrecision.DAY
    return TimePrecision.MONTH if g["mo"] else TimePrecision.YEAR


def parse_hl7_ts(value: str) -> tuple[datetime, TimePrecision] | None:
    """An HL7 v3 TS (``YYYY``, ``YYYYMM``, ``YYYYMMDD``, ``YYYYMMDDHHMM[SS][.fff][+/-ZZZZ]``).

    Returns ``None`` for text that is not a timestamp (vendors do write garbage); an invalid
    one (``20200230``) is kept at its valid precision with a warning (see the module)."""
    m = _HL7_TS.match(value.strip())
    if not m:  # not a TS at all (an odd number of digits, a code): no part of it is trusted
        if value.strip():
            warn_time(f"time {_shown(value)} is not a valid date; not used")
        return None
    g = m.groupdict()
    try:
        tz: timezone | None = _tz(g["tz"])
    except ValueError:
        tz = None
    parts = [_int(g["y"]), _int(g["mo"]), _int(g["d"]), _int(g["h"]), _int(g["mi"]), _int(g["s"]), _frac(g["frac"])]
    if g["h"] and not g["mi"]:
        parts[4] = 0
    return _salvage(value, parts, tz, _precision(g))


_ISO = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


def parse_iso(value: str) -> tuple[datetime, TimePrecision] | None:
    """A FHIR ``date``/``dateTime``/``instant`` (ISO 8601 with partial dates allowed). One of
    that form but invalid (a leap second, ``2020-02-30``, a bad offset) is kept at the precision
    that is valid, with a warning; text not of that form is ``None``, with a warning."""
    text = value.strip()
    m = _ISO.match(text)
    if not m:  # not ISO 8601 at all: no part of it is trusted
        if text:
            warn_time(f"time {_shown(value)} is not a valid date; not used")
        return None
    g = m.groupdict()
    try:
        tz: timezone | None = _tz(g["tz"].replace(":", "")) if g["tz"] else UTC
    except ValueError:
        tz = None
    parts = [_int(g["y"]), _int(g["mo"]), _int(g["d"]), _int(g["h"]), _int(g["mi"]), _int(g["s"]), _frac(g["frac"])]
    return _salvage(value, parts, tz, _precision(g))


_MDY = re.compile(
    r"^(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})"
    r"(?:\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?\s*(?P<ampm>[AaPp][Mm])?)?$"
)
_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?\s*(?P<ampm>[AaPp][Mm])?$")


def _hour(h: int, ampm: str | None) -> int:
    if ampm is None:
        if not 0 <= h <= 23:
            raise ValueError("hour out of range")
        return h
    if not 1 <= h <= 12:
        raise ValueError("12-hour clock out of range")
    pm = ampm.lower() == "pm"
    return (h % 12) + (12 if pm else 0)


def parse_medalign_time(value: str, day: date | None = None) -> tuple[datetime, TimePrecision] | None:
    """MedAlign's mixed formats: ``10/08/2018 20:00``, ``10/08/2018 08:05 PM``, ``10/08/2018``,
    and a bare clock time (``9:00 PM``) that takes its date from ``day``."""
    text = " ".join(value.split())
    m = _MDY.match(text)
    if m:
        g = m.groupdict()
        if g["h"] is None:
            return _salvage(value, [int(g["y"]), int(g["mo"]), int(g["d"])], UTC, TimePrecision.DAY)
        try:
            hour = _hour(int(g["h"]), g["ampm"])
        except ValueError:
            return _salvage(value, [int(g["y"]), int(g["mo"]), int(g["d"])], None, TimePrecision.MINUTE)
        prec = TimePrecision.SECOND if g["s"] else TimePrecision.MINUTE
        parts = [int(g["y"]), int(g["mo"]), int(g["d"]), hour, int(g["mi"]), _int(g["s"])]
        return _salvage(value, parts, UTC, prec)
    m = _CLOCK.match(text)
    if m and day is not None:
        g = m.groupdict()
        try:
            t = time(_hour(int(g["h"]), g["ampm"]), int(g["mi"]), int(g["s"] or 0))
        except ValueError:
            warn_time(f"time {_shown(value)} is not a valid time of day; the day's date is used")
            return datetime.combine(day, time(), UTC), TimePrecision.DAY
        prec = TimePrecision.SECOND if g["s"] else TimePrecision.MINUTE
        return datetime.combine(day, t, UTC), prec
    if text:
        warn_time(f"time {_shown(value)} is not a valid date; not used")
    return None


def format_time(dt: datetime | None, precision: TimePrecision = TimePrecision.MINUTE) -> str:
    """The canonical display of a time, to the precision the source gave, in the time's own
    offset (so the date is the source's calendar date)."""
    if dt is None:
        return "undated"
    if precision is TimePrecision.YEAR:
        return f"{dt.year:04d}"
    if precision is TimePrecision.MONTH:
        return f"{dt.year:04d}-{dt.month:02d}"
    if precision is TimePrecision.DAY:
        return dt.strftime("%Y-%m-%d")
    if precision is TimePrecision.SECOND:
        return dt.strftime("%Y-%m-%d %H:%M:%S")
    return dt.strftime("%Y-%m-%d %H:%M")
