from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ragehr.ehr import load_record
from ragehr.ehr.medalign import parse_code_line, patient_id_from_path, write_medalign_xml
from ragehr.types import EventKind
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"


@pytest.fixture(scope="module")
def record():
    return load_record(SAMPLE)


def test_sample_has_three_visits_and_five_notes(record):
    assert record.format == "medalign-xml"
    assert len({e.visit_id for e in record.events}) == 3
    notes = [e for e in record.events if e.kind is EventKind.NOTE]
    assert len(notes) == 5
    # type="NULL" notes have no note type; typed ones keep theirs.
    assert [n.note_type for n in notes] == [
        "emergency department note",
        None,
        "Inpatient Rehabilitation Note",
        None,
        "Neurology Clinic Note",
    ]


def test_systolic_blood_pressure_165_at_0805_pm(record):
    sbp = [e for e in record.events if e.code == "8480-6"]
    first = sbp[0]
    assert first.kind is EventKind.VITAL
    assert first.value == 165 and isinstance(first.value, int)
    assert first.start == datetime(2018, 10, 8, 20, 5, tzinfo=UTC)
    assert first.text == "Systolic blood pressure"
    assert first.source.path == "/record/visit[1]/day/measurement[2]/code[10]"
    assert [e.value for e in sbp] == [165, 180, 130]


def test_mixed_date_formats(record):
    notes = [e for e in record.events if e.kind is EventKind.NOTE]
    # "10/08/2018 9:00 PM" on a note; "10/08/2018 20:00" on the visit.
    assert notes[1].start == datetime(2018, 10, 8, 21, 0, tzinfo=UTC)
    assert record.events[0].start == datetime(2018, 10, 8, 20, 0, tzinfo=UTC)
    assert notes[3].start == datetime(2018, 10, 20, 13, 45, tzinfo=UTC)


def test_values_units_and_drug_names(record):
    by_code = {}
    for e in record.events:
        by_code.setdefault(e.code, e)
    assert (by_code["8478-0"].value, by_code["8478-0"].unit) == (122, "mm Hg")
    assert (by_code["LP21258-6"].value, by_code["LP21258-6"].unit) == (96, "%")
    assert (by_code["8277-6"].value, by_code["8277-6"].unit) == (0, "sq meters")
    assert by_code["38214-3"].text == "Pain severity [Score] Visual analog score"
    # A drug's strength is part of its name, not a value.
    drug = by_code["OMOP675480"]
    assert drug.kind is EventKind.MEDICATION
    assert drug.text == "alteplase 1 MG/ML Injectable Solution" and drug.value is None
    assert by_code["8601-7"].value is None  # "EKG impression" has no value
    weights = [e.value for e in record.events if e.code == "29463-7"]
    assert weights == [80, 2432.51, 75]


def test_demographics(record):
    d = record.demographics
    assert d.birth_date.isoformat() == "1966-07-19"
    assert d.gender == "female" and d.race == "White" and d.ethnicity == "Hispanic or Latino"


def test_events_are_time_ordered(record):
    times = [e.start for e in record.events]
    assert times == sorted(times)


@pytest.mark.parametrize(
    "name,expected", [("EHR_123.xml", "123"), ("123.xml", "123"), ("EHR_.xml", "EHR_"), ("x.y.xml", "x.y")]
)
def test_patient_id_from_file_name(name, expected):
    assert patient_id_from_path(Path(name)) == expected


def test_patient_id_of_sample(record):
    assert record.patient_id == "sample"


@pytest.mark.parametrize(
    "line,valued,expected",
    [
        ("[LOINC/8480-6] Systolic blood pressure 165", True, ("LOINC", "8480-6", "Systolic blood pressure", 165, None)),
        ("[LOINC/8310-5] Body temperature 98.2", True, ("LOINC", "8310-5", "Body temperature", 98.2, None)),
        ("[LOINC/2345-7] Glucose 10 10*3/uL", True, ("LOINC", "2345-7", "Glucose", 10, "10*3/uL")),
        ("[LOINC/8601-7] EKG impression", True, ("LOINC", "8601-7", "EKG impression", None, None)),
        ("[RxNorm/6185] Labetalol 5mg IV x 1", False, ("RxNorm", "6185", "Labetalol 5mg IV x 1", None, None)),
        ("no code here 5 mg", True, (None, None, "no code here", 5, "mg")),
        ("[LOINC/1-8] Result -0.5 mmol/L", True, ("LOINC", "1-8", "Result", -0.5, "mmol/L")),
    ],
)
def test_parse_code_line(line, valued, expected):
    assert parse_code_line(line, valued=valued) == expected


def test_round_trip_medalign_xml(record, tmp_path):
    out = tmp_path / "EHR_sample.xml"
    out.write_text(write_medalign_xml(record))
    again = load_record(out)
    assert again.patient_id == record.patient_id
    assert again.demographics == record.demographics
    assert [e.content_key() for e in again.events] == [e.content_key() for e in record.events]
    # and once more: the writer is a fixed point
    assert write_medalign_xml(again) == write_medalign_xml(record)


def test_round_trip_keeps_kinds_without_an_omop_table(tmp_path):
    xml = """<record><visit type="Visit" start="01/02/2020 10:00"><day start="01/02/2020 10:00">
    <drug_exposure start="01/02/2020 10:05" kind="immunization"><code>[CVX/140] Influenza vaccine</code></drug_exposure>
    <observation start="01/02/2020 10:06" kind="allergy"><code>[SNOMED/7980] Penicillin</code></observation>
    <condition_occurrence start="01/02/2020" end="03/04/2020" status="resolved"><code>[SNOMED/1] Flu</code></condition_occurrence>
    </day></visit></record>"""
    p = tmp_path / "EHR_9.xml"
    p.write_text(xml)
    rec = load_record(p)
    kinds = [e.kind for e in rec.events]
    assert EventKind.IMMUNIZATION in kinds and EventKind.ALLERGY in kinds
    cond = next(e for e in rec.events if e.kind is EventKind.CONDITION)
    assert cond.status.value == "resolved" and cond.end.month == 3
    p2 = tmp_path / "EHR_9b.xml"
    p2.write_text(write_medalign_xml(rec))
    assert [e.content_key() for e in load_record(p2).events] == [e.content_key() for e in rec.events]
