"""FHIR Bulk Data exports: grouping by patient, streaming reads, and indexing one patient at a time.

Two exports: the shared 10-patient sample (smart-on-fhir, 13 patients, no Medication file),
and one written here from two Synthea bundles (urn:uuid references, a Medication file that
MedicationRequests reference, a manifest), whose records must equal the bundles' own.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragehr.cli import app
from ragehr.config import IndexConfig
from ragehr.ehr import load_record
from ragehr.ehr.bulk import BulkExport, is_bulk_export
from ragehr.ehr.cohort import detect_cohort, split_cohorts
from ragehr.errors import InputError
from ragehr.index import store
from ragehr.index.build import build_indexes
from ragehr.types import EventKind

CFG = IndexConfig(embedder="hashing")
BUNDLES = (
    "synthea/fhir/exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json",
    "synthea/fhir/exafluence_CA_8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96.json",
)


@pytest.fixture(scope="session")
def sample(shared_data) -> Path:
    return shared_data / "fhir-bulk" / "10-patients"


def _export_from_bundles(bundles: list[Path], out: Path, manifest: bool = True) -> Path:
    """Split bundles into one NDJSON file per resource type, patients interleaved line by line."""
    by_type: dict[str, list[dict]] = {}
    per_bundle = [[e["resource"] for e in json.loads(b.read_text())["entry"]] for b in bundles]
    longest = max(map(len, per_bundle))
    for i in range(longest):
        for resources in per_bundle:
            if i < len(resources):
                r = resources[i]
                by_type.setdefault(r["resourceType"], []).append(r)
    out.mkdir(parents=True, exist_ok=True)
    for t, rs in by_type.items():
        (out / f"{t}.000.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rs), encoding="utf-8")
    if manifest:
        (out / "export-manifest.json").write_text(
            json.dumps(
                {
                    "transactionTime": "2026-01-01T00:00:00Z",
                    "request": "https://example.org/fhir/$export",
                    "requiresAccessToken": True,
                    "error": [],
                    "output": [{"type": t, "url": f"https://example.org/files/{t}.000.ndjson"} for t in by_type],
                }
            )
        )
    return out


@pytest.fixture()
def two(shared_data, tmp_path) -> Path:
    return _export_from_bundles([shared_data / b for b in BUNDLES], tmp_path / "export")


def test_sample_is_recognised_and_grouped_like_an_independent_count(sample):
    assert is_bulk_export(sample) and detect_cohort(sample).format == "fhir-bulk"
    scan = BulkExport(sample).scan()
    assert scan.problems == []
    # Independent count: resources per patient id from the raw lines.
    expected: Counter[str] = Counter()
    for f in sample.glob("*.ndjson"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            ref = (r.get("subject") or r.get("patient") or {}).get("reference", "")
            if r["resourceType"] == "Patient":
                expected[r["id"]] += 1
            elif ref.startswith("Patient/"):
                expected[ref.split("/", 1)[1]] += 1
    assert {s.patient_id: s.n_items for s in scan.slices} == dict(expected)
    assert len(scan.slices) == 13
    assert scan.stats["unlinked:Practitioner"] == 43 and scan.stats["unlinked:Location"] == 44


def test_sample_patient_events_point_at_their_own_lines(sample):
    scan = BulkExport(sample).scan()
    sl = next(s for s in scan.slices if s.patient_id.startswith("63ee2253"))
    rec = sl.load()
    assert rec.patient_id == sl.patient_id and rec.demographics.birth_date is not None
    assert rec.counts() == {
        "note": 15,
        "condition": 3,
        "medication": 2,
        "procedure": 8,
        "immunization": 17,
        "encounter": 15,
    }
    for e in rec.events:
        path, line = e.source.file, int(e.source.path.split(":")[1].split("/")[0])
        raw = json.loads(Path(path).read_text().splitlines()[line - 1])
        ref = (raw.get("subject") or raw.get("patient"))["reference"]
        assert ref == f"Patient/{sl.patient_id}"


def test_export_reads_exactly_like_its_bundles(shared_data, two):
    scan = BulkExport(two).scan()
    assert scan.problems == [] and len(scan.slices) == 2
    assert scan.stats["medications"] == 2 and scan.stats["unlinked:Provenance"] == 2
    for b in BUNDLES:
        want = load_record(shared_data / b)
        [sl] = [s for s in scan.slices if s.patient_id == want.patient_id]
        got = sl.load()
        assert got.demographics == want.demographics
        assert sorted(map(repr, (e.content_key() for e in got.events))) == sorted(
            map(repr, (e.content_key() for e in want.events))
        )
        assert all(e.source.file.endswith(".ndjson") and e.source.path.startswith("line:") for e in got.events)

    # The two MedicationRequests that reference the Medication file are named from it: without
    # that file only the two MedicationAdministrations (inline code) name the drug.
    def fluoride(folder: Path) -> int:
        return sum(
            e.text.startswith("sodium fluoride")
            for s in BulkExport(folder).scan().slices
            for e in s.load().events
            if e.kind is EventKind.MEDICATION
        )

    assert fluoride(two) == 4
    (two / "Medication.000.ndjson").unlink()
    (two / "export-manifest.json").unlink()
    assert fluoride(two) == 2


def test_contained_and_missing_medications(two):
    f = two / "MedicationRequest.000.ndjson"
    lines = f.read_text().splitlines()
    r = json.loads(lines[0])
    r.pop("medicationCodeableConcept", None)
    r["contained"] = [{"resourceType": "Medication", "id": "m1", "code": {"text": "Contained drug 5 MG"}}]
    r["medicationReference"] = {"reference": "#m1"}
    lines[0] = json.dumps(r)
    r2 = json.loads(lines[1])
    r2.pop("medicationCodeableConcept", None)
    r2["medicationReference"] = {"reference": "Medication/not-there", "display": "Shown name"}
    lines[1] = json.dumps(r2)
    f.write_text("\n".join(lines) + "\n")
    texts = [e.text for s in BulkExport(two).scan().slices for e in s.load().events if e.kind is EventKind.MEDICATION]
    assert any(t.startswith("Contained drug 5 MG") for t in texts)
    assert any(t.startswith("Shown name") for t in texts)


def test_no_manifest_missing_file_and_bad_lines_are_reported_not_fatal(shared_data, tmp_path):
    plain = _export_from_bundles([shared_data / b for b in BUNDLES], tmp_path / "plain", manifest=False)
    assert is_bulk_export(plain) and len(BulkExport(plain).scan().slices) == 2
    (plain / "Condition.000.ndjson").open("a").write("{not json\n[1, 2]\n")
    m = _export_from_bundles([shared_data / b for b in BUNDLES], tmp_path / "m")
    (m / "Procedure.000.ndjson").unlink()
    for folder, needle in ((plain, "line"), (m, "Procedure.000.ndjson")):
        scan = BulkExport(folder).scan()
        assert len(scan.slices) == 2 and any(needle in p for p in scan.problems), scan.problems


def test_per_patient_files_are_not_an_export(shared_data, tmp_path):
    # One patient per NDJSON file is the old layout: each file its own record, not a cohort.
    d = tmp_path / "perpatient"
    d.mkdir()
    for i, b in enumerate(BUNDLES):
        rs = [e["resource"] for e in json.loads((shared_data / b).read_text())["entry"]]
        (d / f"p{i}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rs))
    assert not is_bulk_export(d)
    cohorts, rest = split_cohorts([d])
    assert cohorts == [] and rest == [d]


def test_index_rerun_change_and_selection(two, tmp_path):
    idx = tmp_path / "idx"
    first = build_indexes([two], idx, CFG)
    assert sorted(s.status for s in first) == ["built", "built"]
    again = build_indexes([two], idx, CFG)
    assert [s.status for s in again] == ["unchanged", "unchanged"]
    # One patient gains a condition: only that patient is rebuilt.
    cond = two / "Condition.000.ndjson"
    r = json.loads(cond.read_text().splitlines()[0])
    pid_ref = r["subject"]["reference"].split(":")[-1]
    r["id"] = "new-condition"
    r["code"] = {"text": "Brand new finding"}
    cond.open("a").write(json.dumps(r) + "\n")
    third = {s.patient_id: s for s in build_indexes([two], idx, CFG)}
    assert [s.status for s in third.values()].count("built") == 1
    changed = next(p for p, s in third.items() if s.status == "built")
    assert changed == pid_ref
    assert "Brand new finding" in (store.patient_dir(idx, changed) / "record.json").read_text()
    # Selection: by id; an unknown id is a failure line, the rest is still done.
    sel = build_indexes([two], tmp_path / "sel", CFG, patients=[changed, "nobody"])
    assert {(s.patient_id, s.status) for s in sel} == {(changed, "built"), ("nobody", "failed")}


def test_workers_build_the_same_indexes(two, tmp_path):
    one = build_indexes([two], tmp_path / "w1", CFG, workers=1)
    many = build_indexes([two], tmp_path / "w2", CFG, workers=2)
    assert sorted((s.patient_id, s.n_events, s.n_chunks) for s in one) == sorted(
        (s.patient_id, s.n_events, s.n_chunks) for s in many
    )
    for s in one:
        a = json.loads((tmp_path / "w1" / Path(s.index_path).name / "record.json").read_text())
        b = json.loads((tmp_path / "w2" / Path(s.index_path).name / "record.json").read_text())
        assert a["events"] == b["events"]


def test_a_patient_that_fails_does_not_stop_the_others(two, tmp_path):
    scan = BulkExport(two).scan()
    victim = scan.slices[0]
    # Corrupt one of the victim's lines after it was scanned: its load fails, the other builds.
    fi, (offs, _) = next(iter(victim.data["pos"].items()))
    path = Path(victim.data["files"][fi])
    data = bytearray(path.read_bytes())
    data[offs[0]] = ord("#")
    path.write_bytes(bytes(data))
    with pytest.raises(InputError):
        victim.load()
    res = build_indexes([two], tmp_path / "idx", CFG)
    statuses = Counter(s.status for s in res)
    assert statuses["built"] >= 1 and statuses["failed"] >= 1


def test_cli_inspect_json_and_index_patients_file(sample, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", str(sample), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 13 and all(row["first_time"] and row["n_events"] > 0 for row in rows)
    assert sum(row["n_events"] for row in rows) == sum(
        sum(s.load().counts().values()) for s in BulkExport(sample).scan().slices
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("index:\n  embedder: hashing\n")
    ids = sorted(row["patient_id"] for row in rows)[:2]
    pf = tmp_path / "ids.txt"
    pf.write_text("# two patients\n" + "\n".join(ids) + "\n")
    r = runner.invoke(
        app,
        ["index", str(sample), "--index-dir", str(tmp_path / "i"), "--config", str(cfg), "--patients-file", str(pf)],
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "i").iterdir() if not p.name.startswith(".")) == ids


def test_a_folder_holding_an_export_indexes_it_as_one(sample, tmp_path):
    outer = tmp_path / "outer"
    shutil.copytree(sample, outer / "export")
    cohorts, rest = split_cohorts([outer])
    assert [c.folder for c in cohorts] == [outer / "export"] and rest == [outer]
