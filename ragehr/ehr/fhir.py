"""FHIR R4 resources -> one :class:`PatientRecord`.

What it does:

- Takes the resources :func:`ragehr.ehr.load_record` found in a Bundle, a single-resource JSON
  file or an NDJSON file, as ``(locator, resource)`` pairs (locator: ``/entry/{i}/resource``,
  ``""`` or ``line:{n}``), and turns each clinical resource into one or more :class:`Event`
  whose ``source`` names the file and that locator.
- Patient, Condition, Observation (``component[]`` panels split into one event per component,
  locator suffixed ``/component/{j}``), MedicationRequest / MedicationStatement /
  MedicationAdministration / MedicationDispense (``medicationReference`` resolved against the
  Medication resources of the same file, or ``contained``), Procedure, Immunization,
  AllergyIntolerance, Encounter (whose id is the ``visit_id`` of every resource referencing it),
  DiagnosticReport (a note when it carries a text ``presentedForm``, else one summary event; the
  Observations it references are events of their own and are not repeated), DocumentReference
  (base64 text attachments decoded into notes; HTML reduced to text).
- Notes with the same text and the same start (to the second) are kept once, the
  DocumentReference's in preference to a DiagnosticReport's (Synthea writes every note twice).
- Billing (Claim, ExplanationOfBenefit, Coverage) becomes ``other`` events only with
  ``include_billing=True``.

Decisions:

- ``entered-in-error`` resources and ``cancelled`` Observations are skipped (they state no
  fact; a NEGATED lab would read as a negative result). Condition ``verificationStatus``
  ``refuted``/``entered-in-error``, and ``not-done`` / ``not-taken`` / ``cancelled`` elsewhere,
  give :attr:`Status.NEGATED`.
- A DocumentReference note starts at ``context.period.start`` (the time of the care it
  documents, which is also the DiagnosticReport's ``effectiveDateTime``), else at ``date``.
- Numbers stay as JSON gave them: ``74`` is an int, ``155.4`` a float; a quantity with a
  ``comparator`` becomes text (``<5``).

What it does not do: it never fetches an attachment ``url`` (no network), does not validate
against FHIR profiles, resolves no references beyond Encounter and Medication, and turns
CarePlan, CareTeam, Goal, Device, SupplyDelivery, ImagingStudy and any unknown resource type
into nothing (counted and logged at DEBUG). Malformed resources are skipped with a DEBUG log
naming their locator; note text is never logged.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ragehr.ehr.codes import system_name
from ragehr.ehr.times import parse_iso
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

Resource = dict[str, Any]
Time = tuple[datetime, TimePrecision]

SYNTHEA_ID_SYSTEM = "https://github.com/synthetichealth/synthea"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
NULL_FLAVOR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"

BILLING_TYPES = frozenset({"Claim", "ExplanationOfBenefit", "Coverage"})
"""Skipped unless ``include_billing=True``."""

IGNORED_TYPES = frozenset(
    {
        "Provenance",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Medication",
        "Device",
        "SupplyDelivery",
        "CareTeam",
        "CarePlan",
        "Goal",
        "ImagingStudy",
        "Endpoint",
        "HealthcareService",
        "RelatedPerson",
        "Group",
        "AuditEvent",
        "Composition",
        "Binary",
        "Basic",
        "OperationOutcome",
    }
)
"""Known resource types that yield no events (``Medication`` is only a lookup target)."""

_ENCOUNTER_CLASS = {
    "AMB": "ambulatory",
    "EMER": "emergency",
    "IMP": "inpatient",
    "ACUTE": "inpatient acute",
    "NONAC": "inpatient non-acute",
    "OBSENC": "observation",
    "PRENC": "pre-admission",
    "SS": "short stay",
    "VR": "virtual",
    "HH": "home health",
    "FLD": "field",
}


_MALFORMED = (ValidationError, KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError)
"""What a malformed resource can raise in a handler; it is skipped, never fatal."""


class SkipResource(Exception):
    """A resource that is malformed or states nothing usable; skipped with a DEBUG log."""


# --------------------------------------------------------------------------- JSON access


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list[Any]:
    """A FHIR repeating element; a lone object where a list belongs is accepted as one item."""
    if isinstance(x, list):
        return x
    if isinstance(x, dict):
        return [x]
    return []


def _dicts(x: Any) -> list[dict[str, Any]]:
    return [i for i in _list(x) if isinstance(i, dict)]


def _str(x: Any) -> str | None:
    if isinstance(x, str):
        s = x.strip()
        return s or None
    return None


def _time(x: Any) -> Time | None:
    s = _str(x)
    return parse_iso(s) if s else None


def _first_time(*values: Any) -> Time | None:
    """The time of the first of ``values`` that is given. An invalid one is kept at its valid
    precision (or dropped) with a warning (:mod:`ragehr.ehr.times`), never replaced by a later
    field: a resource's ``issued`` can be years from its ``effectiveDateTime``."""
    for v in values:
        if _str(v):
            return _time(v)
    return None


def _ref_id(ref: Any) -> str | None:
    """The id a Reference points at: ``urn:uuid:X``, ``Type/X``, ``http://.../Type/X/_history/2``."""
    s = _str(_dict(ref).get("reference")) if isinstance(ref, dict) else _str(ref)
    if not s or s.startswith("#") or "?" in s:
        return None
    if s.startswith("urn:uuid:") or s.startswith("urn:oid:"):
        return s.split(":", 2)[2] or None
    parts = [p for p in s.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if parts else None


def _codings(cc: Any) -> list[dict[str, Any]]:
    return [c for c in _dicts(_dict(cc).get("coding")) if _str(c.get("code")) or _str(c.get("display"))]


@dataclass(frozen=True)
class Concept:
    """A CodeableConcept reduced to one coding and a display text."""

    system: str | None = None
    code: str | None = None
    text: str = ""


def _concept(cc: Any, prefer: tuple[str, ...] = ()) -> Concept:
    """The coding of the first preferred system (by short name), else the first coding; text is
    ``CodeableConcept.text``, else that coding's display, else any display."""
    codings = _codings(cc)
    chosen = None
    for name in prefer:
        chosen = next((c for c in codings if system_name(_str(c.get("system"))) == name), None)
        if chosen:
            break
    if chosen is None and codings:
        chosen = codings[0]
    text = _str(_dict(cc).get("text"))
    if not text and chosen is not None:
        text = _str(chosen.get("display"))
    if not text:
        text = next((d for d in (_str(c.get("display")) for c in codings) if d), None)
    if chosen is None:
        return Concept(text=text or "")
    return Concept(system_name(_str(chosen.get("system"))), _str(chosen.get("code")), text or "")


def _status_code(cc: Any) -> str | None:
    """The code of a status CodeableConcept (``clinicalStatus``), or a plain code string."""
    if isinstance(cc, str):
        return _str(cc)
    for c in _codings(cc):
        code = _str(c.get("code"))
        if code:
            return code.lower()
    return _str(_dict(cc).get("text"))


def _display_of(cc: Any) -> str | None:
    c = _concept(cc)
    return c.text or c.code


# --------------------------------------------------------------------------- values


def _number(x: Any) -> int | float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt_num(x: int | float) -> str:
    return str(x)


def _quantity_text(q: dict[str, Any]) -> str | None:
    n = _number(q.get("value"))
    if n is None:
        return None
    unit = _str(q.get("unit")) or _str(q.get("code"))
    return f"{_str(q.get('comparator')) or ''}{_fmt_num(n)}{' ' + unit if unit else ''}"


def _value(obj: dict[str, Any]) -> tuple[float | int | str | None, str | None, bool]:
    """An Observation's (or component's) ``value[x]`` as (value, unit, present)."""
    if "valueQuantity" in obj:
        q = _dict(obj["valueQuantity"])
        unit = _str(q.get("unit")) or _str(q.get("code"))
        n = _number(q.get("value"))
        comparator = _str(q.get("comparator"))
        if n is not None and comparator:
            return f"{comparator}{_fmt_num(n)}", unit, True
        return n, unit, True
    if "valueCodeableConcept" in obj:
        return _display_of(obj["valueCodeableConcept"]), None, True
    if "valueString" in obj:
        return _str(obj["valueString"]), None, True
    if "valueBoolean" in obj:
        b = obj["valueBoolean"]
        return ("true" if b else "false") if isinstance(b, bool) else None, None, True
    if "valueInteger" in obj:
        return _number(obj["valueInteger"]), None, True
    for key in ("valueDateTime", "valueTime", "valueInstant"):
        if key in obj:
            return _str(obj[key]), None, True
    if "valuePeriod" in obj:
        p = _dict(obj["valuePeriod"])
        start, end = _str(p.get("start")), _str(p.get("end"))
        return (f"{start or '?'} to {end or '?'}" if start or end else None), None, True
    if "valueRange" in obj:
        r = _dict(obj["valueRange"])
        low, high = _quantity_text(_dict(r.get("low"))), _quantity_text(_dict(r.get("high")))
        return (f"{low or '?'} - {high or '?'}" if low or high else None), None, True
    if "valueRatio" in obj:
        r = _dict(obj["valueRatio"])
        num, den = _quantity_text(_dict(r.get("numerator"))), _quantity_text(_dict(r.get("denominator")))
        return (f"{num or '?'} / {den or '?'}" if num or den else None), None, True
    return None, None, False


# --------------------------------------------------------------------------- attachments


class _HtmlText(HTMLParser):
    _BLOCK = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, block elements on lines of their own."""
    p = _HtmlText()
    try:
        p.feed(markup)
        p.close()
    except Exception:  # HTMLParser is lenient; be safe anyway
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    text = "".join(p.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _attachment_text(att: dict[str, Any]) -> str | None:
    """The decoded text of an Attachment with inline base64 ``data`` and a text content type
    (or none stated, if the bytes are clean UTF-8). ``url`` attachments are never fetched."""
    data = att.get("data")
    if not isinstance(data, str) or not data.strip():
        return None
    ctype_full = _str(att.get("contentType")) or ""
    media, _, params = ctype_full.partition(";")
    media = media.strip().lower()
    if media and not media.startswith("text/"):
        return None
    try:
        raw = base64.b64decode("".join(data.split()), validate=False)
    except (binascii.Error, ValueError):
        return None
    charset = "utf-8"
    m = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
    if m:
        try:
            charset = codecs.lookup(m.group(1)).name
        except LookupError:
            charset = "utf-8"
    if not media:
        if b"\x00" in raw:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = raw.decode(charset, errors="replace")
    if media in ("text/html", "application/xhtml+xml") or (not media and text.lstrip().startswith("<")):
        text = html_to_text(text)
    text = text.strip()
    return text or None


def _first_text_attachment(atts: Iterable[dict[str, Any]]) -> str | None:
    """``text/plain`` first, then any other ``text/*``."""
    atts = list(atts)

    def media(a: dict[str, Any]) -> str:
        return (_str(a.get("contentType")) or "").partition(";")[0].strip().lower()

    for a in sorted(atts, key=lambda a: 0 if media(a) == "text/plain" else 1):
        text = _attachment_text(a)
        if text:
            return text
    return None


# --------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    """What the handlers share while one file is parsed: the Medication lookup and the events."""

    path: Path
    medications: dict[str, Resource]
    events: list[Event] = field(default_factory=list)
    note_origin: dict[int, str] = field(default_factory=dict)
    """index in ``events`` -> resourceType, for notes (used to de-duplicate)."""

    def source(self, locator: str) -> SourceLocator:
        return SourceLocator(file=str(self.path), path=locator)

    def add(self, locator: str, origin: str | None = None, **fields: Any) -> None:
        t: Time | None = fields.pop("time", None)
        if t is not None:
            fields["start"], fields["precision"] = t
        ev = Event(source=self.source(locator), **fields)
        if origin is not None:
            self.note_origin[len(self.events)] = origin
        self.events.append(ev)

    def truncate(self, n: int) -> None:
        """Forget events from index ``n`` on (a resource that failed half-way)."""
        del self.events[n:]
        for i in [i for i in self.note_origin if i >= n]:
            del self.note_origin[i]


def _visit_id(res: Resource) -> str | None:
    """The referenced Encounter's id: ``encounter`` (R4), ``context`` (STU3 and
    MedicationAdministration), or DocumentReference ``context.encounter[0]``."""
    for key in ("encounter", "context"):
        ref = res.get(key)
        if isinstance(ref, dict) and "reference" in ref:
            return _ref_id(ref)
    ctx = res.get("context")
    if isinstance(ctx, dict):
        for ref in _dicts(ctx.get("encounter")):
            rid = _ref_id(ref)
            if rid:
                return rid
    return None


def _end(*values: Any) -> datetime | None:
    t = _first_time(*values)
    return t[0] if t else None


def _period(p: Any) -> tuple[Any, Any]:
    d = _dict(p)
    return d.get("start"), d.get("end")


def _entered_in_error(res: Resource) -> None:
    if _str(res.get("status")) == "entered-in-error":
        raise SkipResource("status entered-in-error")


# --------------------------------------------------------------------------- handlers

_CONDITION_STATUS = {
    "active": Status.ACTIVE,
    "recurrence": Status.ACTIVE,
    "relapse": Status.ACTIVE,
    "inactive": Status.INACTIVE,
    "remission": Status.INACTIVE,
    "resolved": Status.RESOLVED,
}


def _condition(ctx: _Ctx, loc: str, res: Resource) -> None:
    c = _concept(res.get("code"), prefer=("SNOMED",))
    if not (c.code or c.text):
        raise SkipResource("Condition without code")
    onset_start, _ = _period(res.get("onsetPeriod"))
    abate_start, abate_end = _period(res.get("abatementPeriod"))
    verification = _status_code(res.get("verificationStatus"))
    if verification in ("refuted", "entered-in-error"):
        status: Status | None = Status.NEGATED
    else:
        status = _CONDITION_STATUS.get(_status_code(res.get("clinicalStatus")) or "")
    ctx.add(
        loc,
        kind=EventKind.CONDITION,
        time=_first_time(res.get("onsetDateTime"), onset_start, res.get("recordedDate")),
        end=_end(res.get("abatementDateTime"), abate_end, abate_start),
        system=c.system,
        code=c.code,
        text=c.text or c.code or "",
        status=status,
        visit_id=_visit_id(res),
    )


def _category_codes(res: Resource) -> set[str]:
    out: set[str] = set()
    for cat in _list(res.get("category")):
        if isinstance(cat, str):
            out.add(cat.lower())
        for c in _codings(cat):
            code = _str(c.get("code"))
            if code:
                out.add(code.lower())
    return out


def _observation_kind(res: Resource) -> EventKind:
    cats = _category_codes(res)
    if "laboratory" in cats or "lab" in cats:
        return EventKind.LAB
    if "vital-signs" in cats or "vital-sign" in cats:
        return EventKind.VITAL
    return EventKind.OBSERVATION


def _observation(ctx: _Ctx, loc: str, res: Resource) -> None:
    if _str(res.get("status")) in ("cancelled", "entered-in-error"):
        raise SkipResource(f"Observation status {res.get('status')}")
    kind = _observation_kind(res)
    p_start, p_end = _period(res.get("effectivePeriod"))
    when = _first_time(res.get("effectiveDateTime"), p_start, res.get("effectiveInstant"), res.get("issued"))
    end = _end(p_end)
    visit = _visit_id(res)
    c = _concept(res.get("code"), prefer=("LOINC",))
    components: list[tuple[int, Concept, Any, str | None]] = []
    for j, comp in enumerate(_list(res.get("component"))):
        if not isinstance(comp, dict):
            continue
        cc = _concept(comp.get("code"), prefer=("LOINC",))
        cvalue, cunit, _ = _value(comp)
        if cc.code or cc.text or cvalue is not None:
            components.append((j, cc, cvalue, cunit))
    value, unit, has_value = _value(res)
    if has_value or not components:
        if not (c.code or c.text) and value is None:
            raise SkipResource("Observation without code or value")
        ctx.add(
            loc,
            kind=kind,
            time=when,
            end=end,
            system=c.system,
            code=c.code,
            text=c.text or c.code or "",
            value=value,
            unit=unit,
            visit_id=visit,
        )
    for j, cc, cvalue, cunit in components:
        ctx.add(
            f"{loc}/component/{j}",
            kind=kind,
            time=when,
            end=end,
            system=cc.system,
            code=cc.code,
            text=cc.text or cc.code or "",
            value=cvalue,
            unit=cunit,
            visit_id=visit,
        )


_MED_STATUS = {
    "active": Status.ACTIVE,
    "in-progress": Status.ACTIVE,
    "on-hold": Status.ACTIVE,
    "intended": Status.ACTIVE,
    "completed": Status.COMPLETED,
    "stopped": Status.STOPPED,
    "cancelled": Status.NEGATED,
    "not-taken": Status.NEGATED,
    "not-done": Status.NEGATED,
    "declined": Status.NEGATED,
}


def _medication_concept(ctx: _Ctx, res: Resource) -> Concept:
    if "medicationCodeableConcept" in res:
        return _concept(res["medicationCodeableConcept"], prefer=("RxNorm",))
    ref = _dict(res.get("medicationReference"))
    target: Resource | None = None
    r = _str(ref.get("reference"))
    if r and r.startswith("#"):
        target = next(
            (c for c in _dicts(res.get("contained")) if c.get("resourceType") == "Medication" and c.get("id") == r[1:]),
            None,
        )
    else:
        rid = _ref_id(ref)
        target = ctx.medications.get(rid) if rid else None
    if target is not None:
        c = _concept(target.get("code"), prefer=("RxNorm",))
        if c.code or c.text:
            return c
    return Concept(text=_str(ref.get("display")) or "")


def _dosage_text(res: Resource) -> str | None:
    dosages = _dicts(res.get("dosageInstruction")) or _dicts(res.get("dosage"))
    if not dosages:
        return None
    d = dosages[0]
    parts = [t for t in (_str(d.get("text")),) if t]
    if d.get("asNeededBoolean") is True:
        parts.append("as needed")
    return "; ".join(parts) or None


def _medication(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    c = _medication_concept(ctx, res)
    if not (c.code or c.text):
        raise SkipResource("medication without code or name")
    p_start, p_end = _period(res.get("effectivePeriod"))
    validity_end = _period(_dict(res.get("dispenseRequest")).get("validityPeriod"))[1]
    when = _first_time(
        res.get("authoredOn"),
        res.get("effectiveDateTime"),
        p_start,
        res.get("whenHandedOver"),
        res.get("whenPrepared"),
        res.get("dateAsserted"),
    )
    text = c.text or c.code or ""
    dosage = _dosage_text(res)
    if dosage:
        text = f"{text} (dosage: {dosage})"
    ctx.add(
        loc,
        kind=EventKind.MEDICATION,
        time=when,
        end=_end(p_end, validity_end),
        system=c.system,
        code=c.code,
        text=text,
        status=_MED_STATUS.get(_str(res.get("status")) or ""),
        visit_id=_visit_id(res),
    )


_PROCEDURE_STATUS = {
    "completed": Status.COMPLETED,
    "in-progress": Status.ACTIVE,
    "preparation": Status.ACTIVE,
    "on-hold": Status.ACTIVE,
    "stopped": Status.STOPPED,
    "not-done": Status.NEGATED,
}


def _procedure(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    c = _concept(res.get("code"), prefer=("SNOMED", "CPT"))
    if not (c.code or c.text):
        raise SkipResource("Procedure without code")
    p_start, p_end = _period(res.get("performedPeriod"))
    ctx.add(
        loc,
        kind=EventKind.PROCEDURE,
        time=_first_time(res.get("performedDateTime"), p_start),
        end=_end(p_end),
        system=c.system,
        code=c.code,
        text=c.text or c.code or "",
        status=_PROCEDURE_STATUS.get(_str(res.get("status")) or ""),
        visit_id=_visit_id(res),
    )


def _immunization(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    c = _concept(res.get("vaccineCode"), prefer=("CVX",))
    if not (c.code or c.text):
        raise SkipResource("Immunization without vaccineCode")
    status = {"completed": Status.COMPLETED, "not-done": Status.NEGATED}.get(_str(res.get("status")) or "")
    ctx.add(
        loc,
        kind=EventKind.IMMUNIZATION,
        time=_first_time(res.get("occurrenceDateTime"), res.get("date"), res.get("recorded")),
        system=c.system,
        code=c.code,
        text=c.text or c.code or "",
        status=status,
        visit_id=_visit_id(res),
    )


def _allergy(ctx: _Ctx, loc: str, res: Resource) -> None:
    c = _concept(res.get("code") or res.get("substance"), prefer=("SNOMED", "RxNorm"))
    if not (c.code or c.text):
        raise SkipResource("AllergyIntolerance without code")
    verification = _status_code(res.get("verificationStatus"))
    if verification == "entered-in-error":
        raise SkipResource("verificationStatus entered-in-error")
    if verification == "refuted":
        status: Status | None = Status.NEGATED
    else:
        status = {"active": Status.ACTIVE, "inactive": Status.INACTIVE, "resolved": Status.RESOLVED}.get(
            _status_code(res.get("clinicalStatus")) or ""
        )
    reactions: list[str] = []
    for reaction in _dicts(res.get("reaction")):
        for m in _list(reaction.get("manifestation")):
            d = _display_of(m)
            if d and d not in reactions:
                reactions.append(d)
    text = c.text or c.code or ""
    if reactions:
        text = f"{text} (reaction: {', '.join(reactions)})"
    o_start, _ = _period(res.get("onsetPeriod"))
    ctx.add(
        loc,
        kind=EventKind.ALLERGY,
        time=_first_time(res.get("onsetDateTime"), o_start, res.get("recordedDate"), res.get("assertedDate")),
        system=c.system,
        code=c.code,
        text=text,
        status=status,
        visit_id=_visit_id(res),
    )


_ENCOUNTER_STATUS = {
    "finished": Status.COMPLETED,
    "in-progress": Status.ACTIVE,
    "arrived": Status.ACTIVE,
    "triaged": Status.ACTIVE,
    "onleave": Status.ACTIVE,
    "cancelled": Status.NEGATED,
}


def _encounter(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    types = _list(res.get("type"))
    c = _concept(types[0], prefer=("SNOMED", "CPT")) if types else Concept()
    klass = _dict(res.get("class"))  # R4: a Coding
    class_code = _str(klass.get("code"))
    class_text = _ENCOUNTER_CLASS.get(class_code or "") or _str(klass.get("display")) or class_code
    reasons = [d for d in (_display_of(r) for r in _list(res.get("reasonCode"))) if d]
    details = [x for x in (class_text, f"reason: {'; '.join(reasons)}" if reasons else None) if x]
    text = c.text or c.code or (f"{class_text} encounter" if class_text else "encounter")
    if details:
        text = f"{text} ({'; '.join(details)})"
    start, end = _period(res.get("period"))
    rid = _str(res.get("id"))
    ctx.add(
        loc,
        kind=EventKind.ENCOUNTER,
        time=_time(start),
        end=_end(end),
        system=c.system,
        code=c.code,
        text=text,
        status=_ENCOUNTER_STATUS.get(_str(res.get("status")) or ""),
        visit_id=rid,
    )


def _diagnostic_report(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    c = _concept(res.get("code"), prefer=("LOINC",))
    p_start, p_end = _period(res.get("effectivePeriod"))
    when = _first_time(res.get("effectiveDateTime"), p_start, res.get("issued"))
    visit = _visit_id(res)
    note = _first_text_attachment(_dicts(res.get("presentedForm")))
    if note:
        ctx.add(
            loc,
            origin="DiagnosticReport",
            kind=EventKind.NOTE,
            time=when,
            system=c.system,
            code=c.code,
            text=note,
            visit_id=visit,
            note_type=c.text or None,
            title=c.text or None,
        )
        return
    # A summary: the referenced Observations are events of their own, so only their names.
    cats = _category_codes(res)
    kind = EventKind.LAB if cats & {"lab", "laboratory"} else EventKind.OTHER
    parts = [c.text or c.code or "diagnostic report"]
    conclusion = _str(res.get("conclusion"))
    codes = [d for d in (_display_of(x) for x in _list(res.get("conclusionCode"))) if d]
    if conclusion or codes:
        parts.append(f"conclusion: {'; '.join([x for x in (conclusion, *codes) if x])}")
    results = [d for d in (_str(_dict(r).get("display")) for r in _list(res.get("result"))) if d]
    if results:
        parts.append(f"results: {'; '.join(results)}")
    ctx.add(
        loc,
        kind=kind,
        time=when,
        end=_end(p_end),
        system=c.system,
        code=c.code,
        text=parts[0] + (f" ({'; '.join(parts[1:])})" if len(parts) > 1 else ""),
        visit_id=visit,
    )


def _document_reference(ctx: _Ctx, loc: str, res: Resource) -> None:
    _entered_in_error(res)
    atts = [_dict(ct.get("attachment")) for ct in _dicts(res.get("content"))]
    note = _first_text_attachment(atts)
    if not note:
        raise SkipResource("DocumentReference without inline text content")
    c = _concept(res.get("type"), prefer=("LOINC",))
    context = _dict(res.get("context"))
    p_start, _ = _period(context.get("period"))
    titles = [_str(a.get("title")) for a in atts]
    title = _str(res.get("description")) or c.text or next((t for t in titles if t), None)
    ctx.add(
        loc,
        origin="DocumentReference",
        kind=EventKind.NOTE,
        time=_first_time(p_start, res.get("date"), res.get("created")),
        system=c.system,
        code=c.code,
        text=note,
        visit_id=_visit_id(res),
        note_type=c.text or None,
        title=title,
    )


def _billing(ctx: _Ctx, loc: str, res: Resource) -> None:
    rtype = str(res.get("resourceType"))
    b_start, b_end = _period(res.get("billablePeriod"))
    p_start, p_end = _period(res.get("period"))
    kind_text = _display_of(res.get("type"))
    items = []
    visit = None
    for item in _dicts(res.get("item")):
        d = _display_of(item.get("productOrService") or item.get("service"))
        if d and d not in items:
            items.append(d)
        if visit is None:
            visit = next((rid for rid in (_ref_id(e) for e in _dicts(item.get("encounter"))) if rid), None)
    parts = [f"{rtype}{': ' + kind_text if kind_text else ''}"]
    if items:
        parts.append(f"items: {'; '.join(items)}")
    total = res.get("total")
    totals = _dicts(total) if isinstance(total, list) else [_dict(total)]
    for t in totals:
        money = _dict(t.get("amount")) if "amount" in t else t
        n = _number(money.get("value"))
        if n is not None:
            parts.append(f"total: {_fmt_num(n)} {_str(money.get('currency')) or ''}".rstrip())
            break
    ctx.add(
        loc,
        kind=EventKind.OTHER,
        time=_first_time(b_start, p_start, res.get("created")),
        end=_end(b_end, p_end),
        text="; ".join(parts),
        visit_id=visit,
    )


Handler = Callable[[_Ctx, str, Resource], None]

HANDLERS: dict[str, Handler] = {
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication,
    "MedicationStatement": _medication,
    "MedicationAdministration": _medication,
    "MedicationDispense": _medication,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "Encounter": _encounter,
    "DiagnosticReport": _diagnostic_report,
    "DocumentReference": _document_reference,
}


# --------------------------------------------------------------------------- patient


def _identifier_id(res: Resource) -> str | None:
    idents = _dicts(res.get("identifier"))
    for ident in idents:
        if any(_str(c.get("code")) == "MR" for c in _codings(ident.get("type"))):
            v = _str(ident.get("value"))
            if v:
                return v
    for ident in idents:
        if _str(ident.get("system")) == SYNTHEA_ID_SYSTEM:
            v = _str(ident.get("value"))
            if v:
                return v
    return _str(res.get("id"))


def _us_core_category(res: Resource, url: str) -> str | None:
    for ext in _dicts(res.get("extension")):
        if ext.get("url") != url:
            continue
        omb: list[str] = []
        text = None
        for sub in _dicts(ext.get("extension")):
            if sub.get("url") == "ombCategory":
                coding = _dict(sub.get("valueCoding"))
                d = _str(coding.get("display"))
                if d and _str(coding.get("system")) != NULL_FLAVOR_SYSTEM:
                    omb.append(d)
            elif sub.get("url") == "text":
                text = _str(sub.get("valueString"))
        return ", ".join(omb) if omb else text
    return None


def _name(res: Resource) -> str | None:
    names = _dicts(res.get("name"))
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if chosen is None:
        return None
    given = [g for g in (_str(x) for x in _list(chosen.get("given"))) if g]
    family = _str(chosen.get("family"))
    full = " ".join([*given, *([family] if family else [])])
    return full or _str(chosen.get("text"))


def _demographics(res: Resource) -> Demographics:
    birth = _time(res.get("birthDate"))
    deceased = _time(res.get("deceasedDateTime"))
    gender = _str(res.get("gender"))
    return Demographics(
        name=_name(res),
        birth_date=birth[0].date() if birth else None,
        gender=gender,
        race=_us_core_category(res, US_CORE_RACE),
        ethnicity=_us_core_category(res, US_CORE_ETHNICITY),
        deceased=deceased[0] if deceased else None,
    )


def _subject_ids(resources: list[tuple[str, Resource]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for _, res in resources:
        for key in ("subject", "patient", "beneficiary"):
            ref = res.get(key)
            s = _str(_dict(ref).get("reference")) if isinstance(ref, dict) else None
            if not s or not (s.startswith("Patient/") or s.startswith("urn:uuid:") or "/Patient/" in s):
                continue
            rid = _ref_id(s)
            if rid:
                out[rid] += 1
            break
    return out


def patient_reference(res: Resource) -> str | None:
    """The id of the Patient a resource belongs to (``subject``, ``patient`` or ``beneficiary``
    as ``Patient/<id>``, ``urn:uuid:<id>`` or an absolute ``.../Patient/<id>`` URL); a Patient's
    own ``id``. ``None`` for reference data (Practitioner, Medication, ...) and conditional
    references (``Patient?identifier=...``), which name no resource."""
    if res.get("resourceType") == "Patient":
        return _str(res.get("id"))
    for key in ("subject", "patient", "beneficiary"):
        ref = res.get(key)
        s = _str(_dict(ref).get("reference")) if isinstance(ref, dict) else None
        if s and (s.startswith("Patient/") or s.startswith("urn:uuid:") or "/Patient/" in s):
            return _ref_id(s)
    return None


def patient_id(res: Resource) -> str | None:
    """The id a Patient resource is indexed under (its MR identifier, else its Synthea id, else
    its resource id): the same id whether the patient comes in a Bundle or a bulk export."""
    return _identifier_id(res)


def medication_reference(res: Resource) -> str | None:
    """The id of a non-contained Medication a medication resource references, if any."""
    ref = res.get("medicationReference")
    s = _str(_dict(ref).get("reference")) if isinstance(ref, dict) else None
    if not s or s.startswith("#"):
        return None
    return _ref_id(s)


# --------------------------------------------------------------------------- notes


def _dedupe_notes(ctx: _Ctx) -> list[Event]:
    """Drop notes whose (text, start to the second) repeats an earlier kept note, taking
    DocumentReference notes first."""
    order = {"DocumentReference": 0}
    idx = sorted(ctx.note_origin, key=lambda i: (order.get(ctx.note_origin[i], 1), i))
    seen: set[tuple[str, float | None]] = set()
    drop: set[int] = set()
    for i in idx:
        e = ctx.events[i]
        start = math.floor(e.start.timestamp()) if e.start else None
        key = (e.text, start)
        if key in seen:
            drop.add(i)
        else:
            seen.add(key)
    if drop:
        log.debug("%s: %d duplicate notes dropped", ctx.path, len(drop))
    return [e for i, e in enumerate(ctx.events) if i not in drop]


# --------------------------------------------------------------------------- entry point


def parse_fhir(
    resources: list[tuple[str, dict[str, Any]]],
    *,
    path: Path,
    include_billing: bool = False,
) -> PatientRecord:
    """One patient's FHIR R4 resources -> a :class:`PatientRecord` (``format="fhir"``).

    Raises :class:`InputError` for a file with no resources, more than one patient, or neither
    a Patient nor any resource that yields an event."""
    path = Path(path)
    resources = [(str(loc), res) for loc, res in resources if isinstance(res, dict)]
    if not resources:
        raise InputError(path, "no FHIR resources found")

    patients = [(loc, res) for loc, res in resources if res.get("resourceType") == "Patient"]
    patient_ids: dict[str, Resource] = {}
    for _, res in patients:
        pid = _identifier_id(res)
        if pid and pid not in patient_ids:
            patient_ids[pid] = res
    if len(patient_ids) > 1:
        raise InputError(path, f"{len(patient_ids)} different Patient resources; expected one patient per file")

    medications: dict[str, Resource] = {}
    for _, res in resources:
        if res.get("resourceType") == "Medication":
            mid = _str(res.get("id"))
            if mid:
                medications[mid] = res

    ctx = _Ctx(path=path, medications=medications)
    skipped: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    malformed = 0
    for loc, res in resources:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            malformed += 1
            log.debug("%s#%s: resourceType is not a string; skipped", path, loc)
            continue
        if rtype == "Patient":
            continue
        handler = HANDLERS.get(rtype)
        if handler is None and rtype in BILLING_TYPES:
            if not include_billing:
                skipped[rtype] += 1
                continue
            handler = _billing
        if handler is None:
            if rtype in IGNORED_TYPES:
                skipped[rtype] += 1
            else:
                unknown[rtype] += 1
                log.debug("%s#%s: unsupported resource type %s; skipped", path, loc, rtype)
            continue
        n_before = len(ctx.events)
        try:
            handler(ctx, loc, res)
        except SkipResource as exc:
            log.debug("%s#%s: %s skipped: %s", path, loc, rtype, exc)
            ctx.truncate(n_before)
            skipped[rtype] += 1
        except _MALFORMED as exc:
            malformed += 1
            log.debug("%s#%s: malformed %s skipped (%s)", path, loc, rtype, type(exc).__name__)
            ctx.truncate(n_before)

    events = _dedupe_notes(ctx)
    if skipped or unknown or malformed:
        log.debug(
            "%s: skipped %s; unsupported types %s; malformed %d",
            path,
            dict(skipped),
            dict(unknown),
            malformed,
        )

    if not patients and not events:
        types = Counter(str(r.get("resourceType")) for _, r in resources)
        kinds = ", ".join(f"{n} {t}" for t, n in types.most_common(5))
        raise InputError(path, f"no Patient and no clinical resources ({kinds})")
    demographics = _demographics(patients[0][1]) if patients else Demographics()
    if patient_ids:
        patient_id = next(iter(patient_ids))
    else:
        subjects = _subject_ids(resources)
        if len(subjects) > 1:
            raise InputError(path, f"no Patient id and resources refer to {len(subjects)} different patients")
        patient_id = next(iter(subjects)) if subjects else (path.stem or "unknown")

    return PatientRecord(
        patient_id=patient_id,
        format="fhir",
        demographics=demographics,
        events=tuple(events),
        sources=(str(path),),
    )


__all__ = [
    "BILLING_TYPES",
    "HANDLERS",
    "IGNORED_TYPES",
    "html_to_text",
    "medication_reference",
    "parse_fhir",
    "patient_id",
    "patient_reference",
]
