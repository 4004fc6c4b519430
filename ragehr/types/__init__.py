"""Typed, immutable records exchanged between ragehr's layers (pydantic models only)."""

from ragehr.types.record import (
    Demographics,
    Event,
    EventKind,
    PatientRecord,
    RecordSummary,
    SourceLocator,
    Status,
    TimePrecision,
)

__all__ = [
    "Demographics",
    "Event",
    "EventKind",
    "PatientRecord",
    "RecordSummary",
    "SourceLocator",
    "Status",
    "TimePrecision",
]
