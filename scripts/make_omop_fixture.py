"""Build tests/fixtures/omop/ (OMOP CDM v5.4 CSV tables) from shared Synthea FHIR bundles.

    python scripts/make_omop_fixture.py [--shared ../shared/data] [--out tests/fixtures/omop]

An ETL written for the fixture only, straight from the bundles' JSON: it does not use ragehr's
FHIR parser, so the test that reads the same patient through both (tests/ehr/test_omop.py) is a
cross-check of two independent readings. Concept ids are synthetic (OMOP's local range,
2,000,000,000 and up, a hash of vocabulary and code), except OMOP's own standard ids for
gender (8507, 8532) and visit class (9201, 9202, 9203); no Athena vocabulary is needed.

Mapping: Patient -> person; Encounter -> visit_occurrence; Condition -> condition_occurrence;
MedicationRequest / MedicationAdministration (code inline or via a Medication) and Immunization
(CVX) -> drug_exposure; Procedure -> procedure_occurrence; Observation with a number (a panel's
components one row each) -> measurement; other Observations -> observation;
DocumentReference text/plain notes -> note. Observations of category laboratory or vital-signs
go to measurement, the others (surveys, social history) to observation, as the OMOP domains
have it. Times are written in UTC without an offset.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

PATIENTS = (
    "synthea/fhir/exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json",
    "synthea/fhir/exafluence_CA_8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96.json",
)
VOCAB = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/cvx": "CVX",
}
VITAL_CATEGORY = "vital-signs"

COLUMNS = {
    "person": [
        "person_id",
        "gender_concept_id",
        "year_of_birth",
        "month_of_birth",
        "day_of_birth",
        "birth_datetime",
        "race_concept_id",
        "ethnicity_concept_id",
        "location_id",
        "provider_id",
        "care_site_id",
        "person_source_value",
        "gender_source_value",
        "gender_source_concept_id",
        "race_source_value",
        "race_source_concept_id",
        "ethnicity_source_value",
        "ethnicity_source_concept_id",
    ],
    "visit_occurrence": [
        "visit_occurrence_id",
        "person_id",
        "visit_concept_id",
        "visit_start_date",
        "visit_start_datetime",
        "visit_end_date",
        "visit_end_datetime",
        "visit_type_concept_id",
        "provider_id",
        "care_site_id",
        "visit_source_value",
        "visit_source_concept_id",
        "admitted_from_concept_id",
        "admitted_from_source_value",
        "discharged_to_concept_id",
        "discharged_to_source_value",
        "preceding_visit_occurrence_id",
    ],
    "condition_occurrence": [
        "condition_occurrence_id",
        "person_id",
        "condition_concept_id",
        "condition_start_date",
        "condition_start_datetime",
        "condition_end_date",
        "condition_end_datetime",
        "condition_type_concept_id",
        "condition_status_concept_id",
        "stop_reason",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "condition_source_value",
        "condition_source_concept_id",
        "condition_status_source_value",
    ],
    "drug_exposure": [
        "drug_exposure_id",
        "person_id",
        "drug_concept_id",
        "drug_exposure_start_date",
        "drug_exposure_start_datetime",
        "drug_exposure_end_date",
        "drug_exposure_end_datetime",
        "verbatim_end_date",
        "drug_type_concept_id",
        "stop_reason",
        "refills",
        "quantity",
        "days_supply",
        "sig",
        "route_concept_id",
        "lot_number",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "drug_source_value",
        "drug_source_concept_id",
        "route_source_value",
        "dose_unit_source_value",
    ],
    "procedure_occurrence": [
        "procedure_occurrence_id",
        "person_id",
        "procedure_concept_id",
        "procedure_date",
        "procedure_datetime",
        "procedure_end_date",
        "procedure_end_datetime",
        "procedure_type_concept_id",
        "modifier_concept_id",
        "quantity",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "procedure_source_value",
        "procedure_source_concept_id",
        "modifier_source_value",
    ],
    "measurement": [
        "measurement_id",
        "person_id",
        "measurement_concept_id",
        "measurement_date",
        "measurement_datetime",
        "measurement_time",
        "measurement_type_concept_id",
        "operator_concept_id",
        "value_as_number",
        "value_as_concept_id",
        "unit_concept_id",
        "range_low",
        "range_high",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "measurement_source_value",
        "measurement_source_concept_id",
        "unit_source_value",
        "unit_source_concept_id",
        "value_source_value",
        "measurement_event_id",
        "meas_event_field_concept_id",
    ],
    "observation": [
        "observation_id",
        "person_id",
        "observation_concept_id",
        "observation_date",
        "observation_datetime",
        "observation_type_concept_id",
        "value_as_number",
        "value_as_string",
        "value_as_concept_id",
        "qualifier_concept_id",
        "unit_concept_id",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "observation_source_value",
        "observation_source_concept_id",
        "unit_source_value",
        "qualifier_source_value",
        "value_source_value",
        "observation_event_id",
        "obs_event_field_concept_id",
    ],
    "note": [
        "note_id",
        "person_id",
        "note_date",
        "note_datetime",
        "note_type_concept_id",
        "note_class_concept_id",
        "note_title",
        "note_text",
        "encoding_concept_id",
        "language_concept_id",
        "provider_id",
        "visit_occurrence_id",
        "visit_detail_id",
        "note_source_value",
        "note_event_id",
        "note_event_field_concept_id",
    ],
    "concept": [
        "concept_id",
        "concept_name",
        "domain_id",
        "vocabulary_id",
        "concept_class_id",
        "standard_concept",
        "concept_code",
        "valid_start_date",
        "valid_end_date",
        "invalid_reason",
    ],
}
EHR_TYPE = 32817  # OMOP type concept "EHR"


def concept_id(vocab: str, code: str) -> int:
    h = int(hashlib.sha256(f"{vocab}|{code}".encode()).hexdigest()[:8], 16)
    return 2_000_000_000 + h % 100_000_000


def utc(value: str | None) -> tuple[str, str]:
    """(date, datetime) in UTC, or ("", "")."""
    if not value:
        return "", ""
    if len(value) == 10:
        return value, ""
    t = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return t.date().isoformat(), t.strftime("%Y-%m-%d %H:%M:%S")


def ref_id(ref: dict | None) -> str | None:
    s = (ref or {}).get("reference") or ""
    return s.split(":")[-1].split("/")[-1] or None


class Etl:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {t: [] for t in COLUMNS}
        self.concepts: dict[int, dict] = {}
        self.visits: dict[str, int] = {}
        for cid, name, domain, vocab in (
            (8507, "MALE", "Gender", "Gender"),
            (8532, "FEMALE", "Gender", "Gender"),
            (9201, "Inpatient Visit", "Visit", "Visit"),
            (9202, "Outpatient Visit", "Visit", "Visit"),
            (9203, "Emergency Room Visit", "Visit", "Visit"),
            (EHR_TYPE, "EHR", "Type Concept", "Type Concept"),
        ):
            self.concepts[cid] = {
                "concept_id": cid,
                "concept_name": name,
                "domain_id": domain,
                "vocabulary_id": vocab,
                "concept_class_id": domain,
                "standard_concept": "S",
                "concept_code": name,
                "valid_start_date": "1970-01-01",
                "valid_end_date": "2099-12-31",
                "invalid_reason": "",
            }

    def concept(self, cc: dict | None, domain: str) -> tuple[int, str, str]:
        """(concept id, name, source value) of a CodeableConcept's first known coding."""
        for c in (cc or {}).get("coding", []):
            vocab = VOCAB.get(c.get("system", ""))
            if vocab and c.get("code"):
                cid = concept_id(vocab, c["code"])
                name = (cc or {}).get("text") or c.get("display") or c["code"]
                self.concepts.setdefault(
                    cid,
                    {
                        "concept_id": cid,
                        "concept_name": name,
                        "domain_id": domain,
                        "vocabulary_id": vocab,
                        "concept_class_id": domain,
                        "standard_concept": "S",
                        "concept_code": c["code"],
                        "valid_start_date": "1970-01-01",
                        "valid_end_date": "2099-12-31",
                        "invalid_reason": "",
                    },
                )
                return cid, name, c["code"]
        return 0, "", (cc or {}).get("text", "")

    def add(self, table: str, **row) -> dict:
        row[f"{table}_id"] = len(self.rows[table]) + 1
        self.rows[table].append(row)
        return row

    def patient(self, bundle: dict, person_id: int) -> None:
        resources = [e["resource"] for e in bundle["entry"]]
        meds = {r["id"]: r for r in resources if r["resourceType"] == "Medication"}
        for r in resources:
            if r["resourceType"] == "Encounter":
                self.visits[r["id"]] = len(self.visits) + 1
        for r in resources:
            t = r["resourceType"]
            visit = self.visits.get(ref_id(r.get("encounter") or r.get("context")) or "", "")
            if t == "Patient":
                y, m, d = (int(x) for x in r["birthDate"].split("-"))
                self.rows["person"].append(
                    {
                        "person_id": person_id,
                        "gender_concept_id": {"male": 8507, "female": 8532}.get(r.get("gender"), 0),
                        "year_of_birth": y,
                        "month_of_birth": m,
                        "day_of_birth": d,
                        "birth_datetime": "",
                        "race_concept_id": 0,
                        "ethnicity_concept_id": 0,
                        "person_source_value": r["id"],
                        "gender_source_value": r.get("gender", ""),
                    }
                )
            elif t == "Encounter":
                klass = (r.get("class") or {}).get("code", "")
                s_date, s_dt = utc(r["period"].get("start"))
                e_date, e_dt = utc(r["period"].get("end"))
                self.rows["visit_occurrence"].append(
                    {
                        "visit_occurrence_id": self.visits[r["id"]],
                        "person_id": person_id,
                        "visit_concept_id": {"IMP": 9201, "AMB": 9202, "EMER": 9203}.get(klass, 0),
                        "visit_start_date": s_date,
                        "visit_start_datetime": s_dt,
                        "visit_end_date": e_date,
                        "visit_end_datetime": e_dt,
                        "visit_type_concept_id": EHR_TYPE,
                        "visit_source_value": klass,
                    }
                )
            elif t == "Condition":
                cid, _, src = self.concept(r.get("code"), "Condition")
                s_date, s_dt = utc(r.get("onsetDateTime"))
                e_date, e_dt = utc(r.get("abatementDateTime"))
                self.add(
                    "condition_occurrence",
                    person_id=person_id,
                    condition_concept_id=cid,
                    condition_start_date=s_date,
                    condition_start_datetime=s_dt,
                    condition_end_date=e_date,
                    condition_end_datetime=e_dt,
                    condition_type_concept_id=EHR_TYPE,
                    visit_occurrence_id=visit,
                    condition_source_value=src,
                )
            elif t in ("MedicationRequest", "MedicationAdministration", "Immunization"):
                if t == "Immunization":
                    cc, when = r.get("vaccineCode"), r.get("occurrenceDateTime")
                else:
                    cc = r.get("medicationCodeableConcept") or meds.get(ref_id(r.get("medicationReference")), {}).get(
                        "code"
                    )
                    when = r.get("authoredOn") or r.get("effectiveDateTime")
                cid, _, src = self.concept(cc, "Drug")
                s_date, s_dt = utc(when)
                self.add(
                    "drug_exposure",
                    person_id=person_id,
                    drug_concept_id=cid,
                    drug_exposure_start_date=s_date,
                    drug_exposure_start_datetime=s_dt,
                    drug_type_concept_id=EHR_TYPE,
                    visit_occurrence_id=visit,
                    drug_source_value=src,
                )
            elif t == "Procedure":
                cid, _, src = self.concept(r.get("code"), "Procedure")
                p = r.get("performedPeriod") or {}
                s_date, s_dt = utc(r.get("performedDateTime") or p.get("start"))
                e_date, e_dt = utc(p.get("end"))
                self.add(
                    "procedure_occurrence",
                    person_id=person_id,
                    procedure_concept_id=cid,
                    procedure_date=s_date,
                    procedure_datetime=s_dt,
                    procedure_end_date=e_date,
                    procedure_end_datetime=e_dt,
                    procedure_type_concept_id=EHR_TYPE,
                    visit_occurrence_id=visit,
                    procedure_source_value=src,
                )
            elif t == "Observation":
                s_date, s_dt = utc(r.get("effectiveDateTime"))
                parts = [r] if ("valueQuantity" in r or "valueCodeableConcept" in r or "valueString" in r) else []
                parts += r.get("component", [])
                cats = {c.get("code") for cat in r.get("category", []) for c in cat.get("coding", [])}
                domain = "Measurement" if cats & {"laboratory", VITAL_CATEGORY} else "Observation"
                for part in parts:
                    cid, _, src = self.concept(part.get("code"), domain)
                    q = part.get("valueQuantity")
                    if domain == "Observation" and q is not None and "value" in q:
                        self.add(
                            "observation",
                            person_id=person_id,
                            observation_concept_id=cid,
                            observation_date=s_date,
                            observation_datetime=s_dt,
                            observation_type_concept_id=EHR_TYPE,
                            value_as_number=q["value"],
                            visit_occurrence_id=visit,
                            observation_source_value=src,
                            unit_source_value=q.get("unit") or q.get("code", ""),
                        )
                    elif q is not None and "value" in q:
                        self.add(
                            "measurement",
                            person_id=person_id,
                            measurement_concept_id=cid,
                            measurement_date=s_date,
                            measurement_datetime=s_dt,
                            measurement_type_concept_id=EHR_TYPE,
                            value_as_number=q["value"],
                            visit_occurrence_id=visit,
                            measurement_source_value=src,
                            unit_source_value=q.get("unit") or q.get("code", ""),
                        )
                    else:
                        value = (
                            (part.get("valueCodeableConcept") or {}).get("text")
                            or next(
                                (c.get("display") for c in (part.get("valueCodeableConcept") or {}).get("coding", [])),
                                None,
                            )
                            or part.get("valueString", "")
                        )
                        self.add(
                            "observation",
                            person_id=person_id,
                            observation_concept_id=cid,
                            observation_date=s_date,
                            observation_datetime=s_dt,
                            observation_type_concept_id=EHR_TYPE,
                            value_as_string=value,
                            visit_occurrence_id=visit,
                            observation_source_value=src,
                        )
            elif t == "DocumentReference":
                att = next(
                    (
                        c["attachment"]
                        for c in r.get("content", [])
                        if c.get("attachment", {}).get("contentType", "").startswith("text/plain")
                    ),
                    None,
                )
                if not att or "data" not in att:
                    continue
                text = base64.b64decode(att["data"]).decode("utf-8")
                start = ((r.get("context") or {}).get("period") or {}).get("start") or r.get("date")
                s_date, s_dt = utc(start)
                cid, name, _ = self.concept(r.get("type"), "Note")
                self.add(
                    "note",
                    person_id=person_id,
                    note_date=s_date,
                    note_datetime=s_dt,
                    note_type_concept_id=EHR_TYPE,
                    note_class_concept_id=cid,
                    note_title=name,
                    note_text=text,
                    encoding_concept_id=32678,
                    language_concept_id=4180186,
                    visit_occurrence_id=visit,
                    note_source_value=r["id"],
                )

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.rows["concept"] = [self.concepts[k] for k in sorted(self.concepts)]
        for table, cols in COLUMNS.items():
            with open(out / f"{table}.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=cols, extrasaction="raise", lineterminator="\n")
                w.writeheader()
                for row in self.rows[table]:
                    w.writerow({c: row.get(c, "") for c in cols})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--shared", type=Path, default=here.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=here / "tests" / "fixtures" / "omop")
    args = ap.parse_args()
    etl = Etl()
    for i, rel in enumerate(PATIENTS, start=1):
        etl.patient(json.loads((args.shared / rel).read_text(encoding="utf-8")), i)
    etl.write(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{t} {len(r)}" for t, r in etl.rows.items()))


if __name__ == "__main__":
    main()
