"""OMOP CDM tables: the same patient reads the same from FHIR and from OMOP, CSV or Parquet.

The fixture (tests/fixtures/omop) was written from two Synthea FHIR bundles by
scripts/make_omop_fixture.py, which reads the bundles' JSON itself; here ragehr's FHIR parser
reads the bundles and ragehr's OMOP reader reads the tables, and FHIR codes are mapped to OMOP
concept ids through the fixture's concept table.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest

from ragehr.config import IndexConfig
from ragehr.ehr import load_record
from ragehr.ehr.cohort import detect_cohort
from ragehr.ehr.omop import OmopCohort, is_omop_folder
from ragehr.index import store
from ragehr.index.build import build_indexes
from ragehr.types import EventKind
from tests.conftest import FIXTURES

OMOP = FIXTURES / "omop"
CFG = IndexConfig(embedder="hashing")
BUNDLES = {
    "1": "synthea/fhir/exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json",
    "2": "synthea/fhir/exafluence_CA_8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96.json",
}
VOCAB = {"SNOMED": "SNOMED", "LOINC": "LOINC", "RxNorm": "RxNorm", "CVX": "CVX"}


def _concepts() -> dict[tuple[str, str], str]:
    """(vocabulary, concept_code) -> concept_id, from the fixture's concept table."""
    with open(OMOP / "concept.csv", newline="") as fh:
        return {(r["vocabulary_id"], r["concept_code"]): r["concept_id"] for r in csv.DictReader(fh)}


def _records(folder: Path) -> dict:
    scan = OmopCohort(folder).scan()
    assert scan.problems == []
    return {s.patient_id: s.load() for s in scan.slices}


def _fhir(path: Path):
    """The bundle's record without its DiagnosticReport summaries (OMOP has no such table; the
    results they list are events of their own in both)."""
    entries = json.loads(path.read_text())["entry"]
    rec = load_record(path)
    kept = tuple(
        e
        for e in rec.events
        if entries[int(e.source.path.split("/")[2])]["resource"]["resourceType"] != "DiagnosticReport"
    )
    return rec.model_copy(update={"events": kept})


def _fhir_view(rec, concepts, kinds):
    """(kind, OMOP concept id, instant, value) of a FHIR record's events of these kinds."""
    out = []
    for e in rec.events:
        if e.kind in kinds:
            out.append((e.kind.value, concepts[(e.system, e.code)], e.start.timestamp(), e.value))
    return sorted(out, key=repr)


def _omop_view(rec, kinds):
    return sorted(
        ((e.kind.value, e.code, e.start.timestamp(), e.value) for e in rec.events if e.kind in kinds), key=repr
    )


def test_detected_as_omop():
    assert is_omop_folder(OMOP) and detect_cohort(OMOP).format == "omop"
    assert not is_omop_folder(FIXTURES / "medalign")


@pytest.mark.parametrize("person", ["1", "2"])
def test_same_patient_from_fhir_and_omop(shared_data, person):
    fhir = _fhir(shared_data / BUNDLES[person])
    omop = _records(OMOP)[person]
    concepts = _concepts()
    structured = {
        EventKind.CONDITION,
        EventKind.PROCEDURE,
        EventKind.IMMUNIZATION,
        EventKind.MEDICATION,
        EventKind.LAB,
        EventKind.VITAL,
        EventKind.OBSERVATION,
    }
    assert _omop_view(omop, structured) == _fhir_view(fhir, concepts, structured)
    # Conditions keep their names and their end (abatement) dates.
    cond = lambda r: sorted((e.text, e.start, e.end) for e in r.events if e.kind is EventKind.CONDITION)
    assert cond(omop) == cond(fhir)
    # Units of numeric results, notes word for word, visits by start, demographics.
    units = lambda r: sorted(
        (e.start, str(e.value), e.unit) for e in r.events if e.kind in (EventKind.LAB, EventKind.VITAL)
    )
    assert units(omop) == units(fhir)
    notes = lambda r: sorted((e.start, e.text, e.note_type) for e in r.events if e.kind is EventKind.NOTE)
    assert notes(omop) == notes(fhir) and notes(omop)
    visits = lambda r: sorted(
        (e.start, e.end, e.visit_id is not None) for e in r.events if e.kind is EventKind.ENCOUNTER
    )
    assert visits(omop) == visits(fhir)
    assert (omop.demographics.birth_date, omop.demographics.gender) == (
        fhir.demographics.birth_date,
        fhir.demographics.gender,
    )
    # Codes are OMOP concept ids with their vocabulary; locators name table and row id.
    c = next(e for e in omop.events if e.kind is EventKind.CONDITION)
    assert c.system == "OMOP:SNOMED" and c.code.isdigit()
    assert c.source.file.endswith("condition_occurrence.csv") and c.source.path.startswith("condition_occurrence_id=")
    # Every event that names a visit names one of the patient's visits.
    vids = {e.visit_id for e in omop.events if e.kind is EventKind.ENCOUNTER}
    assert {e.visit_id for e in omop.events if e.visit_id} <= vids


def test_parquet_unsorted_small_row_groups_reads_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = tmp_path / "pq"
    out.mkdir()
    rng = random.Random(7)
    for f in OMOP.glob("*.csv"):
        table = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        order = list(range(table.num_rows))
        rng.shuffle(order)  # persons interleaved across row groups
        pq.write_table(table.take(pa.array(order)), out / f"{f.stem.upper()}.parquet", row_group_size=7)
    assert is_omop_folder(out)
    want, got = _records(OMOP), _records(out)
    assert set(want) == set(got)
    for pid in want:
        key = lambda r: sorted(
            repr(
                (
                    e.kind.value,
                    e.start,
                    e.end,
                    e.system,
                    e.code,
                    e.text,
                    e.unit,
                    str(e.value),
                    e.visit_id,
                    e.note_type,
                    e.title,
                )
            )
            for e in r.events
        )
        assert key(got[pid]) == key(want[pid])
        assert got[pid].demographics == want[pid].demographics


def test_without_concept_table_names_come_from_source_values(tmp_path):
    d = tmp_path / "noconcept"
    shutil.copytree(OMOP, d)
    (d / "concept.csv").unlink()
    rec = _records(d)["1"]
    vital = next(e for e in rec.events if e.kind is EventKind.LAB and e.unit == "Cel")
    # No vocabulary known: system OMOP, the concept id kept, the source value as the name.
    assert vital.system == "OMOP" and vital.code.isdigit() and vital.text == "8310-5"


def test_quoted_multiline_fields_and_unmapped_concepts(tmp_path):
    d = tmp_path / "tricky"
    d.mkdir()
    nasty = 'Line one, with "quotes"\nline two,\r\n"line three"'
    with open(d / "person.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["person_id", "gender_concept_id", "year_of_birth", "gender_source_value"])
        w.writerows([[10, 0, 1950, "F"], [11, 0, 1960, "M"]])
    with open(d / "note.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "note_id",
                "person_id",
                "note_date",
                "note_datetime",
                "note_title",
                "note_text",
                "note_type_concept_id",
                "note_class_concept_id",
                "visit_occurrence_id",
            ]
        )
        w.writerow([1, 11, "2020-01-02", "", "Plain", "short", 0, 0, ""])
        w.writerow([2, 10, "2020-01-03", "2020-01-03 08:30:00", "Tricky", nasty, 0, 0, ""])
        w.writerow([3, 11, "2020-01-04", "2020-01-04 00:00:00", "Midnight", "x", 0, 0, ""])
    with open(d / "condition_occurrence.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "condition_occurrence_id",
                "person_id",
                "condition_concept_id",
                "condition_start_date",
                "condition_source_value",
            ]
        )
        w.writerow([5, 10, 0, "2019-05-06", "ICD10:E11.9"])
    recs = _records(d)
    note = next(e for e in recs["10"].events if e.kind is EventKind.NOTE)
    assert note.text == nasty.strip() and note.title == "Tricky" and note.start.hour == 8
    assert recs["10"].demographics.gender == "f" and recs["10"].demographics.birth_date.year == 1950
    cond = next(e for e in recs["10"].events if e.kind is EventKind.CONDITION)
    assert cond.system is None and cond.code == "ICD10:E11.9" and cond.precision.value == "day"
    days = {e.title: e.precision.value for e in recs["11"].events}
    assert days == {"Plain": "day", "Midnight": "day"}


def test_bad_table_is_reported_and_the_rest_read(tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(OMOP, d)
    (d / "measurement.csv").write_text("measurement_id,value_as_number\n1,2\n")
    scan = OmopCohort(d).scan()
    assert any("no person_id column" in p for p in scan.problems)
    assert len(scan.slices) == 2 and not any(e.kind is EventKind.LAB for s in scan.slices for e in s.load().events)


def test_index_rerun_and_one_changed_person(tmp_path):
    d = tmp_path / "omop"
    shutil.copytree(OMOP, d)
    idx = tmp_path / "idx"
    assert sorted(s.status for s in build_indexes([d], idx, CFG)) == ["built", "built"]
    assert sorted(s.status for s in build_indexes([d], idx, CFG)) == ["unchanged", "unchanged"]
    # Person 2 gets one more measurement row: only person 2 is rebuilt.
    with open(d / "measurement.csv", "a", newline="") as fh:
        fh.write("999,2,0,2025-01-01,,,,,7.25,,,3.5,8.1,,,,HbA1c-local,,%,,,,\n")
    res = {s.patient_id: s.status for s in build_indexes([d], idx, CFG)}
    assert res == {"1": "unchanged", "2": "built"}
    record = json.loads((store.patient_dir(idx, "2") / "record.json").read_text())
    [ev] = [e for e in record["events"] if e["source"]["path"] == "measurement_id=999"]
    assert ev["value"] == 7.25 and ev["unit"] == "%" and "(range 3.5-8.1)" in ev["text"]
