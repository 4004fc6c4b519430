"""The same Synthea patients as C-CDA and as FHIR: the two parsers must agree."""

from __future__ import annotations

import re

import pytest

from ragehr.ehr import load_record
from ragehr.types import EventKind

UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def _pairs(shared_data):
    ccda = {UUID.search(p.name).group(1): p for p in (shared_data / "synthea" / "ccda").glob("*.xml")}
    fhir = {UUID.search(p.name).group(1): p for p in (shared_data / "synthea" / "fhir").glob("exafluence_*.json")}
    return [(ccda[u], fhir[u]) for u in sorted(ccda.keys() & fhir.keys())]


def test_five_patients_in_both_formats(shared_data):
    assert len(_pairs(shared_data)) == 5


def test_condition_codes_agree(shared_data):
    for ccda_path, fhir_path in _pairs(shared_data):
        a, b = load_record(ccda_path), load_record(fhir_path)
        assert a.patient_id == b.patient_id
        codes_a = {(e.system, e.code) for e in a.events if e.kind is EventKind.CONDITION}
        codes_b = {(e.system, e.code) for e in b.events if e.kind is EventKind.CONDITION}
        assert codes_a and codes_a == codes_b, ccda_path.name


@pytest.mark.parametrize("kind", [EventKind.IMMUNIZATION])
def test_immunization_codes_agree(shared_data, kind):
    for ccda_path, fhir_path in _pairs(shared_data):
        a, b = load_record(ccda_path), load_record(fhir_path)
        ca = {(e.system, e.code) for e in a.events if e.kind is kind}
        cb = {(e.system, e.code) for e in b.events if e.kind is kind}
        assert ca == cb, ccda_path.name


def test_every_shared_file_inspects_and_converts(shared_data):
    """`ragehr inspect` and `convert --to jsonl` succeed on every record file in shared data."""
    from typer.testing import CliRunner

    from ragehr.cli import app

    runner = CliRunner()
    files = [
        p
        for p in sorted(shared_data.rglob("*"))
        if p.is_file() and p.suffix in (".xml", ".json") and "LICENSE" not in p.name
    ]
    assert len(files) >= 45
    for p in files:
        r = runner.invoke(app, ["inspect", "--json", str(p)])
        assert r.exit_code == 0, (p, r.output)
        r = runner.invoke(app, ["convert", str(p), "--to", "jsonl"])
        assert r.exit_code == 0 and r.output.strip(), p
