"""The C-CDA parser on the real documents in shared data, plus small inline documents for the
cases those do not cover (bare sections, negation, garbage, partial dates)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from ragehr.ehr import load_record
from ragehr.ehr.ccda import flatten_narrative, parse_ccda, rtf_to_text
from ragehr.types import Event, EventKind, PatientRecord, Status, TimePrecision


def _ccda_files(shared: Path) -> list[Path]:
    files = sorted((shared / "ccda").rglob("*.xml")) + sorted((shared / "synthea" / "ccda").glob("*.xml"))
    assert files, "no C-CDA files in shared data"
    return files


def _load(shared: Path, rel: str) -> PatientRecord:
    return load_record(shared / rel)


def _one(events: list[Event] | tuple[Event, ...], **match: object) -> Event:
    hits = [e for e in events if all(getattr(e, k) == v for k, v in match.items())]
    assert len(hits) == 1, f"{len(hits)} events match {match}"
    return hits[0]


def _parse(xml: str, name: str = "inline.xml") -> PatientRecord:
    return parse_ccda(etree.fromstring(xml.encode()), path=Path(name))


# --- every file ---------------------------------------------------------------------------


def test_every_ccda_file_parses(shared_data: Path) -> None:
    for f in _ccda_files(shared_data):
        rec = load_record(f)
        assert rec.format == "ccda"
        assert rec.sources == (str(f),)
        assert rec.events, f"{f.name}: no events"
        for e in rec.events:
            assert e.start is None or e.start.tzinfo is not None, f.name
            assert e.end is None or e.end.tzinfo is not None, f.name
            assert e.text.strip(), f"{f.name}: empty text at {e.source.path}"
            if e.kind is not EventKind.NOTE:  # a narrative may really say "None"
                assert e.text != "None" and e.code != "None" and e.system != "None", f.name
            assert e.source.file == str(f)
            assert e.source.path.startswith("/")


def test_sections_give_their_kinds(shared_data: Path) -> None:
    """A document with a results / vital signs / problems section gets events of that kind."""
    expect = {"30954-2": EventKind.LAB, "8716-3": EventKind.VITAL, "11450-4": EventKind.CONDITION}
    placeholder_results = {"Kareo__Kareo_CCD_export_Joey_Miller.xml", "NextGen__CCDA_Sample_NextGen_JonesIsabella.xml"}
    for f in _ccda_files(shared_data):
        root = etree.parse(str(f)).getroot()
        codes = {
            c.get("code")
            for s in root.iter("{urn:hl7-org:v3}section")
            if s.get("nullFlavor") is None and s.find("{urn:hl7-org:v3}entry") is not None
            for c in s.iterfind("{urn:hl7-org:v3}code")
        }
        kinds = {e.kind for e in load_record(f).events}
        for code, kind in expect.items():
            if code in codes and not (code == "30954-2" and f.name in placeholder_results):
                assert kind in kinds, f"{f.name}: section {code} but no {kind.value} events"


def test_large_files_parse_whole(shared_data: Path) -> None:
    # No timed test here (speed lives in benchmarks/): a loaded CI machine made the old
    # 2-second bound fail without any regression.
    for rel in (
        "ccda/vendor/Vitera__Vitera_CCDA_SMART_Sample.xml",
        "synthea/ccda/exafluence_CA_ac682810-c825-65e6-3846-3999e5c65466.xml",
    ):
        rec = _load(shared_data, rel)
        assert rec.events and all(e.source.file for e in rec.events), rel


# --- HL7 examples -------------------------------------------------------------------------


def test_ccd1_demographics_and_coded_entries(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/CCD_CCD_1.xml")
    d = rec.demographics
    assert (d.name, d.birth_date, d.gender) == ("Eve Betterhalf", date(1975, 5, 1), "female")
    assert d.race == "White" and d.ethnicity == "Not Hispanic or Latino"
    ev = rec.events

    height = _one(ev, kind=EventKind.VITAL, code="8302-2", start=datetime(2012, 9, 10, tzinfo=UTC))
    assert (height.system, height.value, height.unit, height.precision) == ("LOINC", 177.0, "cm", TimePrecision.DAY)
    weight = _one(ev, kind=EventKind.VITAL, code="3141-9", start=datetime(2012, 9, 10, tzinfo=UTC))
    assert (weight.value, weight.unit) == (86.0, "kg")

    pneumonia = _one(ev, kind=EventKind.CONDITION, code="233604007", start=datetime(1998, 3, 10, tzinfo=UTC))
    assert pneumonia.system == "SNOMED" and pneumonia.text == "Pneumonia"
    assert pneumonia.status is Status.RESOLVED and pneumonia.end == datetime(1998, 3, 16, tzinfo=UTC)

    atenolol = _one(ev, kind=EventKind.MEDICATION, code="197380")
    assert atenolol.system == "RxNorm" and atenolol.text == "atenolol 25 MG Oral Tablet"
    assert atenolol.start == datetime(2012, 3, 18, tzinfo=UTC) and atenolol.status is Status.ACTIVE

    codeine = _one(ev, kind=EventKind.ALLERGY, code="2670")
    assert codeine.system == "RxNorm" and "codeine" in codeine.text and "Wheezing" in codeine.text
    # the severity observation beside the allergy is part of it, not an allergy of its own
    assert not [e for e in ev if e.kind is EventKind.ALLERGY and "severe" in e.text.lower()]

    pneumo = _one(ev, kind=EventKind.IMMUNIZATION, code="33")
    assert pneumo.system == "CVX" and pneumo.start == datetime(1998, 12, 15, tzinfo=UTC)
    assert pneumo.status is Status.COMPLETED
    refused = _one(ev, kind=EventKind.IMMUNIZATION, code="103")  # negationInd="true"
    assert refused.status is Status.NEGATED

    # partial dates keep their precision
    flu = [e for e in ev if e.kind is EventKind.IMMUNIZATION and e.code == "88" and e.precision is TimePrecision.MONTH]
    assert [e.start for e in flu] == [datetime(1999, 11, 1, tzinfo=UTC)]
    father = _one(ev, kind=EventKind.OBSERVATION, code="44054006")
    assert father.precision is TimePrecision.YEAR and father.start == datetime(1950, 1, 1, tzinfo=UTC)
    assert "father" in father.text.lower() and "Diabetes" in father.text

    # nullFlavored value: the result is kept, its value is absent (no 'None' strings)
    bun = _one(ev, kind=EventKind.LAB, code="3094-0")
    assert bun.value is None and bun.unit is None and bun.text == "Urea nitrogen, Serum"
    assert bun.start == datetime(2008, 3, 20, 9, 30, tzinfo=timezone(timedelta(hours=-8)))

    # planned care is not a procedure that happened
    planned = [e for e in ev if e.text.startswith("Planned: ")]
    assert planned and all(e.kind is EventKind.OTHER for e in planned)


def test_discharge_summary_notes(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/Discharge_Summary.xml")
    notes = [e for e in rec.events if e.kind is EventKind.NOTE]
    doc_time = datetime(2014, 9, 17, 19, 4, tzinfo=timezone(timedelta(hours=-5)))
    hpi = _one(notes, code="10164-2")
    assert hpi.title == "HISTORY OF PRESENT ILLNESS"
    assert "recently discharged for a recurrent GI pain" in hpi.text
    assert hpi.start == doc_time and hpi.visit_id == "9937012"
    course = _one(notes, code="8648-8")
    assert course.title == "HOSPITAL COURSE" and "diagnosed with acute appendicitis" in course.text
    assert "<" not in course.text
    # sections with coded entries and no note role do not become notes
    assert not [n for n in notes if n.code in ("48765-2", "11450-4", "8716-3")]
    # a dated problem with month precision
    dyspnea = _one(rec.events, kind=EventKind.CONDITION, code="267036007")
    assert dyspnea.precision is TimePrecision.MONTH and dyspnea.start == datetime(2007, 2, 1, tzinfo=UTC)


def test_notes_flatten_tables(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/Discharge_Summary.xml")
    studies = _one(rec.events, kind=EventKind.NOTE, code="11493-4")
    assert "Potasium | 4.0" in studies.text.splitlines()


def test_discharge_note_fragment(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/notes-section-fragments/Discharge_Note_in_Hospital_Course.xml")
    assert rec.patient_id == "Discharge_Note_in_Hospital_Course"
    assert len(rec.events) == 1  # the note activity, not the section narrative a second time
    note = rec.events[0]
    assert note.kind is EventKind.NOTE
    assert note.start == datetime(2016, 9, 13, 14, 46, tzinfo=timezone(timedelta(hours=-5)))
    assert note.precision is TimePrecision.MINUTE
    assert note.text.startswith("Dr. Physician - 09/13/2016 2:46 PM EDT\n")
    assert "started on Lovenox and nitroglycerin paste" in note.text
    assert (note.title, note.note_type, note.visit_id) == ("Hospital Course", "Discharge Summary", "1.2.3.4.5.6")


def test_note_attached_to_procedure(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/notes-section-fragments/Note_directly_attached_to_a_Procedure.xml")
    proc = _one(rec.events, kind=EventKind.PROCEDURE)
    assert (proc.system, proc.code, proc.text) == ("SNOMED", "6025007", "Laparoscopic appendectomy")
    assert proc.start == datetime(2014, 2, 3, 9, 22, 5, tzinfo=timezone(timedelta(hours=-7)))
    note = _one(rec.events, kind=EventKind.NOTE)
    assert "arm boards" in note.text and note.note_type == "Procedure note"
    assert note.precision is TimePrecision.DAY and note.visit_id == "1.2.3.4"


def test_rtf_note(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/hl7-examples/notes-section-fragments/RTF_Note.xml")
    note = _one(rec.events, kind=EventKind.NOTE)
    assert "0700-1900 Nursing Note" in note.text and "\\" not in note.text
    assert note.note_type == "Nurse Note"


def test_rtf_to_text_strips_control_words() -> None:
    rtf = (
        r"{\rtf1\ansi{\fonttbl{\f0\fnil Calibri;}}{\colortbl ;\red51\green51\blue51;}"
        r"{\*\generator Riched20}\pard\b Patient\rquote s lungs\b0  are clear.\par Caf\'e9 \u8212? ok\par}"
    )
    assert rtf_to_text(rtf) == "Patient\u2019s lungs are clear.\nCaf\u00e9 \u2014 ok"


# --- vendor documents ---------------------------------------------------------------------


def test_vendor_problem_with_placeholder_code(shared_data: Path) -> None:
    """Vitera codes the problem value as SNOMED 'Problem' with the real code in a translation."""
    rec = _load(shared_data, "ccda/vendor/Vitera__Vitera_CCDA_SMART_Sample.xml")
    cond = _one(rec.events, kind=EventKind.CONDITION)
    assert (cond.system, cond.code, cond.text) == ("ICD9CM", "346.10", "COMN MIGRNE WO NTRC MGRN")
    assert rec.patient_id == "11" and rec.demographics.name == "Sharon A Carlson"
    # the ordering procedures Vitera interleaves with results are not procedures
    assert len([e for e in rec.events if e.kind is EventKind.PROCEDURE]) == 4


def test_vendor_nullflavors(shared_data: Path) -> None:
    rec = _load(shared_data, "ccda/vendor/NextGen__CCDA_Sample_NextGen_JonesIsabella.xml")
    # the results section is a placeholder: code UNK, value, time and id all nullFlavored
    assert not [e for e in rec.events if e.kind is EventKind.LAB]
    assert all(e.code not in ("UNK", "NI", "UNKNOWN") for e in rec.events)


# --- Synthea ------------------------------------------------------------------------------


def test_synthea_ids_and_conditions(shared_data: Path) -> None:
    for f in sorted((shared_data / "synthea" / "ccda").glob("exafluence_CA_*.xml")):
        rec = load_record(f)
        assert rec.patient_id == f.stem.removeprefix("exafluence_CA_")
        conds = [e for e in rec.events if e.kind is EventKind.CONDITION]
        assert conds and all(c.system == "SNOMED" and c.code for c in conds), f.name
        assert [e for e in rec.events if e.kind is EventKind.ENCOUNTER]


def test_synthea_nullflavored_sections_are_absent(shared_data: Path) -> None:
    rec = _load(shared_data, "synthea/ccda/exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.xml")
    kinds = {e.kind for e in rec.events}
    assert EventKind.ALLERGY not in kinds and EventKind.MEDICATION not in kinds
    assert not [e for e in rec.events if e.kind is EventKind.NOTE and e.code in ("48765-2", "10160-0")]
    temp = _one(rec.events, kind=EventKind.VITAL, code="8310-5")
    assert temp.unit == "Cel" and temp.value == pytest.approx(37.0458, abs=1e-3)
    assert temp.start == datetime(2024, 5, 27, 12, 48, 50, tzinfo=UTC)
    assert rec.demographics.gender == "male" and rec.demographics.birth_date == date(1999, 6, 29)


# --- inline documents ---------------------------------------------------------------------

_SECTION = """<section{ns}>
  <code code="10164-2" codeSystem="2.16.840.1.113883.6.1" displayName="HISTORY OF PRESENT ILLNESS"/>
  <title>History of Present Illness</title>
  <text><paragraph>Cough for <content>three</content> days.</paragraph>
    <list><item>No fever</item><item>No   chills</item></list>
    <table><thead><tr><th>Drug</th><th>Dose</th></tr></thead>
      <tbody><tr><td>Aspirin</td><td>81 mg</td></tr></tbody></table></text>
</section>"""
_FLAT = "Cough for three days.\nNo fever\nNo chills\nDrug | Dose\nAspirin | 81 mg"


@pytest.mark.parametrize("ns", ["", ' xmlns="urn:hl7-org:v3"'])
def test_bare_section(ns: str, tmp_path: Path) -> None:
    f = tmp_path / "hpi_fragment.xml"
    f.write_text(_SECTION.format(ns=ns))
    rec = load_record(f)
    assert rec.patient_id == "hpi_fragment"
    note = _one(rec.events, kind=EventKind.NOTE)
    assert note.text == _FLAT
    assert (note.title, note.note_type, note.code, note.system) == (
        "History of Present Illness",
        "history of present illness",
        "10164-2",
        "LOINC",
    )
    assert note.start is None  # a fragment has no document time


def test_flatten_narrative() -> None:
    el = etree.fromstring(_SECTION.format(ns="")).find("text")
    assert flatten_narrative(el) == _FLAT


_DOC = """<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <effectiveTime value="20200102"/>
  <recordTarget><patientRole>
    <id root="2.16.840.1.113883.4.1" extension="111-22-3333"/>
    <id root="1.2.3.4.5" extension="MRN42"/>
    <patient><name><given>Ann</given><family>Lee</family></name>
      <administrativeGenderCode code="F"/><birthTime value="1980"/></patient>
  </patientRole></recordTarget>
  <componentOf><encompassingEncounter><id root="9.9" extension="V7"/>
    <effectiveTime><low value="20200101"/></effectiveTime></encompassingEncounter></componentOf>
  <component><structuredBody>{body}</structuredBody></component>
</ClinicalDocument>"""


def _doc(*sections: str) -> str:
    return _DOC.format(body="".join(f"<component>{s}</component>" for s in sections))


def test_header_ids_and_negation() -> None:
    problems = """<section><code code="11450-4" codeSystem="2.16.840.1.113883.6.1"/><title>Problems</title>
      <text>ignored</text>
      <entry><act classCode="ACT" moodCode="EVN"><code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
        <statusCode code="active"/>
        <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN" negationInd="true">
          <code code="55607006" codeSystem="2.16.840.1.113883.6.96"/>
          <effectiveTime><low value="201905"/></effectiveTime>
          <value xsi:type="CD" code="38341003" codeSystem="2.16.840.1.113883.6.96" displayName="Hypertension"/>
        </observation></entryRelationship></act></entry>
      <entry><act classCode="ACT" moodCode="EVN"><code code="CONC"/>
        <effectiveTime><low value="2018"/></effectiveTime>
        <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN">
          <code nullFlavor="UNK"/>
          <effectiveTime><low nullFlavor="UNK"/><high value="20190301"/></effectiveTime>
          <value xsi:type="CD" nullFlavor="OTH"><originalText>Gout</originalText>
            <translation code="M10.9" codeSystem="2.16.840.1.113883.6.90" displayName="Gout, unspecified"/></value>
        </observation></entryRelationship></act></entry>
    </section>"""
    rec = _parse(_doc(problems))
    assert rec.patient_id == "MRN42"  # never the SSN
    assert rec.demographics.name == "Ann Lee" and rec.demographics.gender == "female"
    assert rec.demographics.birth_date == date(1980, 1, 1)
    htn = _one(rec.events, code="38341003")
    assert htn.status is Status.NEGATED and htn.precision is TimePrecision.MONTH
    assert htn.visit_id == "V7" and htn.text == "Hypertension"
    gout = _one(rec.events, code="M10.9")
    assert gout.system == "ICD10CM" and gout.text == "Gout"  # originalText before the translation's name
    assert gout.status is Status.RESOLVED and gout.end == datetime(2019, 3, 1, tzinfo=UTC)
    assert gout.start == datetime(2018, 1, 1, tzinfo=UTC) and gout.precision is TimePrecision.YEAR  # the concern's time
    assert not [e for e in rec.events if e.kind is EventKind.NOTE]


def test_ssn_only_falls_back_to_file_stem() -> None:
    xml = _doc().replace('<id root="1.2.3.4.5" extension="MRN42"/>', "")
    assert _parse(xml, "some/dir/patient_x.xml").patient_id == "patient_x"


def test_results_values_and_garbage_survive() -> None:
    results = """<section><code code="30954-2" codeSystem="2.16.840.1.113883.6.1"/><title>Results</title>
      <text><table><tbody><tr><td ID="r1">Glucose, fasting</td></tr></tbody></table></text>
      <entry><organizer classCode="BATTERY" moodCode="EVN"><effectiveTime value="202001011230+0100"/>
        <component><observation classCode="OBS" moodCode="EVN">
          <code code="1558-6" codeSystem="2.16.840.1.113883.6.1"><originalText><reference value="#r1"/></originalText></code>
          <value xsi:type="PQ" value="5.4" unit="mmol/L"/></observation></component>
        <component><observation classCode="OBS" moodCode="EVN">
          <code code="5778-6" codeSystem="2.16.840.1.113883.6.1" displayName="Color of Urine"/>
          <effectiveTime value="not-a-date"/>
          <value xsi:type="CD" code="Y" displayName="Yellow"/></observation></component>
        <component><observation classCode="OBS" moodCode="EVN">
          <code code="2345-7" codeSystem="2.16.840.1.113883.6.1" displayName="Glucose"/>
          <effectiveTime value="20200101"/>
          <value xsi:type="IVL_PQ"><low value="3.9" unit="mmol/L"/><high value="5.5" unit="mmol/L"/></value>
        </observation></component>
        <component><observation classCode="OBS" moodCode="EVN">
          <code code="X" displayName="Comment"/><value xsi:type="ST">hemolysed</value></observation></component>
        <component><observation><code nullFlavor="NI"/><value xsi:type="PQ" nullFlavor="NI"/></observation></component>
      </organizer></entry>
      <entry><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.2"/>
        <code code="6690-2" codeSystem="2.16.840.1.113883.6.1" displayName="WBC"/>
        <effectiveTime value="2020"/><value xsi:type="INT" value="7"/></observation></entry>
    </section>"""
    rec = _parse(_doc(results))
    glucose = _one(rec.events, code="1558-6")
    assert (glucose.text, glucose.value, glucose.unit) == ("Glucose, fasting", 5.4, "mmol/L")
    assert glucose.kind is EventKind.LAB
    assert glucose.start == datetime(2020, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
    color = _one(rec.events, code="5778-6")
    assert color.value == "Yellow" and color.start == glucose.start  # garbage time -> the organizer's
    assert _one(rec.events, code="2345-7").value == "3.9-5.5"
    assert _one(rec.events, code="X").value == "hemolysed"
    assert _one(rec.events, code="6690-2").value == 7
    assert len([e for e in rec.events if e.kind is EventKind.LAB]) == 5  # the all-null one is skipped


def test_malformed_entry_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragehr.ehr import ccda

    meds = """<section><code code="10160-0" codeSystem="2.16.840.1.113883.6.1"/><title>Meds</title><text/>
      <entry><substanceAdministration classCode="SBADM" moodCode="INT">
        <effectiveTime xsi:type="IVL_TS"><low value="20190101"/><high value="20190201"/></effectiveTime>
        <effectiveTime xsi:type="PIVL_TS"><period value="12" unit="h"/></effectiveTime>
        <doseQuantity value="2" unit="{puff}"/>
        <consumable><manufacturedProduct><manufacturedMaterial>
          <code code="745679" codeSystem="2.16.840.1.113883.6.88" displayName="albuterol inhaler"/>
        </manufacturedMaterial></manufacturedProduct></consumable></substanceAdministration></entry>
      <entry><substanceAdministration classCode="SBADM" moodCode="EVN">
        <effectiveTime value="20190505"/>
        <consumable><manufacturedProduct><manufacturedMaterial>
          <code code="BOOM" codeSystem="2.16.840.1.113883.6.88" displayName="explodes"/>
        </manufacturedMaterial></manufacturedProduct></consumable></substanceAdministration></entry>
    </section>"""
    real = ccda._Parser.medication

    def flaky(self: ccda._Parser, sa: etree._Element, *a: object, **k: object) -> None:
        if "BOOM" in etree.tostring(sa, encoding="unicode"):
            raise ValueError("vendor nonsense")
        real(self, sa, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ccda._Parser, "medication", flaky)
    rec = _parse(_doc(meds))
    med = _one(rec.events, kind=EventKind.MEDICATION)
    assert (med.system, med.code, med.value, med.unit) == ("RxNorm", "745679", 2.0, "{puff}")
    assert med.start == datetime(2019, 1, 1, tzinfo=UTC) and med.end == datetime(2019, 2, 1, tzinfo=UTC)


def test_base64_plain_text_note() -> None:
    body = base64.b64encode(b"Line one.\nLine two.").decode()
    notes = f"""<section><code code="34746-8" codeSystem="2.16.840.1.113883.6.1" displayName="Nurse Note"/>
      <title>Notes</title><text/>
      <entry><act classCode="ACT" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.202"/>
        <code code="34109-9" codeSystem="2.16.840.1.113883.6.1" displayName="Note"/>
        <text mediaType="text/plain" representation="B64">{body}</text>
        <author><time value="202001021300"/></author></act></entry></section>"""
    rec = _parse(_doc(notes))
    note = _one(rec.events, kind=EventKind.NOTE)
    assert note.text == "Line one.\nLine two."
    assert note.start == datetime(2020, 1, 2, 13, 0, tzinfo=UTC)  # no effectiveTime: the author time


def test_non_xml_body_text_note() -> None:
    body = base64.b64encode(b"Seen today for follow-up.").decode()
    xml = _DOC.replace(
        "<component><structuredBody>{body}</structuredBody></component>",
        f'<component><nonXMLBody><text mediaType="text/plain" representation="B64">{body}</text>'
        "</nonXMLBody></component>",
    ).replace(
        '<effectiveTime value="20200102"/>',
        '<code code="11506-3" codeSystem="2.16.840.1.113883.6.1" displayName="Progress note"/>'
        '<title>Follow-up</title><effectiveTime value="20200102"/>',
    )
    rec = _parse(xml)
    note = _one(rec.events, kind=EventKind.NOTE)
    assert (note.text, note.title, note.note_type, note.code) == (
        "Seen today for follow-up.",
        "Follow-up",
        "Progress note",
        "11506-3",
    )
    assert note.start == datetime(2020, 1, 2, tzinfo=UTC) and note.visit_id == "V7"
