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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
    """Other ids that select this patient with ``--patients`` (a FHIR resource id)."""
    data: Any = None
    """Format-specific positions, read by the format's loader."""

    @property
    def source_path(self) -> str:
        return f"{self.folder}{SLICE_MARK}{self.patient_id}"

    def load(self) -> PatientRecord:
        """Read and parse this patient. Raises :class:`ragehr.errors.InputError`."""
        if self.format == "fhir-bulk":
            from ragehr.ehr.bulk import load_slice
        else:
            from ragehr.ehr.omop import load_slice
        return load_slice(self)


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


def detect_cohort(path: str | Path) -> Cohort | None:
    """A cohort reader for a folder that holds a bulk export or OMOP tables, else ``None``."""
    p = Path(path)
    if not p.is_dir():
        return None
    from ragehr.ehr import bulk, omop

    if omop.is_omop_folder(p):
        return omop.OmopCohort(p)
    if bulk.is_bulk_export(p):
        return bulk.BulkExport(p)
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


def select(slices: Iterable[PatientSlice], patients: Iterable[str] | None) -> list[PatientSlice]:
    """The slices whose id or alias is in ``patients`` (all when ``None``)."""
    if patients is None:
        return list(slices)
    wanted = set(patients)
    return [s for s in slices if s.patient_id in wanted or wanted.intersection(s.aliases)]


__all__ = ["SLICE_MARK", "Cohort", "CohortScan", "PatientSlice", "detect_cohort", "inside_any", "select", "split_cohorts"]
