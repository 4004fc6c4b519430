"""Concept resolution against a record's own names and codes (vocabularies come on top)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ragehr.chunking import concept_key as chunk_concept_key
from ragehr.ehr.codes import concept_key
from ragehr.retrieval.concepts import EXPANDERS, ConceptMatch, RecordLexicon, match_names, resolve, words
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator

T0 = datetime(2020, 1, 6, 8, 0, tzinfo=UTC)


def _ev(
    i: int,
    kind: EventKind,
    text: str,
    code: str | None = None,
    system: str | None = None,
    value=None,
    unit=None,
    days=0,
) -> Event:
    return Event(
        kind=kind,
        start=T0 + timedelta(days=days),
        system=system,
        code=code,
        text=text,
        value=value,
        unit=unit,
        source=SourceLocator(file="f", path=f"e{i}"),
    )


def _record() -> PatientRecord:
    evs = [
        _ev(1, EventKind.LAB, "Potassium [Moles/volume] in Blood", "6298-4", "LOINC", 4.1, "mmol/L", 0),
        _ev(2, EventKind.LAB, "Potassium [Moles/volume] in Blood", "6298-4", "LOINC", 4.4, "mmol/L", 30),
        _ev(3, EventKind.LAB, "Cholesterol [Mass/volume] in Serum or Plasma", "2093-3", "LOINC", 190, "mg/dL", 1),
        _ev(4, EventKind.LAB, "Low Density Lipoprotein Cholesterol", "18262-6", "LOINC", 110, "mg/dL", 1),
        _ev(5, EventKind.LAB, "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "2085-9", "LOINC", 50, "mg/dL", 1),
        _ev(6, EventKind.VITAL, "Systolic Blood Pressure", "8480-6", "LOINC", 131, "mm[Hg]", 2),
        _ev(7, EventKind.CONDITION, "Essential hypertension (disorder)", "59621000", "SNOMED", days=3),
        _ev(
            8,
            EventKind.MEDICATION,
            "metoprolol succinate 25 MG Extended Release Oral Tablet",
            "866412",
            "RxNorm",
            days=4,
        ),
        _ev(9, EventKind.NOTE, "Potassium was normal.", days=5),
    ]
    return PatientRecord(patient_id="p", format="medalign-xml", events=tuple(evs))


def test_concept_key_is_one_function_for_chunking_and_concepts():
    e = _record().events[0]
    assert concept_key(e) == chunk_concept_key(e) == "LOINC 6298-4"


def test_lexicon_groups_events_by_concept_oldest_first_and_skips_notes():
    lex = RecordLexicon.of(_record())
    assert {c.key for c in lex.concepts} == {
        "LOINC 6298-4",
        "LOINC 2093-3",
        "LOINC 18262-6",
        "LOINC 2085-9",
        "LOINC 8480-6",
        "SNOMED 59621000",
        "RxNorm 866412",
    }
    k = lex.get("LOINC 6298-4")
    assert k is not None and k.n_events == 2 and k.kind is EventKind.LAB
    assert [e.value for e in lex.events("LOINC 6298-4")] == [4.1, 4.4]
    assert k.label() == "Potassium [Moles/volume] in Blood (LOINC 6298-4)"


def test_own_names_match_and_ties_keep_every_analyte():
    lex = RecordLexicon.of(_record())
    assert [m.concept.key for m in match_names("potassium", lex)] == ["LOINC 6298-4"]
    chol = {m.concept.key for m in match_names("cholesterol", lex)}
    assert chol == {"LOINC 2093-3", "LOINC 18262-6", "LOINC 2085-9"}  # several analytes: all
    assert [m.concept.key for m in match_names("HDL cholesterol", lex)] == ["LOINC 2085-9"]
    assert [m.concept.key for m in match_names("systolic blood pressure", lex)] == ["LOINC 8480-6"]
    assert match_names("occupation", lex) == []


def test_codes_match_and_kinds_filter():
    lex = RecordLexicon.of(_record())
    [m] = match_names("6298-4", lex)
    assert m.via == "code" and m.concept.key == "LOINC 6298-4"
    assert match_names("potassium", lex, kinds=[EventKind.MEDICATION]) == []


def test_resolve_consults_expanders_only_for_concepts_the_record_holds():
    lex = RecordLexicon.of(_record())

    def toy(text: str, lexicon: RecordLexicon) -> list[ConceptMatch]:
        out = []
        if "k" in words(text):
            out += [ConceptMatch(c, "K", "abbreviation", 1.0) for c in lexicon.find_name("potassium")]
        if "keratometry" in text:
            out += [ConceptMatch(c, "K", "abbreviation", 1.0) for c in lexicon.find_name("keratometry")]
        return out

    EXPANDERS.append(toy)
    try:
        r = resolve("K", lex)
        assert r.keys == ("LOINC 6298-4",)
        assert r.matches[0].describe() == '"K" -> Potassium [Moles/volume] in Blood (LOINC 6298-4)'
        assert r.expansion == "Potassium [Moles/volume] in Blood"
        assert resolve("keratometry", lex).keys == ()
    finally:
        EXPANDERS.remove(toy)
