"""The patient record: what every parser produces and every later stage consumes.

Times: every datetime is timezone-aware. A time whose source states a UTC offset keeps that
offset (so its wall-clock date is the source's own, and comparisons are by instant); a time
whose source states none (MedAlign XML, many C-CDA dates) is read as UTC. ``precision`` says
how much of the time the source gave, so a C-CDA ``2019`` renders as ``2019``, not as
``2019-01-01 00:00``.

This module does not parse or render anything; see ``ragehr.ehr``.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class EventKind(str, Enum):
    """What an event is. Values are stable strings used in files and on the command line."""

    NOTE = "note"
    CONDITION = "condition"
    LAB = "lab"
    VITAL = "vital"
    MEDICATION = "medication"
    PROCEDURE = "procedure"
    IMMUNIZATION = "immunization"
    ALLERGY = "allergy"
    OBSERVATION = "observation"
    ENCOUNTER = "encounter"
    OTHER = "other"


class Status(str, Enum):
    """Clinical status where the source gives one."""

    ACTIVE = "active"
    RESOLVED = "resolved"
    INACTIVE = "inactive"
    COMPLETED = "completed"
    STOPPED = "stopped"
    NEGATED = "negated"
    """The source says the thing did not happen or is absent (negationInd, 'not-done', 'refuted')."""


class TimePrecision(str, Enum):
    """How much of a time the source stated."""

    YEAR = "year"
    MONTH = "month"
    DAY = "day"
    MINUTE = "minute"
    SECOND = "second"


_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SourceLocator(BaseModel):
    """Where a fact came from: a file and a position inside it."""

    model_config = _FROZEN

    file: str
    """The record file as it was given to the parser (a path, or a name)."""
    path: str
    """An element path (``/record/visit[1]/day[1]/measurement[3]/code[10]``) for XML, or a JSON
    pointer (``/entry/12/resource``; ``line:7`` for NDJSON) for FHIR."""

    def __str__(self) -> str:
        return f"{self.file}#{self.path}"


class Event(BaseModel):
    """One dated fact of a record: a note, a lab result, a prescription, a diagnosis, ..."""

    model_config = _FROZEN

    kind: EventKind
    start: datetime | None = None
    """When it happened or began; ``None`` when the source gives no usable time."""
    end: datetime | None = None
    """When it ended, where the source says (a resolved problem, a stopped medication)."""
    precision: TimePrecision = TimePrecision.MINUTE
    """How much of ``start`` the source stated."""
    system: str | None = None
    """Coding system, by its common name: ``LOINC``, ``SNOMED``, ``ICD10CM``, ``RxNorm``, ..."""
    code: str | None = None
    text: str = ""
    """Display text; for notes, the whole note body."""
    value: float | int | str | None = None
    """A result's value: a number when the source gives one, else its text (``positive``)."""
    unit: str | None = None
    status: Status | None = None
    visit_id: str | None = None
    """The visit or encounter this event belongs to, where the source links them."""
    note_type: str | None = None
    """For notes: the note's type (``emergency department note``, a LOINC document type)."""
    title: str | None = None
    """For notes: a title or section name."""
    source: SourceLocator

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("event times must be timezone-aware (see ragehr.types.record)")
        return v

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise ValueError("numeric values must be finite")
        return v

    def content_key(self) -> tuple[Any, ...]:
        """What the event says, without where it came from: equal for exact duplicates
        found in two files."""
        return (
            self.kind.value,
            self.start.isoformat() if self.start else None,
            self.end.isoformat() if self.end else None,
            self.precision.value,
            self.system,
            self.code,
            self.text,
            repr(self.value),
            self.unit,
            self.status.value if self.status else None,
            self.visit_id,
            self.note_type,
            self.title,
        )

    @property
    def event_id(self) -> str:
        """A stable id: a hash of the content and its source locator (16 hex digits). The
        locator counts by the file's *name* and the position inside it, not the folder the
        file sits in: the same records give the same ids, chunk ids and therefore the same
        tie-breaks and figures wherever they are stored (an evaluation re-run from another
        checkout got another accuracy when the folder was hashed)."""
        name = self.source.file.replace("\\", "/").rsplit("/", 1)[-1]
        where = f"{name}#{self.source.path}"
        h = hashlib.sha256(repr((self.content_key(), where)).encode("utf-8"))
        return h.hexdigest()[:16]


class Demographics(BaseModel):
    """What the record says about the person. Every field is optional."""

    model_config = _FROZEN

    name: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    race: str | None = None
    ethnicity: str | None = None
    deceased: datetime | None = None


def event_sort_key(e: Event) -> tuple[int, float]:
    """Undated events first, then by instant. Python's sort is stable, so events at the same
    instant keep their order in the source."""
    return (0, 0.0) if e.start is None else (1, e.start.timestamp())


class PatientRecord(BaseModel):
    """A patient's record: who, and a time-ordered tuple of events."""

    model_config = _FROZEN

    patient_id: str = Field(min_length=1)
    format: str
    """The source format: ``medalign-xml``, ``ccda``, ``fhir``, or ``merged``."""
    demographics: Demographics = Demographics()
    events: tuple[Event, ...] = ()
    sources: tuple[str, ...] = ()
    """The files the record was read from."""
    warnings: tuple[str, ...] = ()
    """What the parser could not read as written (an invalid time kept at its valid
    precision, ...): shown by ``ragehr inspect``; never note text."""

    @model_validator(mode="after")
    def _time_ordered(self) -> PatientRecord:
        keys = [event_sort_key(e) for e in self.events]
        if any(a > b for a, b in zip(keys, keys[1:])):
            object.__setattr__(self, "events", tuple(sorted(self.events, key=event_sort_key)))
        return self

    @property
    def first_time(self) -> datetime | None:
        return next((e.start for e in self.events if e.start is not None), None)

    @property
    def last_time(self) -> datetime | None:
        return max((e.end or e.start for e in self.events if e.start is not None), default=None)

    def counts(self) -> dict[str, int]:
        """Events per kind, in the order of ``EventKind``; kinds with none are left out."""
        out: dict[str, int] = {}
        for kind in EventKind:
            n = sum(1 for e in self.events if e.kind is kind)
            if n:
                out[kind.value] = n
        return out


class RecordSummary(BaseModel):
    """What ``ragehr inspect --json`` prints: ids and numbers, never note text."""

    model_config = _FROZEN

    patient_id: str
    format: str
    sources: tuple[str, ...]
    n_events: int
    n_visits: int
    counts: dict[str, int]
    """Events per kind."""
    first_time: str | None
    last_time: str | None
    n_tokens_estimate: int
    """Length of the record's canonical rendering, in tokens, by ``tokenizer``."""
    tokenizer: str
    warnings: tuple[str, ...] = ()
    """See :attr:`PatientRecord.warnings`."""
