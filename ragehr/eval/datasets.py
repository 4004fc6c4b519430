"""Evaluation datasets: MedAlign-format instructions, generated QA, and generic JSONL.

Each yields :class:`EvalItem` records bound to a patient id and, where known, a gold short
answer with its evidence (generated QA) or a free-text reference (clinician responses).

- **MedAlign format**: instructions as TSV or CSV (``instruction_id``, ``question`` or
  ``instruction``, ``person_id``), a folder of EHR XML files named ``<person_id>.xml`` or
  ``EHR_<person_id>.xml``, and optional clinician responses (``instruction_id``,
  ``clinician_response``). The public sample has no ``person_id`` column: ``pair_with`` names the
  one record every instruction is asked of.
- **Generated**: :func:`ragehr.eval.generated.generate_qa` over each patient's indexed record.
- **JSONL**: one object per line with ``question``, ``patient_id`` and optional ``answer``,
  ``evidence`` (event ids), ``reference``, ``item_id``.

This module reads files and builds items; it does not index, retrieve or score.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragehr.ehr.medalign import patient_id_from_path
from ragehr.errors import ConfigError, InputError
from ragehr.eval.generated import QAItem
from ragehr.fsutil import read_user_bytes


class DatasetSpec(BaseModel):
    """A dataset as the experiment YAML names it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: Literal["medalign", "generated", "jsonl"]
    records: tuple[str, ...] = ()
    """Record files or folders to index (generated, jsonl), relative to ``data_root``; a path
    starting with ``./`` (or absolute) is taken from the working directory instead (the scale
    records ``benchmarks/make_record.py`` writes into ``benchmarks/data/``)."""
    instructions: str | None = None
    """MedAlign instructions TSV/CSV."""
    ehr_dir: str | None = None
    """MedAlign EHR folder (``<person_id>.xml`` or ``EHR_<person_id>.xml``)."""
    responses: str | None = None
    """MedAlign clinician responses (``instruction_id``, ``clinician_response``)."""
    pair_with: str | None = None
    """A record file every instruction is asked of (the public sample has no person_id)."""
    path: str | None = None
    """JSONL file (type jsonl)."""
    per_type: int = Field(3, ge=1)
    """Generated QA: items per question type per patient."""
    qtypes: tuple[str, ...] | None = None
    """Generated QA: which question types (default: ``ragehr.eval.generated.QTYPES``; the
    time-stress types are in ``TIME_QTYPES``)."""

    @field_validator("qtypes")
    @classmethod
    def _known_qtypes(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from ragehr.eval.generated import ALL_QTYPES

        bad = [q for q in v or () if q not in ALL_QTYPES]
        if bad:
            raise ValueError(f"unknown question type(s) {', '.join(bad)}; use any of {', '.join(ALL_QTYPES)}")
        return v

    limit: int | None = Field(None, ge=1)
    """Keep N items, picked round-robin over question types (categories) and patients in a
    seeded order, so a limit keeps every question type (``runner._stratified_sample``)."""


class EvalItem(BaseModel):
    """One question about one patient, with whatever gold the dataset has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    dataset: str
    patient_id: str
    question: str
    qa: QAItem | None = None
    """Gold short answer with gold evidence (generated QA)."""
    reference: str | None = None
    """A free-text reference answer (clinician response)."""
    evidence_event_ids: tuple[str, ...] = ()
    category: str | None = None


def _read_table(path: Path) -> list[dict[str, str]]:
    try:
        text = read_user_bytes(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    dialect = "excel-tab" if path.suffix.lower() in (".tsv", ".tab") or ("\t" in text.split("\n", 1)[0]) else "excel"
    return list(csv.DictReader(text.splitlines(), dialect=dialect))


def medalign_record_path(ehr_dir: Path, person_id: str) -> Path | None:
    for name in (f"{person_id}.xml", f"EHR_{person_id}.xml"):
        if (ehr_dir / name).is_file():
            return ehr_dir / name
    return None


def medalign_items(spec: DatasetSpec, base: Path) -> tuple[list[EvalItem], list[Path], list[str]]:
    """MedAlign instructions paired with their patients' records.

    Returns (items, record files to index, problems). An instruction whose patient has no EHR
    file is left out and named in the problems."""
    if not spec.instructions:
        raise ConfigError(f"dataset {spec.name}: a medalign dataset needs `instructions`")
    rows = _read_table(base / spec.instructions)
    responses: dict[str, str] = {}
    if spec.responses:
        for r in _read_table(base / spec.responses):
            if r.get("instruction_id") and r.get("clinician_response"):
                responses[r["instruction_id"].strip()] = r["clinician_response"].strip()
    pair = base / spec.pair_with if spec.pair_with else None
    if pair is not None and not pair.is_file():
        raise ConfigError(f"dataset {spec.name}: pair_with {pair} is not a file")
    ehr_dir = base / spec.ehr_dir if spec.ehr_dir else None
    items: list[EvalItem] = []
    files: list[Path] = []
    problems: list[str] = []
    path: Path | None
    for r in rows:
        iid = (r.get("instruction_id") or "").strip()
        q = (r.get("question") or r.get("instruction") or "").strip()
        if not iid or not q:
            continue
        if pair is not None:
            path, pid = pair, patient_id_from_path(pair)
        else:
            pid = (r.get("person_id") or "").strip()
            path = medalign_record_path(ehr_dir, pid) if (ehr_dir and pid) else None
            if path is None:
                problems.append(f"instruction {iid}: no EHR file for person_id {pid!r}")
                continue
        if path not in files:
            files.append(path)
        items.append(
            EvalItem(
                item_id=f"{spec.name}:{iid}",
                dataset=spec.name,
                patient_id=pid,
                question=q,
                reference=responses.get(iid),
                category=(r.get("human_assigned_subcategory_1") or None),
            )
        )
    return items, files, problems


def generated_items(spec: DatasetSpec, records: Sequence[Any], seed: int) -> list[EvalItem]:
    """Generated QA over already indexed records (so gold event ids match the index's)."""
    from ragehr.eval.generated import generate_qa

    items = []
    for rec in records:
        for qa in generate_qa(rec, seed=seed, per_type=spec.per_type, qtypes=spec.qtypes):
            items.append(
                EvalItem(
                    item_id=f"{spec.name}:{qa.item_id}",
                    dataset=spec.name,
                    patient_id=rec.patient_id,
                    question=qa.question,
                    qa=qa,
                    evidence_event_ids=qa.evidence_event_ids,
                    category=qa.qtype,
                )
            )
    return items


def jsonl_items(spec: DatasetSpec, base: Path) -> list[EvalItem]:
    if not spec.path:
        raise ConfigError(f"dataset {spec.name}: a jsonl dataset needs `path`")
    p = base / spec.path
    items = []
    try:
        lines = read_user_bytes(p).decode("utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, f"cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            q, pid = str(obj["question"]), str(obj["patient_id"])
        except (ValueError, KeyError, TypeError):
            raise InputError(p, f"line {n}: expected a JSON object with question and patient_id") from None
        iid = str(obj.get("item_id") or hashlib.sha256(f"{pid}\x1f{q}".encode()).hexdigest()[:16])
        qa = None
        if obj.get("answer") is not None:
            qa = QAItem(
                item_id=iid,
                patient_id=pid,
                question=q,
                qtype="jsonl",
                answer=str(obj["answer"]),
                answer_type="text",
                answer_value=str(obj["answer"]),
                unit=None,
                evidence_event_ids=tuple(obj.get("evidence") or ()),
                evidence_dates=(),
                anchor_time=None,
                depth=0.5,
            )
        items.append(
            EvalItem(
                item_id=f"{spec.name}:{iid}",
                dataset=spec.name,
                patient_id=pid,
                question=q,
                qa=qa,
                reference=obj.get("reference"),
                evidence_event_ids=tuple(obj.get("evidence") or ()),
            )
        )
    return items
