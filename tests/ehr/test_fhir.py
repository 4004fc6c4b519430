"""FHIR R4 parser: the Synthea bundles in shared data, plus small hand-written resources."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from ragehr.ehr import load_record
from ragehr.ehr.fhir import html_to_text, parse_fhir
from ragehr.errors import InputError
from ragehr.types import Event, EventKind, PatientRecord, Status, TimePrecision

UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$")

EXA_SHAWN = "exafluence_CA_8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96.json"
EXA_VASILIKI = "exafluence_CA_2b8f6690-5ebd-45ef-ba61-152e08c9f38a.json"
SMART_JUDI = "smart_Judi_Schamberger_3228ed47-7683-4cf1-8104-59f6bdd49f49.json"
SMART_FLETCHER = "smart_Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json"


@pytest.fixture(scope="module")
def fhir_dir(shared_data: Path) -> Path:
    return shared_data / "synthea" / "fhir"


_CACHE: dict[tuple[Path, bool], PatientRecord] = {}


def _load(path: Path, include_billing: bool = False) -> PatientRecord:
    key = (path, include_billing)
    if key not in _CACHE:
        _CACHE[key] = load_record(path, include_billing=include_billing)
    return _CACHE[key]


def _at(rec: PatientRecord, locator: str) -> list[Event]:
    return [e for e in rec.events if e.source.path == locator]


def _entries(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(path.read_bytes())["entry"]]


# --------------------------------------------------------------------------- shared data


def test_every_synthea_bundle_parses(fhir_dir: Path) -> None:
    files = sorted(fhir_dir.glob("*.json"))
    assert len(files) == 9
    for f in files:
        rec = _load(f)
        m = UUID.search(f.name)
        assert m, f.name
        assert rec.patient_id == m.group(1), f.name
        assert rec.format == "fhir"
        assert rec.sources == (str(f),)
        assert rec.events, f.name
        assert all(e.source.file == str(f) for e in rec.events)
        assert all(e.start is not None and e.start.tzinfo is not None for e in rec.events)
        counts = rec.counts()
        assert counts["encounter"] > 0 and counts["condition"] > 0 and counts["vital"] > 0, f.name
        assert ("note" in counts) == f.name.startswith("exafluence_"), f.name


def test_smart_patient_id_is_the_synthea_identifier_not_resource_id(fhir_dir: Path) -> None:
    path = fhir_dir / SMART_JUDI
    patient = next(r for r in _entries(path) if r["resourceType"] == "Patient")
    rec = _load(path)
    assert patient["id"] == "cf842278-01a7-4be1-8830-22d8ba5991b1"
    assert rec.patient_id == "3228ed47-7683-4cf1-8104-59f6bdd49f49"


def test_demographics(fhir_dir: Path) -> None:
    d = _load(fhir_dir / EXA_VASILIKI).demographics
    assert d.name == "Vasiliki884 Concetta811 Bode78"  # the official name, not the maiden one
    assert d.birth_date == date(1934, 2, 11)
    assert d.gender == "female"
    assert d.race == "White"
    assert d.ethnicity == "Hispanic or Latino"
    assert d.deceased is None
    fletcher = _load(fhir_dir / SMART_FLETCHER).demographics
    assert fletcher.deceased == datetime(1996, 1, 21, 19, 20, 6, tzinfo=UTC)
    # race ombCategory is a NullFlavor (UNK): the text sub-extension is used
    assert _load(fhir_dir / EXA_SHAWN).demographics.race == "Other"


def test_blood_pressure_panel_split_into_components(fhir_dir: Path) -> None:
    rec = _load(fhir_dir / EXA_SHAWN)
    assert _at(rec, "/entry/41/resource") == []  # the panel itself has no value
    dia, sys_ = _at(rec, "/entry/41/resource/component/0"), _at(rec, "/entry/41/resource/component/1")
    assert len(dia) == len(sys_) == 1
    for e, code, value in ((sys_[0], "8480-6", 110), (dia[0], "8462-4", 74)):
        assert e.kind is EventKind.VITAL
        assert (e.system, e.code) == ("LOINC", code)
        assert e.value == value and isinstance(e.value, int)
        assert e.unit == "mm[Hg]"
        assert e.start == datetime(2023, 1, 10, 19, 10, 24, tzinfo=UTC)
        assert e.visit_id == "d55a12cd-76b1-e60d-6f01-7dc698711452"
    assert sys_[0].text == "Systolic Blood Pressure"


def test_quantity_keeps_float(fhir_dir: Path) -> None:
    (height,) = _at(_load(fhir_dir / EXA_SHAWN), "/entry/37/resource")
    assert (height.kind, height.code, height.value, height.unit) == (EventKind.VITAL, "8302-2", 155.4, "cm")


def test_value_codeable_concept_observation(fhir_dir: Path) -> None:
    (e,) = _at(_load(fhir_dir / EXA_VASILIKI), "/entry/121/resource")
    assert e.kind is EventKind.OBSERVATION  # social-history
    assert (e.system, e.code, e.text) == ("LOINC", "72166-2", "Tobacco smoking status")
    assert e.value == "Ex-smoker (finding)"
    assert e.start == datetime(2022, 9, 18, 3, 23, 51, tzinfo=UTC)


def test_condition(fhir_dir: Path) -> None:
    (e,) = _at(_load(fhir_dir / EXA_SHAWN), "/entry/2/resource")
    assert e.kind is EventKind.CONDITION
    assert (e.system, e.code) == ("SNOMED", "160968000")
    assert e.text == "Risk activity involvement (finding)"
    assert e.start == datetime(2009, 12, 8, 20, 27, 33, tzinfo=UTC)
    assert e.precision is TimePrecision.SECOND
    assert e.status is Status.ACTIVE
    assert e.visit_id == "65024ee2-8bde-3cd9-bf36-6ee186f6ac19"


def test_resolved_condition_has_end(fhir_dir: Path) -> None:
    path = fhir_dir / EXA_VASILIKI
    rec = _load(path)
    for i, res in enumerate(_entries(path)):
        if res["resourceType"] == "Condition" and "abatementDateTime" in res:
            (e,) = _at(rec, f"/entry/{i}/resource")
            assert e.end is not None and e.end.date().isoformat() == res["abatementDateTime"][:10]
            assert e.status is Status(res["clinicalStatus"]["coding"][0]["code"])
            break
    else:
        pytest.fail("no abated condition in the file")


def test_medication_codeable_concept_and_reference(fhir_dir: Path) -> None:
    (e,) = _at(_load(fhir_dir / EXA_SHAWN), "/entry/23/resource")
    assert e.kind is EventKind.MEDICATION
    assert (e.system, e.code) == ("RxNorm", "2001499")
    assert e.text == "Vitamin B12 5 MG/ML Injectable Solution"
    assert e.start == datetime(2017, 5, 2, 20, 30, 34, tzinfo=UTC)
    assert e.status is Status.ACTIVE
    # medicationReference urn:uuid:3974c932-... -> the Medication at /entry/166
    (ref,) = _at(_load(fhir_dir / EXA_VASILIKI), "/entry/167/resource")
    assert (ref.system, ref.code) == ("RxNorm", "1535362")
    assert ref.text.startswith("sodium fluoride 0.0272 MG/MG Oral Gel")
    assert ref.status is Status.COMPLETED


def test_medication_administration_context_is_visit(fhir_dir: Path) -> None:
    (e,) = _at(_load(fhir_dir / EXA_SHAWN), "/entry/88/resource")
    assert e.kind is EventKind.MEDICATION and e.code == "1535362"
    assert e.visit_id == "7e43f216-7400-f0f5-2c35-402c88785137"


def test_immunization_and_procedure(fhir_dir: Path) -> None:
    rec = _load(fhir_dir / EXA_SHAWN)
    (imm,) = _at(rec, "/entry/62/resource")
    assert imm.kind is EventKind.IMMUNIZATION
    assert (imm.system, imm.code) == ("CVX", "140")
    assert imm.start == datetime(2023, 1, 10, 19, 10, 24, tzinfo=UTC)
    assert imm.status is Status.COMPLETED
    (proc,) = _at(rec, "/entry/58/resource")
    assert proc.kind is EventKind.PROCEDURE
    assert (proc.system, proc.code) == ("SNOMED", "710824005")
    assert proc.end == datetime(2023, 1, 10, 19, 50, 28, tzinfo=UTC)


def test_allergy(fhir_dir: Path) -> None:
    rec = _load(fhir_dir / SMART_JUDI)
    allergies = [e for e in rec.events if e.kind is EventKind.ALLERGY]
    assert {(e.system, e.code) for e in allergies} == {("SNOMED", "232347008"), ("SNOMED", "300913006")}
    assert all(e.status is Status.ACTIVE for e in allergies)
    assert all(e.start == datetime(2008, 3, 8, 5, 2, 5, tzinfo=UTC) for e in allergies)


def test_encounter_is_visit(fhir_dir: Path) -> None:
    rec = _load(fhir_dir / EXA_SHAWN)
    (enc,) = _at(rec, "/entry/1/resource")
    assert enc.kind is EventKind.ENCOUNTER
    assert enc.visit_id == "65024ee2-8bde-3cd9-bf36-6ee186f6ac19"
    assert (enc.system, enc.code) == ("SNOMED", "410620009")
    assert enc.text.startswith("Well child visit (procedure)") and "ambulatory" in enc.text
    assert enc.end == datetime(2009, 12, 8, 19, 25, 24, tzinfo=UTC)
    # every event that names a visit names one of the file's encounters
    visits = {e.visit_id for e in rec.events if e.kind is EventKind.ENCOUNTER}
    assert {e.visit_id for e in rec.events if e.visit_id} <= visits


def test_note_decoded_from_base64(fhir_dir: Path) -> None:
    rec = _load(fhir_dir / EXA_SHAWN)
    (note,) = _at(rec, "/entry/4/resource")  # the DocumentReference
    assert note.kind is EventKind.NOTE
    assert "Patient comes from a high socioeconomic background." in note.text
    assert note.text.startswith("2009-12-08\n\n# Chief Complaint")
    assert note.note_type == "History and physical note"
    assert note.title == "History and physical note"
    assert note.visit_id == "65024ee2-8bde-3cd9-bf36-6ee186f6ac19"
    assert note.start == datetime(2009, 12, 8, 19, 10, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        EXA_SHAWN,
        EXA_VASILIKI,
        "exafluence_CA_49644ad4-3f2c-ecff-52c0-0bd1022aa1b6.json",
        "exafluence_CA_85629dc4-502e-1d50-1a01-3484ba4d16da.json",
        "exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json",
    ],
)
def test_notes_deduplicated(fhir_dir: Path, name: str) -> None:
    path = fhir_dir / name
    entries = _entries(path)
    docrefs = [i for i, r in enumerate(entries) if r["resourceType"] == "DocumentReference"]
    forms = [i for i, r in enumerate(entries) if r["resourceType"] == "DiagnosticReport" and r.get("presentedForm")]
    assert len(docrefs) == len(forms) > 0  # Synthea writes every note twice
    notes = [e for e in _load(path).events if e.kind is EventKind.NOTE]
    assert len(notes) == len(docrefs)  # before: docrefs + forms; after: one each
    assert {e.source.path for e in notes} == {f"/entry/{i}/resource" for i in docrefs}
    # the DiagnosticReports left no lab/other summary behind either
    assert not any(e.source.path == f"/entry/{i}/resource" for i in forms for e in _load(path).events)


def test_diagnostic_report_summary_does_not_repeat_results(fhir_dir: Path) -> None:
    path = fhir_dir / "smart_Brady_Kuhlman_79ef6ec3-e86a-441b-bb6b-c15936ee8be9.json"
    rec = _load(path)
    (panel,) = _at(rec, "/entry/56/resource")
    assert panel.kind is EventKind.LAB
    assert (panel.system, panel.code) == ("LOINC", "57698-3")
    assert panel.value is None
    assert "Lipid Panel" in panel.text and "Triglycerides" in panel.text


def test_billing_skipped_by_default(fhir_dir: Path) -> None:
    path = fhir_dir / EXA_SHAWN
    n_billing = sum(1 for r in _entries(path) if r["resourceType"] in ("Claim", "ExplanationOfBenefit"))
    assert n_billing == 30
    plain, billed = _load(path), _load(path, include_billing=True)
    assert not any(e.text.startswith(("Claim", "ExplanationOfBenefit")) for e in plain.events)
    extra = [e for e in billed.events if e.text.startswith(("Claim", "ExplanationOfBenefit"))]
    assert len(extra) == n_billing
    assert all(e.kind is EventKind.OTHER for e in extra)
    assert len(billed.events) == len(plain.events) + n_billing
    (claim,) = _at(billed, "/entry/5/resource")
    assert "Well child visit (procedure)" in claim.text and "883.26 USD" in claim.text
    assert claim.visit_id == "65024ee2-8bde-3cd9-bf36-6ee186f6ac19"


def test_parse_fhir_directly(fhir_dir: Path) -> None:
    path = fhir_dir / "exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json"
    resources = [(f"/entry/{i}/resource", r) for i, r in enumerate(_entries(path))]
    rec = parse_fhir(resources, path=path)
    assert rec == _load(path)
    assert len(parse_fhir(resources, path=path, include_billing=True).events) == len(rec.events) + 8


# --------------------------------------------------------------------------- small inputs


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:x", "value": "other"}, {"type": {"coding": [{"code": "MR"}]}, "value": "MRN-7"}],
    "name": [{"use": "usual", "given": ["Al"]}, {"use": "official", "given": ["Alice", "B"], "family": "Smith"}],
    "gender": "female",
    "birthDate": "1980-05",
}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _write_ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n", encoding="utf-8")
    return path


def test_ndjson(tmp_path: Path) -> None:
    resources = [
        PATIENT,
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
            "effectiveDateTime": "2020-01-02",
            "valueQuantity": {"value": 5.5, "code": "mmol/L"},
            "encounter": {"reference": "Encounter/e1"},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "EMER"},
            "period": {"start": "2020-01-02T10:00:00-05:00", "end": "2020-01-02T12:00:00-05:00"},
        },
        {
            "resourceType": "Procedure",
            "status": "not-done",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002", "display": "Appendectomy"}]},
            "performedDateTime": "2019",
        },
    ]
    path = _write_ndjson(tmp_path / "rec.ndjson", resources)
    rec = load_record(path)
    assert rec.patient_id == "MRN-7"
    assert rec.demographics.name == "Alice B Smith"
    assert rec.demographics.birth_date == date(1980, 5, 1)
    assert {e.source.path for e in rec.events} == {"line:2", "line:3", "line:4"}
    (lab,) = [e for e in rec.events if e.kind is EventKind.LAB]
    assert (lab.value, lab.unit, lab.precision, lab.visit_id) == (5.5, "mmol/L", TimePrecision.DAY, "e1")
    (enc,) = [e for e in rec.events if e.kind is EventKind.ENCOUNTER]
    assert enc.start is not None and enc.start.utcoffset().total_seconds() == -5 * 3600  # type: ignore[union-attr]
    assert "emergency" in enc.text
    (proc,) = [e for e in rec.events if e.kind is EventKind.PROCEDURE]
    assert proc.status is Status.NEGATED and proc.precision is TimePrecision.YEAR


def test_single_patient_resource_gives_empty_record(tmp_path: Path) -> None:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(PATIENT), encoding="utf-8")
    rec = load_record(path)
    assert rec.patient_id == "MRN-7"
    assert rec.events == ()
    assert rec.demographics.gender == "female"


def _bundle(tmp_path: Path, resources: list[dict[str, Any]], name: str = "b.json") -> Path:
    path = tmp_path / name
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def test_no_patient_uses_shared_subject(tmp_path: Path) -> None:
    cond = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/abc"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
        "onsetDateTime": "2015-03-04",
        "verificationStatus": {"coding": [{"code": "refuted"}]},
    }
    rec = load_record(_bundle(tmp_path, [cond, dict(cond, onsetDateTime="2016")]))
    assert rec.patient_id == "abc"
    assert [(e.system, e.code, e.status) for e in rec.events] == [("ICD10CM", "E11.9", Status.NEGATED)] * 2
    other = dict(cond, subject={"reference": "Patient/xyz"})
    with pytest.raises(InputError, match="2 different patients"):
        load_record(_bundle(tmp_path, [cond, other], "two.json"))
    rec = load_record(_bundle(tmp_path, [{k: v for k, v in cond.items() if k != "subject"}], "stem.json"))
    assert rec.patient_id == "stem"


def test_two_patients_refused(tmp_path: Path) -> None:
    p2 = dict(PATIENT, id="p2", identifier=[{"type": {"coding": [{"code": "MR"}]}, "value": "MRN-8"}])
    with pytest.raises(InputError, match="2 different Patient"):
        load_record(_bundle(tmp_path, [PATIENT, p2]))
    # the same patient twice is one patient
    assert load_record(_bundle(tmp_path, [PATIENT, PATIENT], "same.json")).patient_id == "MRN-7"


def test_no_patient_and_nothing_clinical_refused(tmp_path: Path) -> None:
    org = {"resourceType": "Organization", "id": "o"}
    claim = {"resourceType": "Claim", "patient": {"reference": "Patient/a"}, "created": "2020-01-01"}
    with pytest.raises(InputError, match="no Patient and no clinical resources"):
        load_record(_bundle(tmp_path, [org, claim]))
    with pytest.raises(InputError, match="no FHIR resources"):
        load_record(_bundle(tmp_path, [], "empty.json"))


def test_note_dedup_prefers_document_reference_and_html(tmp_path: Path) -> None:
    text = "Assessment: stable.\nPlan: follow up."
    dr = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "effectiveDateTime": "2021-06-01T09:00:00Z",
        "presentedForm": [{"contentType": "text/plain", "data": _b64(text)}],
    }
    docref = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "description": "Clinic visit",
        "date": "2021-06-01T09:00:00.500Z",
        "context": {"encounter": [{"reference": "urn:uuid:enc-9"}]},
        "content": [
            {"attachment": {"contentType": "application/pdf", "data": _b64("%PDF")}},
            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": _b64(text)}},
        ],
    }
    html_doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "date": "2021-07-01",
        "content": [
            {"attachment": {"contentType": "text/html", "data": _b64("<p>Line&nbsp;one</p><p>Line <b>two</b></p>")}}
        ],
    }
    rec = load_record(_bundle(tmp_path, [PATIENT, dr, docref, html_doc]))
    notes = [e for e in rec.events if e.kind is EventKind.NOTE]
    assert len(notes) == 2
    first = notes[0]
    assert first.source.path == "/entry/2/resource"  # the DocumentReference, though the DR came first
    assert (first.text, first.title, first.note_type, first.visit_id) == (
        text,
        "Clinic visit",
        "Progress note",
        "enc-9",
    )
    assert notes[1].text == "Line one\n\nLine two"
    # a different time is a different note
    rec = load_record(_bundle(tmp_path, [PATIENT, dict(dr, effectiveDateTime="2021-06-02"), docref], "t.json"))
    assert sum(e.kind is EventKind.NOTE for e in rec.events) == 2


def test_html_to_text() -> None:
    assert html_to_text("<div>a<br/>b<script>x()</script></div>") == "a\nb"


def test_malformed_resources_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "SECRET NOTE BODY"
    bad = [
        {"resourceType": "Condition", "code": "not-a-concept", "onsetDateTime": 5},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": "x", "text": "K"},
            "valueQuantity": {"value": "7"},
        },
        {"resourceType": "Observation", "status": "entered-in-error", "code": {"text": "Glucose"}},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Na"},
            "component": [1, None, {"code": {}}],
        },
        {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/missing"}},
        {"resourceType": "Immunization", "vaccineCode": None, "occurrenceDateTime": "garbage"},
        {"resourceType": "Encounter", "type": "x", "period": [], "class": "AMB"},
        {"resourceType": "DocumentReference", "content": [{"attachment": {"url": "http://example.org/n.txt"}}]},
        {
            "resourceType": "DocumentReference",
            "content": [{"attachment": {"contentType": "text/plain", "data": "!!!"}}],
        },
        {"resourceType": "DocumentReference", "content": "nope"},
        {
            "resourceType": "AllergyIntolerance",
            "code": {"text": "Peanut"},
            "reaction": [{"manifestation": [{"text": "hives"}]}],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Weight"},
            "valueQuantity": {"value": float("nan")},
        },
        {"resourceType": "FamilyMemberHistory", "status": "completed"},
        {
            "resourceType": "DiagnosticReport",
            "code": {"text": "Echo"},
            "conclusion": "Normal.",
            "presentedForm": [{"contentType": "text/plain", "data": _b64(secret)}],
        },
    ]
    path = tmp_path / "bad.ndjson"
    path.write_text("\n".join(json.dumps(r, allow_nan=True) for r in [PATIENT, *bad]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.DEBUG, logger="ragehr.ehr.fhir"):
        rec = load_record(path)
    assert secret not in caplog.text
    assert "FamilyMemberHistory" in caplog.text
    by_line = {e.source.path: e for e in rec.events}
    assert "line:4" not in by_line  # entered-in-error
    assert (by_line["line:3"].text, by_line["line:3"].value) == ("K", None)  # "7" is no number
    assert by_line["line:5"].text == "Na"  # a panel without usable components is still the panel
    assert by_line["line:12"].text == "Peanut (reaction: hives)"
    assert by_line["line:13"].value is None  # NaN dropped
    assert by_line["line:15"].kind is EventKind.NOTE and by_line["line:15"].text == secret
    assert by_line["line:15"].start is None
    for line in ("line:6", "line:7", "line:9", "line:10", "line:11", "line:14"):
        assert line not in by_line, line


def test_observation_value_kinds(tmp_path: Path) -> None:
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2020-01-01"}
    values = [
        {"valueString": "positive"},
        {"valueBoolean": True},
        {"valueInteger": 3},
        {"valueQuantity": {"value": 5, "comparator": "<", "unit": "mg"}},
        {"valueDateTime": "2019-12-31"},
        {"valueRange": {"low": {"value": 1, "unit": "mg"}, "high": {"value": 2, "unit": "mg"}}},
        {"component": [{"code": {"text": "c"}, "valueInteger": 1}], "valueString": "own"},
        {"status": "cancelled", "valueString": "gone"},
    ]
    rec = load_record(_bundle(tmp_path, [PATIENT, *[dict(base, **v) for v in values]]))
    got = [(e.source.path, e.value, e.unit) for e in rec.events]
    assert got == [
        ("/entry/1/resource", "positive", None),
        ("/entry/2/resource", "true", None),
        ("/entry/3/resource", 3, None),
        ("/entry/4/resource", "<5", "mg"),
        ("/entry/5/resource", "2019-12-31", None),
        ("/entry/6/resource", "1 mg - 2 mg", None),
        ("/entry/7/resource", "own", None),
        ("/entry/7/resource/component/0", 1, None),
    ]


# --------------------------------------------------------------------------- robustness

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


_BASE: list[dict[str, Any]] = []


def _one_of_each(path: Path) -> list[dict[str, Any]]:
    """One resource of each type in the file (and a component panel), read once."""
    if not _BASE:
        seen: dict[str, dict[str, Any]] = {}
        for r in _entries(path):
            seen.setdefault(r["resourceType"], r)
            if r["resourceType"] == "Observation" and "component" in r:
                seen["Observation-panel"] = r
        _BASE.extend(seen.values())
    return _BASE


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: _mutate(obj[head], rest, value)}
    return [_mutate(v, rest, value) if i == head else v for i, v in enumerate(obj)]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_resources_never_crash(shared_data: Path, data: st.DataObject) -> None:
    base = _one_of_each(shared_data / "synthea" / "fhir" / EXA_SHAWN)
    resources = []
    for i, res in enumerate(base):
        for _ in range(data.draw(st.integers(0, 3))):
            paths = [p for p in _paths(res) if p[0] != "resourceType"]
            if paths:
                res = _mutate(res, data.draw(st.sampled_from(paths)), data.draw(_JSON))
        resources.append((f"/entry/{i}/resource", res))
    try:
        rec = parse_fhir(resources, path=Path("fuzz.json"), include_billing=data.draw(st.booleans()))
    except InputError:
        return
    assert all(isinstance(e, Event) for e in rec.events)
