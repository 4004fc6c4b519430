"""Typed, immutable records exchanged between ragehr's layers (pydantic models only)."""

from ragehr.types.generation import EvidenceItem, Generation, GenerationRequest, Message
from ragehr.types.index import BuildSummary, IndexManifest, SourceFile
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
    "EvidenceItem",
    "Generation",
    "GenerationRequest",
    "Message",
    "BuildSummary",
    "IndexManifest",
    "SourceFile",
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
