"""FHIR Bulk Data (``$export``) folders -> one :class:`PatientRecord` per patient, streamed.

An export is NDJSON, one resource type per file (``Patient.000.ndjson``,
``Condition.000.ndjson``, ...), every patient mixed in every file, often with the export's
manifest JSON (``transactionTime``, ``output[].url``) beside them.

What it does:

- :func:`is_bulk_export` recognises a folder: it holds a manifest, or one of its NDJSON files
  references more than one patient in its first lines.
- :meth:`BulkExport.scan` (first pass) reads each file line by line and records, per patient,
  the byte offset and line number of each of its resources (12 bytes a resource), and a
  fingerprint of those lines. A resource belongs to the patient its ``subject`` / ``patient``
  / ``beneficiary`` reference names (``Patient/<id>``, ``urn:uuid:<id>`` or an absolute URL);
  a Patient to itself. ``Medication`` resources are remembered by id (their position only)
  and given to every patient whose medication resources reference them. Practitioner,
  PractitionerRole, Organization, Location and other resources that name no patient are
  counted and skipped (event texts already carry their names where the source put a
  ``display``).
- :func:`load_slice` (second pass) reads one patient's lines back by offset and parses them
  with :func:`ragehr.ehr.fhir.parse_fhir`, exactly as a per-patient Bundle would be; every
  event's source locator names its NDJSON file and line (``Condition.000.ndjson#line:12``).

The patient id is the Patient resource's id (the id every reference in the export names), never
a label: identifiers are data. Its MR identifier (:func:`ragehr.ehr.fhir.patient_id`), when it
differs, is an alias that also selects it with ``--patients`` as long as no other patient has
that id or alias. Two Patient resources with one MR number stay two patients (an export may
carry both; merging them on a label put one person's notes in another's index), and an MR
number equal to another patient's resource id never reaches that patient.

What it does not do: no gzip'd NDJSON, no ``deleted`` resources (``_since`` exports), no
conditional references (``Patient?identifier=``: counted as unlinked).
"""

from __future__ import annotations

import hashlib
import json
import logging
from array import array
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ragehr.ehr import fhir, source
from ragehr.ehr.cohort import Cohort, CohortScan, PatientSlice
from ragehr.errors import InputError
from ragehr.fsutil import iter_bounded_lines
from ragehr.types import PatientRecord, SourceLocator

log = logging.getLogger(__name__)

SNIFF_LINES = 200
"""Lines read from the start of each NDJSON file to tell an export from per-patient files."""

MAX_PROBLEMS_PER_FILE = 5
MAX_LINE_BYTES = 64 << 20
"""One NDJSON line (one resource): a longer line is skipped and counted, never read whole."""

_MASK = (1 << 128) - 1


def _manifest(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The export's manifest (a JSON object with ``transactionTime`` and ``output``), if any."""
    for p in sorted(folder.glob("*.json")):
        if not p.is_file() or p.stat().st_size > 64 * 1024 * 1024:
            continue
        try:
            with open(p, "rb") as fh:
                if b'"transactionTime"' not in fh.read(65536):
                    continue  # a Bundle or other JSON: not parsed just to be told apart
            obj = json.loads(p.read_bytes())
        except (ValueError, RecursionError, OSError):
            continue
        if isinstance(obj, dict) and "output" in obj and "transactionTime" in obj:
            return p, obj
    return None


def export_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The export's NDJSON files: those its manifest lists (``error`` files left out), else
    every ``*.ndjson`` in the folder, sorted. Returns (files, problems)."""
    problems: list[str] = []
    m = _manifest(folder)
    if m is None:
        return sorted(p for p in folder.glob("*.ndjson") if p.is_file() and not p.name.startswith(".")), problems
    mpath, obj = m
    files = []
    raw_outputs = obj.get("output")
    outputs = raw_outputs if isinstance(raw_outputs, list) else []
    for out in outputs:
        url = out.get("url") if isinstance(out, dict) else None
        if not isinstance(url, str) or not url.strip():
            problems.append(f"{mpath}: an output entry has no url; skipped")
            continue
        name = Path(urlparse(url).path).name
        p = folder / name
        if not name or not p.is_file():
            problems.append(f"{mpath}: lists {name or url!r}, which is not in {folder}")
            continue
        if p not in files:
            files.append(p)
    return files, problems


def _sniff_patients(path: Path) -> set[str]:
    ids: set[str] = set()
    try:
        with open(path, "rb") as fh:
            for i, line in enumerate(fh):
                if i >= SNIFF_LINES or len(ids) > 1:
                    break
                try:
                    res = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(res, dict):
                    pid = fhir.patient_reference(res)
                    if pid:
                        ids.add(pid)
    except OSError:
        return ids
    return ids


def is_bulk_export(folder: str | Path) -> bool:
    """A folder holding a Bulk Data export: a manifest, or an NDJSON file of several patients."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if _manifest(folder) is not None:
        return True
    return any(len(_sniff_patients(p)) > 1 for p in sorted(folder.glob("*.ndjson")) if p.is_file())


class BulkExport:
    """A Bulk Data export folder, read one patient at a time."""

    format = "fhir-bulk"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def n_files(self) -> int:
        return len(export_files(self.folder)[0])

    def scan(self, on_file: Callable[[str], None] | None = None) -> CohortScan:
        """First pass: where each patient's resources are, and a fingerprint of them."""
        folder = str(self.folder.resolve())
        files, problems = export_files(self.folder)
        pos: dict[str, dict[int, tuple[array, array]]] = {}
        acc: dict[str, list[int]] = {}  # ref id -> [hash sum, bytes, resources]
        meds: dict[str, tuple[int, int, int, int]] = {}  # Medication id -> (file, offset, line, hash)
        med_refs: dict[str, set[str]] = {}
        labels: dict[str, str] = {}
        unlinked: Counter[str] = Counter()
        n_read = 0
        for fi, f in enumerate(files):
            rel = f.name.encode("utf-8")
            bad = 0
            try:
                fh = open(f, "rb")
            except OSError as exc:
                problems.append(f"{f}: cannot read: {exc.strerror or exc}")
                continue
            with fh:
                for lineno, start, line, size in iter_bounded_lines(fh, MAX_LINE_BYTES):
                    if line is None:  # never read whole: a 600 MB line costs no memory
                        bad += 1
                        if bad <= MAX_PROBLEMS_PER_FILE:
                            problems.append(
                                f"{f}: line {lineno} is {size} bytes, over the {MAX_LINE_BYTES}-byte "
                                "line limit; skipped"
                            )
                        continue
                    if not line.strip():
                        continue
                    try:
                        res = json.loads(line)
                    except (ValueError, RecursionError):
                        res = None
                    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                        bad += 1
                        if bad <= MAX_PROBLEMS_PER_FILE:
                            problems.append(f"{f}: line {lineno} is not a FHIR resource; skipped")
                        continue
                    n_read += 1
                    rtype = res["resourceType"]
                    h = int.from_bytes(hashlib.sha256(b"%s\0%d\0%s" % (rel, lineno, line)).digest()[:16], "big")
                    if rtype == "Medication":
                        mid = res.get("id")
                        if isinstance(mid, str) and mid:
                            meds[mid] = (fi, start, lineno, h)
                        continue
                    pid = fhir.patient_reference(res)
                    if pid is None:
                        unlinked[rtype] += 1
                        continue
                    if rtype == "Patient":
                        labels[pid] = fhir.patient_id(res) or pid
                    mref = fhir.medication_reference(res)
                    if mref:
                        med_refs.setdefault(pid, set()).add(mref)
                    per = pos.setdefault(pid, {})
                    entry = per.get(fi)
                    if entry is None:
                        entry = per[fi] = (array("Q"), array("I"))
                    entry[0].append(start)
                    entry[1].append(lineno)
                    a = acc.get(pid)
                    if a is None:
                        a = acc[pid] = [0, 0, 0]
                    a[0] = (a[0] + h) & _MASK
                    a[1] += len(line)
                    a[2] += 1
            if bad > MAX_PROBLEMS_PER_FILE:
                problems.append(
                    f"{f}: {bad - MAX_PROBLEMS_PER_FILE} more lines skipped "
                    "(not FHIR resources, or over the line limit)"
                )
            if on_file:
                on_file(str(f))

        # One patient per Patient resource id: a label (MR number) is an alias, never a key.
        file_names = [str(f.resolve()) for f in files]
        slices = []
        for ref, per in pos.items():
            a = acc[ref]
            wanted_meds = med_refs.get(ref, set())
            med_pos = sorted((meds[m][0], meds[m][1], meds[m][2]) for m in wanted_meds if m in meds)
            med_hashes = sorted(meds[m][3] for m in wanted_meds if m in meds)
            fp = hashlib.sha256(repr((a, med_hashes)).encode("ascii")).hexdigest()
            label = labels.get(ref)
            slices.append(
                PatientSlice(
                    patient_id=ref,
                    format=self.format,
                    folder=folder,
                    fingerprint=fp,
                    size=a[1],
                    n_items=a[2],
                    aliases=(label,) if label and label != ref else (),
                    data={"files": file_names, "pos": per, "meds": med_pos},
                )
            )
        slices.sort(key=lambda s: s.patient_id)
        stats = {"files": len(files), "resources": n_read, "patients": len(slices), "medications": len(meds)}
        stats.update({f"unlinked:{t}": n for t, n in sorted(unlinked.items())})
        return CohortScan(slices=slices, problems=problems, stats=stats)


def load_slice(sl: PatientSlice) -> PatientRecord:
    """Second pass: one patient's resources read back by offset and parsed as one record."""
    files: list[str] = sl.data["files"]
    where: dict[int, list[tuple[int, int]]] = {}
    for fi, (offs, lines) in sl.data["pos"].items():
        where.setdefault(fi, []).extend(zip(offs, lines))
    for fi, off, lineno in sl.data["meds"]:
        where.setdefault(fi, []).append((off, lineno))
    resources: list[tuple[str, dict[str, Any]]] = []
    for fi in sorted(where):
        path = Path(files[fi])
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
        with fh:
            for off, lineno in where[fi]:
                fh.seek(off)
                line = fh.readline(MAX_LINE_BYTES + 1)
                obj = source.parse_json(path, line) if line.strip() else None
                if not isinstance(obj, dict) or "resourceType" not in obj:
                    raise InputError(path, f"line {lineno} changed since the export was scanned; re-run")
                resources.append((f"{fi}#line:{lineno}", obj))
    try:
        rec = fhir.parse_fhir(resources, path=Path(sl.folder))
    except InputError as exc:
        raise InputError(sl.source_path, exc.problem) from None
    events = []
    for e in rec.events:
        fi, _, rest = e.source.path.partition("#")
        events.append(e.model_copy(update={"source": SourceLocator(file=files[int(fi)], path=rest)}))
    return rec.model_copy(
        update={"patient_id": sl.patient_id, "format": "fhir", "events": tuple(events), "sources": (sl.source_path,)}
    )


class _Reader:
    """The :class:`ragehr.ehr.cohort.CohortReader` of Bulk Data exports."""

    format = BulkExport.format

    def detect(self, folder: Path) -> bool:
        return is_bulk_export(folder)

    def open(self, folder: Path) -> Cohort:
        return BulkExport(folder)

    def load_slice(self, sl: PatientSlice) -> PatientRecord:
        return load_slice(sl)


READER = _Reader()

__all__ = ["READER", "BulkExport", "export_files", "is_bulk_export", "load_slice"]
