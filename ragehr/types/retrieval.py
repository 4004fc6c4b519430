"""Records of the retrieval half: chunks of a record, and ranked hits."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from ragehr.types.record import EventKind

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Chunk(BaseModel):
    """A retrievable piece of a record: part of a note, or a day's events of one kind.

    ``text`` is the canonical rendering (:mod:`ragehr.ehr.render`) and always states the
    date, so a chunk read alone still says when."""

    model_config = _FROZEN

    chunk_id: str
    """Stable for the same input and chunking config: a hash of the content and config."""
    patient_id: str
    kind: EventKind
    start: datetime | None
    end: datetime | None
    text: str
    n_tokens: int
    """Length of ``text`` by the chunker's token counter."""
    event_ids: tuple[str, ...]
    """The events whose content this chunk holds (for gold-evidence recall)."""
    sources: tuple[str, ...]
    """Source locators (``file#path``) of those events."""
    visit_id: str | None = None
    note_type: str | None = None
    title: str | None = None
    ordinal: int = 0
    """Position of this piece within its note or (day, kind) group."""
    concept: str | None = None
    """Set on per-concept time-series chunks (:func:`ragehr.chunking.chunk_series`): the
    concept's key (``LOINC 2345-7`` or the normalised name). ``event_ids`` and ``sources``
    then run parallel to the table's rows."""


class ScoredId(BaseModel):
    """One retriever's score for one chunk."""

    model_config = _FROZEN

    chunk_id: str
    score: float


class Hit(BaseModel):
    """A fused, ranked result. ``components`` keeps each retriever's own score."""

    model_config = _FROZEN

    chunk_id: str
    rank: int
    """1-based."""
    score: float
    components: dict[str, float]
    """Retriever name -> that retriever's raw score (absent when it did not return the chunk)."""
