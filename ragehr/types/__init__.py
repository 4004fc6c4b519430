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
from ragehr.types.retrieval import Chunk, Hit, ScoredId

__all__ = [
    "Chunk",
    "Hit",
    "ScoredId",
    "Demographics",
    "Event",
    "EventKind",
    "PatientRecord",
    "RecordSummary",
    "SourceLocator",
    "Status",
    "TimePrecision",
]
