"""Parsing the time formats found in EHR sources into aware datetimes with a precision.

Sources without a UTC offset are read as UTC (see ``ragehr.types.record``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from ragehr.types import TimePrecision

UTC = timezone.utc

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

    Returns ``None`` for text that is not a valid timestamp (vendors do write garbage)."""
    m = _HL7_TS.match(value.strip())
    if not m:
        return None
    g = m.groupdict()
    try:
        dt = datetime(
            int(g["y"]),
            int(g["mo"] or 1),
            int(g["d"] or 1),
            int(g["h"] or 0),
            int(g["mi"] or 0),
            int(g["s"] or 0),
            int((g["frac"] or "0").ljust(6, "0")),
            tzinfo=_tz(g["tz"]),
        )
    except ValueError:
        return None
    return dt, _precision(g)


_ISO = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


def parse_iso(value: str) -> tuple[datetime, TimePrecision] | None:
    """A FHIR ``date``/``dateTime``/``instant`` (ISO 8601 with partial dates allowed)."""
    m = _ISO.match(value.strip())
    if not m:
        return None
    g = m.groupdict()
    tz = g["tz"].replace(":", "") if g["tz"] else None
    try:
        dt = datetime(
            int(g["y"]),
            int(g["mo"] or 1),
            int(g["d"] or 1),
            int(g["h"] or 0),
            int(g["mi"] or 0),
            int(g["s"] or 0),
            int((g["frac"] or "0")[:6].ljust(6, "0")),
            tzinfo=_tz(tz),
        )
    except ValueError:
        return None
    return dt, _precision(g)


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
    try:
        if m:
            g = m.groupdict()
            d = date(int(g["y"]), int(g["mo"]), int(g["d"]))
            if g["h"] is None:
                return datetime.combine(d, time(), UTC), TimePrecision.DAY
            t = time(_hour(int(g["h"]), g["ampm"]), int(g["mi"]), int(g["s"] or 0))
            prec = TimePrecision.SECOND if g["s"] else TimePrecision.MINUTE
            return datetime.combine(d, t, UTC), prec
        m = _CLOCK.match(text)
        if m and day is not None:
            g = m.groupdict()
            t = time(_hour(int(g["h"]), g["ampm"]), int(g["mi"]), int(g["s"] or 0))
            prec = TimePrecision.SECOND if g["s"] else TimePrecision.MINUTE
            return datetime.combine(day, t, UTC), prec
    except ValueError:
        return None
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
