"""A short, text-free summary of a record: what ``ragehr inspect`` shows."""

from __future__ import annotations

from ragehr.ehr.render import render_record
from ragehr.tokens import EstimateCounter
from ragehr.types import PatientRecord
from ragehr.types.record import RecordSummary


def summarize(record: PatientRecord) -> RecordSummary:
    """Counts and extent of a record. Holds ids and numbers only, never note text."""
    first, last = record.first_time, record.last_time
    counter = EstimateCounter()
    return RecordSummary(
        patient_id=record.patient_id,
        format=record.format,
        sources=record.sources,
        n_events=len(record.events),
        n_visits=len({e.visit_id for e in record.events if e.visit_id is not None}),
        counts=record.counts(),
        first_time=first.isoformat() if first else None,
        last_time=last.isoformat() if last else None,
        n_tokens_estimate=counter.count(render_record(record)),
        tokenizer=counter.name,
        warnings=record.warnings,
    )
