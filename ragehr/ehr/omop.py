"""OMOP CDM v5.4 tables (CSV or Parquet) -> one :class:`PatientRecord` per person, streamed.

A folder is OMOP when it holds a ``person`` table (``person.csv`` or ``person.parquet``, any
case). These tables are read when present; the others are ignored:

==========================  ==========================================================
table                       events
==========================  ==========================================================
person (+ death)            demographics (gender, birth, race, ethnicity, death)
visit_occurrence            ``encounter``; its id is the ``visit_id`` of the rows that
                            name it in ``visit_occurrence_id``
condition_occurrence        ``condition`` (start, end)
drug_exposure               ``medication`` (``sig`` as dosage); ``immunization`` when the
                            drug concept is from the CVX vocabulary
procedure_occurrence        ``procedure``
measurement                 ``lab`` (``vital`` for the common vital-sign LOINC concepts):
                            ``value_as_number`` (else the value concept's name, else
                            ``value_source_value``), unit, and ``range_low``-``range_high``
observation                 ``observation`` (number, string or concept value)
note                        ``note``: ``note_text``, ``note_title``, type from
                            ``note_class_concept_id`` (else ``note_type_concept_id``)
concept (optional)          names; else the ``*_source_value`` columns
==========================  ==========================================================

Codes: every event keeps its OMOP concept id as its code, with system ``OMOP:<vocabulary>``
(``OMOP:SNOMED``, ``OMOP:LOINC``) when the concept table names the vocabulary, else ``OMOP``; a
row whose concept is 0 (unmapped) keeps its ``*_source_value`` as code, without a system.
Times: ``*_datetime`` when given (read as UTC, as OMOP states no offset), else ``*_date`` to the
day; a datetime at exactly midnight on the row's own date is read as a date. Source locators
name the table file and the row id (``.../measurement.csv#measurement_id=42``).

CSV: read with the csv module's own quoting (strict), so a quoted field may hold commas, quotes
and newlines; a field may be up to :data:`CSV_FIELD_LIMIT` characters (16 MiB). A row that cannot
be read (an unterminated quote, text after a closing quote, a longer field, bytes that are not
UTF-8, a field count other than the header's, a ``person_id`` that is not an integer) is skipped
alone and counted in the scan's
problems (offset and reason, never its text); reading resumes at the line after the one that
row began on, so a broken quote never carries later rows, and another person's text, into it.
A quoted field over several lines whose inner lines are whole rows of other persons (two stray
quotes, or a note quoting such rows: CSV cannot tell) is skipped whole, those lines with it, and
reported, so its text goes to no one. Rows of a ``person_id`` that the person table does not
list are skipped and counted (when the person table was read without a bad row: otherwise the
missing person may be that bad row, and the rows are kept).

Streaming: a first pass reads every table once, keeping per person the byte offset of each
CSV row or the Parquet row groups holding its rows,
a fingerprint of its rows, and the set of concept ids in use; the concept table is then read
for those concepts only. :func:`load_slice` reads one person's rows back. Parquet tables
written sorted by ``person_id`` read each person from one or two row groups; unsorted ones work
but read more.

What it does not do: ``visit_detail``, ``device_exposure``, ``specimen``, ``episode`` and the
era tables are ignored; no ``*.csv.gz``; ``concept_relationship`` is not followed.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ragehr.ehr.cohort import Cohort, CohortScan, PatientSlice
from ragehr.ehr.times import parse_iso, warn_time
from ragehr.errors import InputError
from ragehr.types import Demographics, Event, EventKind, PatientRecord, SourceLocator, TimePrecision

log = logging.getLogger(__name__)

EVENT_TABLES = (
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "note",
)
PERSON_TABLES = ("person", "death")
TABLES = (*PERSON_TABLES, *EVENT_TABLES)

VITAL_LOINC = frozenset(
    {
        "8480-6",
        "8462-4",
        "8867-4",
        "9279-1",
        "8310-5",
        "29463-7",
        "8302-2",
        "39156-5",
        "2708-6",
        "59408-5",
        "8287-5",
        "72514-3",
        "8478-0",
        "55284-4",
        "85354-9",
    }
)
"""Vital signs by LOINC code (blood pressure, heart and respiratory rate, temperature, weight,
height, BMI, oxygen saturation, head circumference, pain)."""

_MASK = (1 << 128) - 1


def _table_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """table name -> (file, "csv" | "parquet") for the tables ragehr reads, plus ``concept``."""
    out: dict[str, tuple[Path, str]] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        stem, suffix = p.stem.lower(), p.suffix.lower()
        if suffix in (".csv", ".parquet") and (stem in TABLES or stem == "concept") and stem not in out:
            out[stem] = (p, suffix[1:])
    return out


def is_omop_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and "person" in _table_files(folder)


# --------------------------------------------------------------------------- reading rows


CSV_FIELD_LIMIT = 16 * 1024 * 1024
"""The longest CSV field read, in characters (the csv module's default is 131,072, which long
discharge summaries reach). A row with a longer field is skipped and counted."""

MAX_ROW_PROBLEMS = 5
"""Skipped rows named one by one per table; the rest are counted."""


class _Lines:
    """The lines of a binary file as text for :mod:`csv`, remembering where each row begins.

    The csv module reads whole lines and asks for the next one only when a quoted field goes on,
    so the byte offset of the first line a row takes is the row's offset. Bytes that are not
    UTF-8 are kept as surrogates (the row is then refused, not the file)."""

    def __init__(self, fh, offset: int = 0) -> None:
        self.fh = fh
        self.next_off = offset
        self.first_line_end: int | None = None
        self.taken: list[str] = []
        """The lines the current row took."""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.fh.readline()
        if not line:
            raise StopIteration
        if self.next_off == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
            self.next_off = 3
        self.next_off += len(line)
        if self.first_line_end is None:
            self.first_line_end = self.next_off
        text = line.decode("utf-8", "surrogateescape")
        self.taken.append(text)
        return text


_INTEGER = re.compile(r"[+-]?\d+(?:\.0)?")
"""An OMOP ``person_id`` (an integer; ``12.0`` as some exports write it): a row whose id is
anything else is refused, so a line of note text read after a broken quote never makes a person."""


class _RowError(Exception):
    """One CSV row that cannot be used (its reason; never its text)."""


def _set_field_limit() -> None:
    """The csv module's limit is process-wide: set to ours before each table is read."""
    if csv.field_size_limit() != CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


def _csv_rows(
    fh, offset: int = 0, check: Callable[[list[str], list[str]], str | None] | None = None
) -> Iterator[tuple[int, list[str] | _RowError]]:
    """(byte offset, fields or the reason it is unusable) of each CSV record from ``offset``,
    read by the csv module's own quoting (a quoted field may span lines and hold quotes).

    A row that cannot be read (an unterminated quote, text after a closing quote, a field over
    :data:`CSV_FIELD_LIMIT`, bytes that are not UTF-8) is reported, and reading goes on from the
    line after the one that row began on: an unterminated quote never takes later rows with it.
    A row over several lines that ``check(fields, lines)`` refuses is reported and skipped whole,
    with every line it took."""
    _set_field_limit()
    fh.seek(offset)
    lines = _Lines(fh, offset)
    reader = csv.reader(lines, strict=True)
    while True:
        start = lines.next_off
        lines.first_line_end = None
        lines.taken = []
        why = None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            msg = str(exc)
            why = (
                "a field longer than the CSV limit"
                if "field limit" in msg
                else "an unterminated quote"
                if "unexpected end of data" in msg
                else "malformed quoting"
            )
        else:
            if check is not None and len(lines.taken) > 1:
                refused = check(fields, lines.taken)
                if refused is not None:  # the whole span, rows inside it included: no text moves
                    yield start, _RowError(refused)
                    continue
        if why is not None:
            yield start, _RowError(why)
            resume = lines.first_line_end if lines.first_line_end is not None else lines.next_off
            fh.seek(resume)
            lines = _Lines(fh, resume)
            reader = csv.reader(lines, strict=True)
            continue
        if any("\udc80" <= c <= "\udcff" for f in fields for c in f):
            yield start, _RowError("bytes that are not UTF-8")
            continue
        yield start, fields


def _header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        for _, fields in _csv_rows(fh):
            if isinstance(fields, _RowError):
                raise InputError(path, f"header row unreadable ({fields})")
            if not fields or fields == [""]:
                continue
            return [h.strip().lower() for h in fields]
    raise InputError(path, "empty CSV table")


def _table_rows(
    path: Path, fh, problems: list[str], required: str, key: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(byte offset, row) of every usable row of an opened CSV table; each unusable row is
    skipped alone, counted, and the first :data:`MAX_ROW_PROBLEMS` named in ``problems``
    (offset and reason, never text)."""
    header: list[str] | None = None

    def other_persons_row(fields: list[str], lines: list[str]) -> str | None:
        """A quoted field over several lines whose inner lines read, each on its own, as complete
        rows of another person: two stray quotes that swallowed those rows, or a note quoting
        such a row; CSV alone cannot tell which, so the span is skipped whole (reported) rather
        than give any of its text to either person."""
        if header is None or len(fields) != len(header):
            return None
        col = header.index(required)
        own = _pid(fields[col])
        for line in lines[1:]:
            try:
                alone = next(csv.reader([line], strict=True), None)
            except csv.Error:
                continue
            if alone is not None and len(alone) == len(header) and _pid(alone[col]) not in (None, own):
                return "a quoted field that holds other persons' rows (stray quotes?); skipped with them"
        return None

    rows = _csv_rows(fh, check=other_persons_row)
    bad = 0
    for off, fields in rows:
        if isinstance(fields, _RowError):
            if header is None:
                raise InputError(path, f"header row unreadable ({fields})")
        elif header is None:
            if not fields or fields == [""]:
                continue
            header = [h.strip().lower() for h in fields]
            if required not in header:
                raise InputError(path, f"no {required} column")
            continue
        elif not fields or fields == [""]:
            continue
        elif len(fields) != len(header):
            fields = _RowError(f"{len(fields)} fields where the header has {len(header)}")
        elif bad_id := next(
            (
                c
                for c in ("person_id", key)
                if c in header and c in (required, key) and not _INTEGER.fullmatch(fields[header.index(c)].strip())
            ),
            None,
        ):
            fields = _RowError(f"a {bad_id} that is not an integer")
        else:
            yield off, dict(zip(header, fields))
            continue
        bad += 1
        if bad <= MAX_ROW_PROBLEMS:
            problems.append(f"{path}: row at byte {off} skipped: {fields}")
    if header is None:
        raise InputError(path, "empty CSV table")
    if bad > MAX_ROW_PROBLEMS:
        problems.append(f"{path}: {bad - MAX_ROW_PROBLEMS} more unreadable rows skipped ({bad} in all)")


def _pid(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    if s.endswith(".0") and s[:-2].isdigit():
        s = s[:-2]
    return s or None


def _concept_ids(row: dict[str, Any]) -> Iterator[int]:
    for k, v in row.items():
        if k.endswith("_concept_id"):
            c = _int(v)
            if c:
                yield c


class OmopCohort:
    """An OMOP CDM folder, read one person at a time."""

    format = "omop"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def n_files(self) -> int:
        return len([t for t in _table_files(self.folder) if t in TABLES])

    def scan(self, on_file: Callable[[str], None] | None = None) -> CohortScan:
        folder = str(self.folder.resolve())
        tables = _table_files(self.folder)
        problems: list[str] = []
        pos: dict[str, dict[str, array]] = {}
        acc: dict[str, list[int]] = {}
        used: set[int] = set()
        n_rows = 0
        info: dict[str, dict[str, Any]] = {}
        listed: set[str] | None = None  # the person table's persons, when it was read whole
        for table in TABLES:
            if table not in tables:
                continue
            path, kind = tables[table]
            n_problems = len(problems)
            orphans = 0
            try:
                header = _header(path) if kind == "csv" else None
                rows = _scan_csv(path, problems, table) if kind == "csv" else _scan_parquet(path)
                info[table] = {"file": str(path.resolve()), "kind": kind, "header": header}
                tname = table.encode()
                for person, where, content, row in rows:
                    if listed is not None and person not in listed:
                        orphans += 1  # a row of nobody: never a person (and an index) of its own
                        continue
                    n_rows += 1
                    used.update(_concept_ids(row))
                    per = pos.setdefault(person, {})
                    per.setdefault(table, array("Q")).append(where)
                    h = int.from_bytes(hashlib.sha256(tname + b"\0" + content).digest()[:16], "big")
                    a = acc.get(person)
                    if a is None:
                        a = acc[person] = [0, 0]
                    a[0] = (a[0] + h) & _MASK
                    a[1] += 1
            except InputError as exc:
                problems.append(f"{exc} (table {table} skipped)")
                info.pop(table, None)
            if table == "person" and table in info and len(problems) == n_problems:
                listed = set(pos)
            if orphans:
                problems.append(f"{path}: {orphans} row(s) of a person_id the person table does not list; skipped")
            if on_file:
                on_file(str(path))
        concepts: dict[int, tuple[str, str, str]] = {}
        if "concept" in tables:
            try:
                concepts = _read_concepts(*tables["concept"], used, problems)
            except InputError as exc:
                problems.append(f"{exc} (names from *_source_value instead)")
        concept_fp = hashlib.sha256(repr(sorted(concepts.items())).encode("utf-8")).hexdigest()
        slices = []
        for person, per in pos.items():
            a = acc[person]
            fp = hashlib.sha256(f"{a[0]}:{a[1]}:{concept_fp}".encode("ascii")).hexdigest()
            slices.append(
                PatientSlice(
                    patient_id=person,
                    format=self.format,
                    folder=folder,
                    fingerprint=fp,
                    size=a[1],
                    n_items=a[1],
                    data={"tables": info, "pos": per, "concepts": concepts},
                )
            )
        slices.sort(key=lambda s: (len(s.patient_id), s.patient_id))
        stats = {"tables": len(info), "rows": n_rows, "patients": len(slices), "concepts": len(concepts)}
        return CohortScan(slices=slices, problems=problems, stats=stats)


def _scan_csv(path: Path, problems: list[str], table: str = "") -> Iterator[tuple[str, int, bytes, dict[str, Any]]]:
    """(person id, byte offset, row content, row) of every usable row of a CSV table; rows that
    cannot be read (or whose person or row id is not an integer) are skipped one at a time and
    reported in ``problems``."""
    with open(path, "rb") as fh:
        for off, row in _table_rows(path, fh, problems, "person_id", _ID_COLUMN.get(table)):
            person = _pid(row["person_id"])
            if person:
                yield person, off, repr(sorted(row.items())).encode("utf-8", "surrogatepass"), row


def _scan_parquet(path: Path) -> Iterator[tuple[str, int, bytes, dict[str, Any]]]:
    """(person id, row group, row content, row) of every row of a Parquet table."""
    pf = _parquet_file(path)
    if "person_id" not in [n.lower() for n in pf.schema_arrow.names]:
        raise InputError(path, "no person_id column")
    for rg in range(pf.num_row_groups):
        for row in pf.read_row_group(rg).to_pylist():
            row = {k.lower(): v for k, v in row.items()}
            person = _pid(row.get("person_id"))
            if person:
                yield person, rg, repr(sorted(row.items())).encode("utf-8"), row


def _parquet_file(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(path, "reading Parquet needs pyarrow: pip install 'ragehr[omop]'") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types
        raise InputError(path, f"unreadable Parquet: {type(exc).__name__}") from None


def _read_concepts(path: Path, kind: str, used: set[int], problems: list[str]) -> dict[int, tuple[str, str, str]]:
    """concept_id -> (name, vocabulary_id, concept_code), for the concepts in ``used`` only;
    unreadable CSV rows are skipped and reported in ``problems``."""
    out: dict[int, tuple[str, str, str]] = {}

    def keep(row: dict[str, Any]) -> None:
        cid = _int(row.get("concept_id"))
        if cid in used:
            out[cid] = (
                _text(row.get("concept_name")) or "",
                _text(row.get("vocabulary_id")) or "",
                _text(row.get("concept_code")) or "",
            )

    if kind == "csv":
        with open(path, "rb") as fh:
            for _, row in _table_rows(path, fh, problems, "concept_id"):
                keep(row)
    else:
        pf = _parquet_file(path)
        for batch in pf.iter_batches(columns=None):
            for row in batch.to_pylist():
                keep({k.lower(): v for k, v in row.items()})
    return out


def _rows(table: str, t: dict[str, Any], where: array, person: str) -> Iterator[dict[str, Any]]:
    path = Path(t["file"])
    if t["kind"] == "csv":
        header = t["header"]
        with open(path, "rb") as fh:
            for off in where:
                fields = next((f for _, f in _csv_rows(fh, off)), None)
                if isinstance(fields, list) and len(fields) == len(header):
                    row = dict(zip(header, fields))
                    if _pid(row.get("person_id")) == person:
                        yield row
                        continue
                raise InputError(path, f"changed since it was scanned (row at byte {off}); re-run")
        return
    pf = _parquet_file(path)
    for rg in sorted(set(where)):
        for row in pf.read_row_group(rg).to_pylist():
            row = {k.lower(): v for k, v in row.items()}
            if _pid(row.get("person_id")) == person:
                yield row


# --------------------------------------------------------------------------- values


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if not s:
        return None
    try:
        return int(float(s)) if "." in s or "e" in s.lower() else int(s)
    except ValueError:
        return None


def _num(v: Any) -> int | float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        x = v
    else:
        s = str(v).strip()
        if not s:
            return None
        try:
            x = int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
        except ValueError:
            return None
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            return None
        if x.is_integer() and abs(x) < 2**53:
            return int(x)  # 80 reads as 80 from a CSV "80", "80.0" or a Parquet double alike
    return x


def _when(row: dict[str, Any], prefix: str) -> tuple[datetime, TimePrecision] | None:
    """``<prefix>_datetime`` (midnight on ``<prefix>_date`` read as a date), else ``<prefix>_date``."""
    d = _as_time(row.get(f"{prefix}_date"))
    dt = _as_time(row.get(f"{prefix}_datetime"))
    if dt is not None:
        t, prec = dt
        midnight = t.hour == 0 and t.minute == 0 and t.second == 0
        if midnight and (d is None or d[0].date() == t.date()):
            return t, TimePrecision.DAY
        return t, prec if prec is not TimePrecision.DAY else TimePrecision.MINUTE
    return d


def _as_time(v: Any) -> tuple[datetime, TimePrecision] | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        t = v if v.tzinfo else v.replace(tzinfo=UTC)
        return t, TimePrecision.SECOND if t.second else TimePrecision.MINUTE
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC), TimePrecision.DAY
    s = str(v).strip()
    return parse_iso(s) if s else None


class _Concepts:
    def __init__(self, table: dict[int, tuple[str, str, str]]) -> None:
        self.table = table

    def name(self, cid: int | None) -> str | None:
        c = self.table.get(cid) if cid else None
        return c[0] or None if c else None

    def code(self, row: dict[str, Any], column: str) -> tuple[str | None, str | None, str | None]:
        """(system, code, name) of a ``*_concept_id`` column, or of its ``*_source_value``."""
        cid = _int(row.get(f"{column}_concept_id"))
        source = _text(row.get(f"{column}_source_value"))
        if not cid:
            return None, source, source
        c = self.table.get(cid)
        system = f"OMOP:{c[1]}" if c and c[1] else "OMOP"
        return system, str(cid), (c[0] if c and c[0] else source)


# --------------------------------------------------------------------------- mapping


def load_slice(sl: PatientSlice) -> PatientRecord:
    """One person's rows read back and mapped to a record."""
    tables: dict[str, dict[str, Any]] = sl.data["tables"]
    pos: dict[str, array] = sl.data["pos"]
    concepts = _Concepts(sl.data["concepts"])
    events: list[Event] = []
    demo: dict[str, Any] = {}
    unusable: dict[str, int] = {}
    person = sl.patient_id
    for table in TABLES:
        if table not in pos or table not in tables:
            continue
        t = tables[table]
        for row in _rows(table, t, pos[table], person):
            if table == "person":
                demo.update(_person(row, concepts))
                continue
            if table == "death":
                w = _when(row, "death")
                if w:
                    demo["deceased"] = w[0]
                continue
            try:
                ev = _event(table, row, concepts, t["file"])
            except (ValueError, TypeError) as exc:
                log.debug("%s: a %s row skipped (%s)", t["file"], table, type(exc).__name__)
                unusable[table] = unusable.get(table, 0) + 1
                continue
            if ev is not None:
                events.append(ev)
    if not events and not demo:
        raise InputError(sl.source_path, "no rows that yield events or demographics")
    return PatientRecord(
        patient_id=person,
        format="omop",
        demographics=Demographics(**demo),
        events=tuple(events),
        sources=(sl.source_path,),
        warnings=tuple(f"{n} {table} row(s) with values that cannot be read; skipped" for table, n in unusable.items()),
    )


def _person(row: dict[str, Any], concepts: _Concepts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    born = _as_time(row.get("birth_datetime"))
    if born:
        out["birth_date"] = born[0].date()
    else:
        y, m, d = (_int(row.get(k)) for k in ("year_of_birth", "month_of_birth", "day_of_birth"))
        if y:
            try:
                out["birth_date"] = date(y, m or 1, d or 1)
            except ValueError:
                warn_time(f"birth date {y}-{m or 1}-{d or 1} (year/month/day_of_birth) is not a valid date; not used")
    for field in ("gender", "race", "ethnicity"):
        name = concepts.name(_int(row.get(f"{field}_concept_id"))) or _text(row.get(f"{field}_source_value"))
        if name and name.lower() not in ("no matching concept", "unknown"):
            out[field] = name.lower() if field == "gender" else name
    return out


_ID_COLUMN = {
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "drug_exposure": "drug_exposure_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "note": "note_id",
}


def _event(table: str, row: dict[str, Any], concepts: _Concepts, file: str) -> Event | None:
    id_col = _ID_COLUMN[table]
    loc = SourceLocator(file=file, path=f"{id_col}={_text(row.get(id_col)) or '?'}")
    visit = _pid(row.get("visit_occurrence_id"))
    if table == "visit_occurrence":
        system, code, name = concepts.code(row, "visit")
        w = _when(row, "visit_start")
        end = _when(row, "visit_end")
        return Event(
            kind=EventKind.ENCOUNTER,
            start=w[0] if w else None,
            precision=w[1] if w else TimePrecision.MINUTE,
            end=end[0] if end else None,
            system=system,
            code=code,
            text=name or "visit",
            visit_id=visit,
            source=loc,
        )
    if table == "note":
        text = _text(row.get("note_text"))
        if not text:
            return None
        w = _when(row, "note")
        # The class (a LOINC document type) says what the note is; the type only its provenance.
        ntype = (
            concepts.name(_int(row.get("note_class_concept_id")))
            or concepts.name(_int(row.get("note_type_concept_id")))
            or _text(row.get("note_source_value"))
        )
        return Event(
            kind=EventKind.NOTE,
            start=w[0] if w else None,
            precision=w[1] if w else TimePrecision.MINUTE,
            text=text,
            note_type=ntype,
            title=_text(row.get("note_title")) or ntype,
            visit_id=visit,
            source=loc,
        )
    column, prefix, kind = {
        "condition_occurrence": ("condition", "condition_start", EventKind.CONDITION),
        "drug_exposure": ("drug", "drug_exposure_start", EventKind.MEDICATION),
        "procedure_occurrence": ("procedure", "procedure", EventKind.PROCEDURE),
        "measurement": ("measurement", "measurement", EventKind.LAB),
        "observation": ("observation", "observation", EventKind.OBSERVATION),
    }[table]
    system, code, name = concepts.code(row, column)
    if not (code or name):
        return None
    w = _when(row, prefix)
    end_prefix = {
        "condition_occurrence": "condition_end",
        "drug_exposure": "drug_exposure_end",
        "procedure_occurrence": "procedure_end",
    }.get(table)
    end = _when(row, end_prefix) if end_prefix else None
    text = name or code or ""
    value: Any = None
    unit = None
    if table == "drug_exposure":
        c = concepts.table.get(int(code)) if system and code and code.isdigit() else None
        if c and c[1] == "CVX":
            kind = EventKind.IMMUNIZATION
        sig = _text(row.get("sig"))
        if sig:
            text = f"{text} (dosage: {sig})"
    if table in ("measurement", "observation"):
        c = concepts.table.get(int(code)) if system and code and code.isdigit() else None
        if table == "measurement" and c and c[1] == "LOINC" and c[2] in VITAL_LOINC:
            kind = EventKind.VITAL
        value = _num(row.get("value_as_number"))
        if value is None:
            value = (
                _text(row.get("value_as_string"))
                or concepts.name(_int(row.get("value_as_concept_id")))
                or _text(row.get("value_source_value"))
            )
        unit = concepts.name(_int(row.get("unit_concept_id"))) or _text(row.get("unit_source_value"))
        low, high = _num(row.get("range_low")), _num(row.get("range_high"))
        if low is not None or high is not None:
            text = f"{text} (range {'' if low is None else low}-{'' if high is None else high})"
    return Event(
        kind=kind,
        start=w[0] if w else None,
        precision=w[1] if w else TimePrecision.MINUTE,
        end=end[0] if end else None,
        system=system,
        code=code,
        text=text,
        value=value,
        unit=unit,
        visit_id=visit,
        source=loc,
    )


class _Reader:
    """The :class:`ragehr.ehr.cohort.CohortReader` of OMOP CDM folders."""

    format = OmopCohort.format

    def detect(self, folder: Path) -> bool:
        return is_omop_folder(folder)

    def open(self, folder: Path) -> Cohort:
        return OmopCohort(folder)

    def load_slice(self, sl: PatientSlice) -> PatientRecord:
        return load_slice(sl)


READER = _Reader()

__all__ = ["CSV_FIELD_LIMIT", "EVENT_TABLES", "READER", "OmopCohort", "is_omop_folder", "load_slice"]
