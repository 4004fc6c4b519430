"""Writing a record out: MedAlign-style XML, or JSON lines of events."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragehr.ehr.medalign import write_medalign_xml
from ragehr.ehr.render import render_event
from ragehr.errors import ConfigError
from ragehr.fsutil import output_problem
from ragehr.types import Event, PatientRecord

TARGETS = ("medalign-xml", "jsonl")


def check_output(source: str | Path, output: str | Path, *, force: bool = False) -> None:
    """Refuse (:class:`ConfigError`) an output that is the input record itself (by path,
    symlink or hard link), a folder or special file, or an existing file without ``force``."""
    out = Path(output)
    problem = output_problem(out, [(source, "the input record")], "-o")
    if problem is not None:
        raise ConfigError(problem)
    if os.path.lexists(out) and not force:
        raise ConfigError(f"{out}: exists; ragehr does not overwrite it without --force")


def event_to_json(e: Event, patient_id: str) -> dict[str, object]:
    """One event as a flat JSON object (the ``jsonl`` export)."""
    return {
        "patient_id": patient_id,
        "event_id": e.event_id,
        "kind": e.kind.value,
        "time": e.start.isoformat() if e.start else None,
        "end": e.end.isoformat() if e.end else None,
        "precision": e.precision.value,
        "system": e.system,
        "code": e.code,
        "text": e.text,
        "value": e.value,
        "unit": e.unit,
        "status": e.status.value if e.status else None,
        "visit_id": e.visit_id,
        "note_type": e.note_type,
        "title": e.title,
        "source": str(e.source),
        "rendered": render_event(e),
    }


def to_jsonl(record: PatientRecord) -> str:
    return "".join(json.dumps(event_to_json(e, record.patient_id), ensure_ascii=False) + "\n" for e in record.events)


def convert(record: PatientRecord, target: str) -> str:
    if target == "medalign-xml":
        return write_medalign_xml(record)
    if target == "jsonl":
        return to_jsonl(record)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
