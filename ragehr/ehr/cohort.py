"""Cohort sources: folders that hold many patients at once, read one patient at a time.

Two kinds are recognised by content, never by folder name:

- a FHIR Bulk Data ``$export`` result (NDJSON files whose resources reference several patients,
  with or without the export's manifest JSON): :mod:`ragehr.ehr.bulk`;
- OMOP CDM v5.4 tables (a ``person`` table as CSV or Parquet beside the event tables):
  :mod:`ragehr.ehr.omop`.

A cohort is read in two passes. :meth:`Cohort.scan` streams through every file once and keeps,
per patient, only where that patient's lines or rows are (byte offsets, row groups) and a
fingerprint of their content; :meth:`PatientSlice.load` then reads one patient back and parses
it into a :class:`PatientRecord`. Memory is bounded by the largest patient plus a few bytes of
position per resource, never by the export. Slices are plain picklable data, so patients can be
loaded in worker processes.

The fingerprint stands in for a file's sha256 in an index manifest: a re-run re-indexes only
the patients whose lines changed.

This module owns the interface and knows no format: a reader module (``ragehr.ehr.bulk``,
``ragehr.ehr.omop``) imports this one and provides a :class:`CohortReader` as its module-level
``READER``; :data:`READER_MODULES` names those modules, which are imported by name on first use
(never at import time), so there is no import circle between the interface and its readers.

Patient identity: a slice's ``patient_id`` is the source's own key for the person (the FHIR
Patient resource id, the OMOP ``person_id``), never a label such as an MR number; labels are
``aliases`` that :func:`select` accepts only when exactly one patient carries them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ragehr.ehr.times import collect_time_warnings
from ragehr.types import PatientRecord

SLICE_MARK = "#patient="
"""A slice's source path is ``<folder>#patient=<id>``: not a file, so never confused with one."""


@dataclass
class PatientSlice:
    """One patient of a cohort: where its data is and a fingerprint of it."""

    patient_id: str
    format: str
    """``fhir-bulk`` or ``omop``."""
    folder: str
    fingerprint: str
    """sha256 hex of the patient's lines or rows (and where they are)."""
    size: int
    """Bytes (NDJSON) or rows (OMOP) of the patient's data."""
    n_items: int
    """Resources (FHIR) or rows (OMOP)."""
    aliases: tuple[str, ...] = ()
    """Other ids that select this patient with ``--patients`` when no other patient has them
    (a FHIR Patient's MR identifier)."""
    data: Any = None
    """Format-specific positions, read by the format's loader."""

    @property
    def source_path(self) -> str:
        return f"{self.folder}{SLICE_MARK}{self.patient_id}"

    def load(self) -> PatientRecord:
        """Read and parse this patient. Raises :class:`ragehr.errors.InputError`. Times that
        are invalid as written are listed in the record's ``warnings`` (as for a record file)."""
        with collect_time_warnings() as warned:
            rec = reader(self.format).load_slice(self)
        if warned:
            rec = rec.model_copy(update={"warnings": rec.warnings + warned.summary()})
        return rec


@dataclass
class CohortScan:
    """What a first pass over a cohort found."""

    slices: list[PatientSlice]
    problems: list[str] = field(default_factory=list)
    """Files or lines that could not be used (each one line, no patient text); never fatal."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counts (resources or rows read, files, unlinked resources by type, ...)."""


class Cohort(Protocol):
    folder: Path
    format: str

    def n_files(self) -> int:
        """How many files :meth:`scan` reads (for progress)."""
        ...

    def scan(self, on_file: Callable[[str], None] | None = None) -> CohortScan: ...


class CohortReader(Protocol):
    """What a cohort format provides: recognise a folder, open it, read one patient back."""

    format: str
    """The :attr:`PatientSlice.format` its slices carry (``fhir-bulk``, ``omop``)."""

    def detect(self, folder: Path) -> bool:
        """Whether ``folder`` (an existing directory) holds this format."""
        ...

    def open(self, folder: Path) -> Cohort: ...

    def load_slice(self, sl: PatientSlice) -> PatientRecord:
        """Second pass: one patient's record. Raises :class:`ragehr.errors.InputError`."""
        ...


READER_MODULES: tuple[str, ...] = ("ragehr.ehr.omop", "ragehr.ehr.bulk")
"""Modules that provide a :class:`CohortReader` as ``READER``, in detection order (a folder with
a ``person`` table is OMOP even when it also holds NDJSON)."""


@lru_cache(maxsize=1)
def readers() -> tuple[CohortReader, ...]:
    """The cohort readers, imported by name on first use."""
    return tuple(importlib.import_module(name).READER for name in READER_MODULES)


def reader(fmt: str) -> CohortReader:
    for r in readers():
        if r.format == fmt:
            return r
    raise ValueError(f"no cohort reader for format {fmt!r}")


def detect_cohort(path: str | Path) -> Cohort | None:
    """A cohort reader for a folder that holds a bulk export or OMOP tables, else ``None``."""
    p = Path(path)
    if not p.is_dir():
        return None
    for r in readers():
        if r.detect(p):
            return r.open(p)
    return None


def split_cohorts(paths: Iterable[str | Path]) -> tuple[list[Cohort], list[Path]]:
    """Cohort folders among ``paths`` (also found inside a given folder) and the other paths.
    Files under a cohort folder are not record files of their own: callers skip them with
    :func:`inside_any`."""
    cohorts: list[Cohort] = []
    rest: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        c = detect_cohort(p)
        if c is not None:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                cohorts.append(c)
            continue
        rest.append(p)
        if p.is_dir():
            for sub in sorted(d for d in p.rglob("*") if d.is_dir()):
                if any(part.startswith(".") for part in sub.relative_to(p).parts):
                    continue
                if any(sub.resolve().is_relative_to(s) for s in seen):
                    continue
                c = detect_cohort(sub)
                if c is not None:
                    seen.add(sub.resolve())
                    cohorts.append(c)
    return cohorts, rest


def inside_any(f: Path, cohorts: Iterable[Cohort]) -> bool:
    r = f.resolve()
    return any(r.is_relative_to(c.folder.resolve()) for c in cohorts)


def alias_map(slices: Iterable[PatientSlice]) -> dict[str, str]:
    """alias -> patient id, for the aliases that name exactly one patient and are no patient's
    own id (an MR number equal to another patient's resource id selects that other patient)."""
    slices = list(slices)
    ids = {s.patient_id for s in slices}
    owners: dict[str, set[str]] = {}
    for s in slices:
        for a in s.aliases:
            owners.setdefault(a, set()).add(s.patient_id)
    return {a: next(iter(o)) for a, o in owners.items() if len(o) == 1 and a not in ids}


def ambiguous_aliases(slices: Iterable[PatientSlice], patients: Iterable[str]) -> dict[str, list[str]]:
    """The ``patients`` that are no patient's id but an alias of several: alias -> their ids."""
    slices = list(slices)
    ids = {s.patient_id for s in slices}
    out: dict[str, list[str]] = {}
    for p in patients:
        if p in ids:
            continue
        owners = sorted(s.patient_id for s in slices if p in s.aliases)
        if len(owners) > 1:
            out[p] = owners
    return out


def select(slices: Iterable[PatientSlice], patients: Iterable[str] | None) -> list[PatientSlice]:
    """The slices whose id is in ``patients``, or one of whose aliases is and names no other
    patient (all slices when ``None``)."""
    slices = list(slices)
    if patients is None:
        return slices
    wanted = set(patients)
    aliases = alias_map(slices)
    chosen = set(wanted) | {aliases[p] for p in wanted if p in aliases}
    return [s for s in slices if s.patient_id in chosen]


__all__ = [
    "READER_MODULES",
    "SLICE_MARK",
    "Cohort",
    "CohortReader",
    "CohortScan",
    "PatientSlice",
    "alias_map",
    "ambiguous_aliases",
    "detect_cohort",
    "inside_any",
    "reader",
    "readers",
    "select",
    "split_cohorts",
]
