"""MedAlign XML (``<record><visit><day>...``): parsing into a :class:`PatientRecord`, and
writing any record back out in the same shape.

MedAlign's release renders OMOP tables as XML: a ``visit`` holds ``day`` elements that hold
one element per OMOP row (``measurement``, ``drug_exposure``, ``note``, ...), each with one or
more ``<code>[VOCAB/CODE] description value unit</code>`` lines. The record carries no patient
id: as in the release, it is the file name's stem without an ``EHR_`` prefix.

Each visit also becomes an ``encounter`` event with no code whose text is the visit's type, so
that the visit survives a round trip through :func:`write_medalign_xml`.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from ragehr.ehr.source import local_name
from ragehr.ehr.times import parse_medalign_time
from ragehr.errors import InputError
from ragehr.types import (
    Demographics,
    Event,
    EventKind,
    PatientRecord,
    SourceLocator,
    Status,
    TimePrecision,
)

log = logging.getLogger(__name__)

# OMOP table (element) -> kind. ``measurement`` is refined into lab or vital by its code.
TAG_KIND: dict[str, EventKind] = {
    "note": EventKind.NOTE,
    "condition_occurrence": EventKind.CONDITION,
    "measurement": EventKind.LAB,
    "observation": EventKind.OBSERVATION,
    "drug_exposure": EventKind.MEDICATION,
    "procedure_occurrence": EventKind.PROCEDURE,
    "visit_detail": EventKind.ENCOUNTER,
    "visit_occurrence": EventKind.ENCOUNTER,
    "device_exposure": EventKind.OTHER,
    "specimen": EventKind.LAB,
    "immunization": EventKind.IMMUNIZATION,
    "allergy": EventKind.ALLERGY,
}
# Writing: kind -> element. Kinds with no OMOP table of their own carry a ``kind`` attribute.
KIND_TAG: dict[EventKind, str] = {
    EventKind.NOTE: "note",
    EventKind.CONDITION: "condition_occurrence",
    EventKind.LAB: "measurement",
    EventKind.VITAL: "measurement",
    EventKind.OBSERVATION: "observation",
    EventKind.MEDICATION: "drug_exposure",
    EventKind.IMMUNIZATION: "drug_exposure",
    EventKind.PROCEDURE: "procedure_occurrence",
    EventKind.ENCOUNTER: "visit_detail",
    EventKind.ALLERGY: "observation",
    EventKind.OTHER: "observation",
}
_VALUED_TAGS = {"measurement", "observation", "specimen"}

VITAL_LOINC = frozenset(
    {
        "8480-6",
        "8462-4",
        "8478-0",
        "8310-5",
        "8331-1",
        "8867-4",
        "9279-1",
        "29463-7",
        "3141-9",
        "8302-2",
        "8306-3",
        "39156-5",
        "8277-6",
        "59408-5",
        "2708-6",
        "LP21258-6",
        "8287-5",
        "9843-4",
        "85354-9",
        "55284-4",
        "8481-4",
        "8459-0",
        "20564-1",
    }
)
_VITAL_WORDS = re.compile(
    r"\b(blood pressure|heart rate|pulse|respiratory rate|body temperature|temperature|"
    r"body weight|body height|weight|height|body mass index|bmi|oxygen saturation|spo2|"
    r"body surface area|head circumference)\b",
    re.IGNORECASE,
)

_CODE_LINE = re.compile(r"^\[(?P<system>[^/\]]+)/(?P<code>[^\]]*)\]\s*(?P<rest>.*)$", re.DOTALL)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_VALUE_UNIT = re.compile(rf"^(?P<text>.*\S)\s+(?P<value>{_NUMBER})(?:\s+(?P<unit>\S.*))?$")
_MAX_UNIT = 24


def parse_code_line(line: str, *, valued: bool) -> tuple[str | None, str | None, str, float | int | None, str | None]:
    """Split ``[VOCAB/CODE] description value unit`` into (system, code, text, value, unit).

    Only measurement-like rows (``valued``) carry values: ``alteplase 1 MG/ML Injectable
    Solution`` is a drug's name, not a value."""
    text = " ".join(line.split())
    system = code = None
    m = _CODE_LINE.match(text)
    if m:
        system, code, text = m["system"].strip() or None, m["code"].strip() or None, m["rest"].strip()
    value: float | int | None = None
    unit: str | None = None
    if valued:
        vm = _VALUE_UNIT.match(text)
        if vm:
            u = vm["unit"]
            if u is None or _plausible_unit(u):
                text, value, unit = vm["text"], to_number(vm["value"]), u
    return system, code, text, value, unit


def _plausible_unit(u: str) -> bool:
    """``mm Hg``, ``%``, ``10*3/uL``, ``sq meters``: short, and not another number."""
    return (
        len(u) <= _MAX_UNIT
        and len(u.split()) <= 3
        and any(ch.isalpha() or ch == "%" for ch in u)
        and not re.fullmatch(_NUMBER, u)
    )


def to_number(s: str) -> float | int:
    """``"38"`` -> 38, ``"98.2"`` -> 98.2: numbers stay numbers, integers stay integers."""
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    return float(s)


def _kind(tag: str, system: str | None, code: str | None, text: str, attr_kind: str | None) -> EventKind:
    if attr_kind:
        try:
            return EventKind(attr_kind)
        except ValueError:
            pass
    kind = TAG_KIND.get(tag, EventKind.OTHER)
    if tag in ("measurement", "observation"):
        if (system or "").upper() == "LOINC" and code in VITAL_LOINC:
            return EventKind.VITAL
        if code is None and _VITAL_WORDS.search(text):
            return EventKind.VITAL
        if (system or "").upper() != "LOINC" and _VITAL_WORDS.search(text):
            return EventKind.VITAL
    return kind


def _note_text(raw: str) -> str:
    return "\n".join(" ".join(line.split()) for line in raw.strip().splitlines() if line.strip())


def _demographics(text: str) -> Demographics:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
    birth = None
    if fields.get("birth"):
        parsed = parse_medalign_time(fields["birth"])
        birth = parsed[0].date() if parsed else None
    gender = fields.get("gender")
    return Demographics(
        birth_date=birth,
        gender=gender.lower() if gender else None,
        race=fields.get("race") or None,
        ethnicity=fields.get("ethnicity") or None,
    )


def patient_id_from_path(path: Path) -> str:
    """``EHR_123.xml`` and ``123.xml`` are both patient ``123``, as in MedAlign's release."""
    stem = path.stem
    return stem[4:] if stem.startswith("EHR_") and len(stem) > 4 else stem


def _children(el: etree._Element) -> list[tuple[etree._Element, str]]:
    """Element children with their path step (``measurement[3]``, or ``note`` if unique)."""
    kids = [c for c in el if isinstance(c.tag, str)]
    totals: dict[str, int] = {}
    for c in kids:
        totals[local_name(c)] = totals.get(local_name(c), 0) + 1
    seen: dict[str, int] = {}
    out = []
    for c in kids:
        name = local_name(c)
        seen[name] = seen.get(name, 0) + 1
        out.append((c, f"{name}[{seen[name]}]" if totals[name] > 1 else name))
    return out


def _time(value: str | None, day: date | None, fallback: tuple[datetime, TimePrecision] | None):
    if value:
        parsed = parse_medalign_time(value, day)
        if parsed:
            return parsed
    return fallback


def parse_medalign(root: etree._Element, *, path: Path) -> PatientRecord:
    """Parse a MedAlign ``<record>`` element read from ``path``."""
    file = str(path)
    events: list[Event] = []
    demographics: Demographics | None = None
    visits = [(v, step) for v, step in _children(root) if local_name(v) == "visit"]
    if not visits:
        raise InputError(path, "MedAlign record has no <visit> elements")
    for vi, (visit, vstep) in enumerate(visits, start=1):
        vpath = f"/record/{vstep}"
        visit_id = f"visit-{vi}"
        vtime = _time(visit.get("start"), None, None)
        vtype = (visit.get("type") or "").strip()
        events.append(
            Event(
                kind=EventKind.ENCOUNTER,
                start=vtime[0] if vtime else None,
                precision=vtime[1] if vtime else TimePrecision.MINUTE,
                text=vtype if vtype and vtype != "NULL" else "Visit",
                visit_id=visit_id,
                source=SourceLocator(file=file, path=vpath),
            )
        )
        for day, dstep in _children(visit):
            if local_name(day) != "day":
                log.debug("skipping <%s> in %s", local_name(day), vpath)
                continue
            dpath = f"{vpath}/{dstep}"
            dtime = _time(day.get("start"), None, vtime)
            the_day = dtime[0].date() if dtime else None
            for el, estep in _children(day):
                tag = local_name(el)
                epath = f"{dpath}/{estep}"
                if tag == "person":
                    if demographics is None:
                        demographics = _demographics(el.text or "")
                    continue
                etime = _time(el.get("start"), the_day, dtime)
                start, precision = etime if etime else (None, TimePrecision.MINUTE)
                end_parsed = _time(el.get("end"), the_day, None)
                end = end_parsed[0] if end_parsed else None
                attr_kind = el.get("kind")
                if tag == "note":
                    note_type = (el.get("type") or "").strip()
                    body = _note_text("".join(el.itertext()))
                    if not body:
                        continue
                    events.append(
                        Event(
                            kind=EventKind.NOTE,
                            start=start,
                            end=end,
                            precision=precision,
                            text=body,
                            note_type=None if note_type in ("", "NULL") else note_type,
                            title=el.get("title") or None,
                            visit_id=visit_id,
                            source=SourceLocator(file=file, path=epath),
                        )
                    )
                    continue
                codes = [(c, s) for c, s in _children(el) if local_name(c) == "code"]
                lines = [(c.text or "", f"{epath}/{s}") for c, s in codes]
                if not lines and (el.text or "").strip():
                    lines = [(el.text or "", epath)]
                status = _status(el.get("status"))
                for line, lpath in lines:
                    system, code, text, value, unit = parse_code_line(line, valued=tag in _VALUED_TAGS)
                    if not (text or code):
                        continue
                    events.append(
                        Event(
                            kind=_kind(tag, system, code, text, attr_kind),
                            start=start,
                            end=end,
                            precision=precision,
                            system=system,
                            code=code,
                            text=text,
                            value=value,
                            unit=unit,
                            status=status,
                            visit_id=visit_id,
                            source=SourceLocator(file=file, path=lpath),
                        )
                    )
    return PatientRecord(
        patient_id=patient_id_from_path(path),
        format="medalign-xml",
        demographics=demographics or Demographics(),
        events=tuple(events),
        sources=(file,),
    )


def _status(value: str | None) -> Status | None:
    if not value:
        return None
    try:
        return Status(value)
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------
# Writing


def _fmt(dt: datetime | None, precision: TimePrecision) -> str | None:
    if dt is None:
        return None
    if precision in (TimePrecision.YEAR, TimePrecision.MONTH, TimePrecision.DAY):
        return dt.strftime("%m/%d/%Y")
    if precision is TimePrecision.SECOND:
        return dt.strftime("%m/%d/%Y %H:%M:%S")
    return dt.strftime("%m/%d/%Y %H:%M")


def _code_line(e: Event) -> str:
    parts = []
    if e.system or e.code:
        parts.append(f"[{e.system or 'UNKNOWN'}/{e.code or ''}]")
    parts.append(e.text)
    if e.value is not None:
        parts.append(repr(e.value) if isinstance(e.value, float) else str(e.value))
    if e.unit:
        parts.append(e.unit)
    return " ".join(p for p in parts if p)


def write_medalign_xml(record: PatientRecord) -> str:
    """Render any record as MedAlign-style XML (so C-CDA and FHIR records can feed tools that
    read MedAlign's format). MedAlign XML read back through :func:`parse_medalign` gives an
    equal record, up to source locators. Times are written in each event's own offset; the
    format has no place for an offset or a precision finer than the day's."""
    by_visit: dict[str | None, list[Event]] = {}
    for e in record.events:
        by_visit.setdefault(e.visit_id, []).append(e)

    def visit_order(item: tuple[str | None, list[Event]]) -> tuple[int, float]:
        dated = [e.start.timestamp() for e in item[1] if e.start is not None]
        return (1, min(dated)) if dated else (0, 0.0)

    out = ["<record>"]
    d = record.demographics
    person = ["<person>"]
    if d.birth_date:
        person.append(f"Birth: {d.birth_date.month}/{d.birth_date.day}/{d.birth_date.year}")
    for label, val in (
        ("Race", d.race),
        ("Gender", d.gender.upper() if d.gender else None),
        ("Ethnicity", d.ethnicity),
    ):
        if val:
            person.append(f"{label}: {escape(val)}")
    person.append("</person>")
    first_day = True
    for _visit_id, events in sorted(by_visit.items(), key=visit_order):
        header = next(
            (e for e in events if e.kind is EventKind.ENCOUNTER and e.code is None and e.system is None),
            None,
        )
        vtype = header.text if header else "Visit"
        vstart = header.start if header else next((e.start for e in events if e.start), None)
        vprec = header.precision if header else TimePrecision.MINUTE
        attrs = f" type={quoteattr(vtype)}"
        if vstart is not None:
            attrs += f" start={quoteattr(_fmt(vstart, vprec) or '')}"
        out.append(f"  <visit{attrs}>")
        days: dict[date | None, list[Event]] = {}
        for e in events:
            if e is header:
                continue
            days.setdefault(e.start.date() if e.start else None, []).append(e)
        if not days and first_day:
            days[vstart.date() if vstart else None] = []
        for _day, devents in days.items():
            dstart = next((e for e in devents if e.start), None)
            dattr = f" start={quoteattr(_fmt(dstart.start, dstart.precision) or '')}" if dstart and dstart.start else ""
            out.append(f"    <day{dattr}>")
            if first_day:
                out.extend("      " + p for p in person)
                first_day = False
            for e in devents:
                out.append("      " + _event_xml(e))
            out.append("    </day>")
        out.append("  </visit>")
    out.append("</record>")
    return "\n".join(out) + "\n"


def _event_xml(e: Event) -> str:
    tag = KIND_TAG[e.kind]
    attrs = ""
    if e.kind is EventKind.NOTE:
        attrs += f" type={quoteattr(e.note_type or 'NULL')}"
        if e.title:
            attrs += f" title={quoteattr(e.title)}"
    if e.start is not None:
        attrs += f" start={quoteattr(_fmt(e.start, e.precision) or '')}"
    if e.end is not None:
        attrs += f" end={quoteattr(_fmt(e.end, e.precision) or '')}"
    if e.status is not None:
        attrs += f" status={quoteattr(e.status.value)}"
    if TAG_KIND.get(tag) is not e.kind and not (tag == "measurement" and e.kind is EventKind.VITAL):
        attrs += f" kind={quoteattr(e.kind.value)}"
    if e.kind is EventKind.NOTE:
        return f"<{tag}{attrs}>{escape(e.text)}</{tag}>"
    return f"<{tag}{attrs}><code>{escape(_code_line(e))}</code></{tag}>"
