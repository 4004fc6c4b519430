"""Computed answers: each shape on a handmade record with answers worked out by hand, honesty
(several analytes listed, unmatched words and free-text questions declined), citations that
hold the cited events, and the grounding check passing on every computed answer.

The hand-worked expectations below are written out literally; they do not call
:mod:`ragehr.answers.rules`, so a bug there shows up here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from ragehr.answers import Computed, Declined, compute, word
from ragehr.answers.chart import series_svg, write_plot
from ragehr.chunking import chunk_record
from ragehr.errors import ConfigError
from ragehr.eval.metrics.answers import is_abstention, list_f1, numeric_match, parse_yes_no
from ragehr.packing import pack_all, pack_ranked
from ragehr.patterns import CITATION_MARKER, citation_numbers
from ragehr.pipeline.grounding import check_grounding
from ragehr.retrieval.concepts import RecordLexicon
from ragehr.retrieval.intent import plan_question
from ragehr.tokens import EstimateCounter
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator, Status, TimePrecision

L, V, C, M, IMM, P, E = (
    EventKind.LAB,
    EventKind.VITAL,
    EventKind.CONDITION,
    EventKind.MEDICATION,
    EventKind.IMMUNIZATION,
    EventKind.PROCEDURE,
    EventKind.ENCOUNTER,
)


def _ev(i: int, kind: EventKind, when: str, text: str, **kw: object) -> Event:
    return Event(
        kind=kind,
        start=datetime.fromisoformat(when).replace(tzinfo=UTC),
        precision=TimePrecision.MINUTE,
        text=text,
        source=SourceLocator(file="hand.json", path=f"/entry/{i}/resource"),
        **kw,
    )


K = dict(system="LOINC", code="2823-3", unit="mmol/L")
TC = dict(system="LOINC", code="2093-3", unit="mg/dL")
HDL = dict(system="LOINC", code="2085-9", unit="mg/dL")
LDL = dict(system="LOINC", code="18262-6", unit="mg/dL")


@pytest.fixture(scope="module")
def rec() -> PatientRecord:
    evs = [
        _ev(1, L, "2019-01-03 08:00", "Potassium", value=4.1, **K),
        _ev(2, L, "2019-03-14 08:00", "Potassium", value=5.2, **K),
        _ev(3, L, "2019-07-01 08:00", "Potassium", value=3.6, **K),
        _ev(4, L, "2020-02-10 08:00", "Potassium", value=4.4, **K),
        _ev(5, L, "2021-05-02 08:00", "Potassium", value=4.0, **K),
        _ev(6, L, "2020-02-10 08:00", "Cholesterol total", value=212, **TC),
        _ev(7, L, "2020-02-10 08:00", "Cholesterol in HDL", value=48, **HDL),
        _ev(8, L, "2020-02-10 08:00", "Cholesterol in LDL", value=131, **LDL),
        _ev(9, V, "2019-01-03 08:00", "Body Weight", value=80.0, unit="kg"),
        _ev(10, V, "2020-02-10 08:00", "Body Weight", value=84.5, unit="kg"),
        _ev(11, V, "2021-05-02 08:00", "Body Weight", value=88.0, unit="kg"),
        _ev(12, C, "2018-06-01 10:00", "Essential hypertension", status=Status.ACTIVE),
        _ev(13, C, "2019-02-01 10:00", "Acute bronchitis", status=Status.RESOLVED),
        _ev(14, M, "2018-06-01 10:00", "Lisinopril 10 MG Oral Tablet", status=Status.ACTIVE),
        _ev(
            15,
            M,
            "2019-02-01 10:00",
            "Amoxicillin 500 MG Oral Capsule",
            status=Status.COMPLETED,
            end=datetime(2019, 2, 11, tzinfo=UTC),
        ),
        _ev(16, IMM, "2019-10-01 10:00", "Influenza, seasonal, injectable"),
        _ev(17, IMM, "2020-10-03 10:00", "Influenza, seasonal, injectable"),
        _ev(18, IMM, "2020-11-20 10:00", "Td (adult)"),
        _ev(19, E, "2019-01-03 07:50", "Office visit", visit_id="v1"),
        _ev(20, E, "2019-03-14 07:50", "Office visit", visit_id="v2"),
        _ev(21, E, "2019-07-01 07:50", "Office visit", visit_id="v3"),
        _ev(22, P, "2019-07-01 09:00", "Colonoscopy"),
        _ev(23, L, "2019-02-01 08:00", "Potassium", value=9.9, status=Status.NEGATED, **K),
    ]
    return PatientRecord(patient_id="hand-1", format="fhir", events=tuple(sorted(evs, key=lambda e: e.start)))


def _answer(rec: PatientRecord, question: str, budget: int = 100_000) -> tuple[Computed | Declined, str, object]:
    """Compute, pack the whole record (or the cited chunks first), word, check grounding."""
    plan = plan_question(question, rec.last_time)
    got = compute(question, plan, rec, RecordLexicon.of(rec))
    chunks = chunk_record(rec)
    counter = EstimateCounter()
    if isinstance(got, Declined):
        return got, "", None
    need = set(got.needed)
    pinned = [c for c in chunks if need.intersection(c.event_ids)]
    packed = pack_ranked(pinned + chunks, budget, counter) if budget < 100_000 else pack_all(chunks, budget, counter)
    worded = word(got, packed.items)
    if isinstance(worded, Declined):
        return worded, "", None
    g = check_grounding(worded.text, packed.items, worded.derived)
    assert g.ok, (question, worded.text, g)
    # every cited marker holds one of the events the answer needs
    by_marker = {it.marker: it for it in packed.items}
    for m in CITATION_MARKER.finditer(worded.text):
        for n in citation_numbers(m.group(0)):
            assert need.intersection(by_marker[n].event_ids), (question, n)
    return got, worded.text, g


def test_value_on_a_date_states_that_days_value_only(rec):
    got, text, _ = _answer(rec, "What was her potassium on 3/14/19?")
    assert isinstance(got, Computed) and got.shape == "value"
    assert "5.2 mmol/L" in text and "2019-03-14" in text
    assert numeric_match(text, 5.2, "mmol/L")


def test_a_day_without_a_value_gives_the_nearest_before_and_after_with_the_gaps(rec):
    got, text, g = _answer(rec, "What was the potassium on May 1, 2019?")
    assert got.shape == "nearest"
    assert "5.2 mmol/L on 2019-03-14" in text and "(48 days earlier)" in text
    assert "3.6 mmol/L on 2019-07-01" in text and "(61 days later)" in text
    assert set(g.derived) == {"48", "61"}


def test_latest_and_first_value(rec):
    _, text, _ = _answer(rec, "What is the most recent potassium?")
    assert numeric_match(text, 4.0, "mmol/L") and "2021-05-02" in text
    _, text, _ = _answer(rec, "What was the first recorded potassium?")
    assert numeric_match(text, 4.1, "mmol/L") and "2019-01-03" in text


def test_negated_events_are_never_evidence(rec):
    _, text, _ = _answer(rec, "What was the highest potassium in 2019?")
    assert "9.9" not in text and numeric_match(text, 5.2, "mmol/L")


def test_count_extremes_average_and_trend(rec):
    got, text, g = _answer(rec, "How many times was potassium measured in 2019?")
    assert got.shape == "count" and re.search(r"\b3 times\b", text) and g.ok
    _, text, _ = _answer(rec, "What was the lowest potassium?")
    assert numeric_match(text, 3.6, "mmol/L") and "2019-07-01" in text
    got, text, g = _answer(rec, "What was the average potassium?")
    assert got.shape == "average" and "4.26 mmol/L" in text and "over 5 values" in text  # (4.1+5.2+3.6+4.4+4.0)/5
    got, text, _ = _answer(rec, "How has her body weight changed over time?")
    assert got.shape == "trend" and "rose" in text and "80 kg" in text and "88 kg" in text


def test_several_analytes_are_listed_each_labelled(rec):
    got, text, _ = _answer(rec, "What was the latest cholesterol?")
    assert isinstance(got, Computed) and len(got.parts) == 3
    for name, value in (("Cholesterol total", "212"), ("Cholesterol in HDL", "48"), ("Cholesterol in LDL", "131")):
        assert re.search(re.escape(name) + r" was " + value + r" mg/dL", text)
    # one value is asked for: a strict scorer gives no credit to the list of three
    assert not numeric_match(text, 131, "mg/dL")


def test_a_question_naming_one_analyte_in_full_gets_only_that_one(rec):
    _, text, _ = _answer(rec, "What was the most recent Cholesterol in HDL?")
    assert numeric_match(text, 48, "mg/dL") and "212" not in text


def test_current_medications_and_on_a_date(rec):
    got, text, _ = _answer(rec, "What medications is she on now?")
    assert got.shape == "list" and got.at_record_end
    assert list_f1(text, ["Lisinopril 10 MG Oral Tablet"])[2] == 1.0
    _, text, _ = _answer(rec, "Which medications was the patient taking on 2019-02-05?")
    assert list_f1(text, ["Amoxicillin 500 MG Oral Capsule", "Lisinopril 10 MG Oral Tablet"])[2] == 1.0


def test_lists_in_a_period_and_visit_counts(rec):
    _, text, _ = _answer(rec, "Which immunizations did the patient receive in 2020?")
    assert list_f1(text, ["Influenza, seasonal, injectable", "Td (adult)"])[2] == 1.0
    _, text, _ = _answer(rec, "How many encounters did the patient have in 2019?")
    assert re.search(r"\b3 encounters\b", text)


def test_status_and_first_diagnosis(rec):
    _, text, _ = _answer(rec, "Is Essential hypertension still active?")
    assert parse_yes_no(text) == "yes"
    _, text, _ = _answer(rec, "Is Acute bronchitis still active?")
    assert parse_yes_no(text) == "no"
    _, text, _ = _answer(rec, "When was Essential hypertension first diagnosed?")
    assert "2018-06-01" in text


@pytest.mark.parametrize(
    "question",
    [
        "What did the neurologist recommend?",
        "Summarize her hypertension care.",
        "Why was amoxicillin stopped?",
        "What is the plan for her weight?",
        "What was her latest troponin?",  # not in the record
        "What is the latest hemoglobin A1c?",  # no A1c here: not the wrong test instead
        "What was her potassium level after the fall?",  # an event the record does not date
    ],
)
def test_declines_what_it_cannot_compute(rec, question):
    got, _, _ = _answer(rec, question)
    assert isinstance(got, Declined) and got.reason


def test_an_event_that_does_not_fit_the_window_is_never_cited(rec):
    got, text, _ = _answer(rec, "What is the most recent potassium?", budget=5)
    assert isinstance(got, Declined) and "did not fit" in got.reason and text == ""


def test_a_count_larger_than_the_window_cites_what_is_shown_and_says_so(rec):
    for budget in (60, 90, 120):
        got, text, g = _answer(rec, "How many times was potassium measured?", budget=budget)
        if isinstance(got, Computed) and "of them" in text:
            break
    else:
        pytest.fail("no budget gave a partly shown count")
    m = re.search(r"holds (\d+) of them", text)
    assert re.search(r"\b5 times\b", text) and m and int(m.group(1)) < 5 and g.ok
    assert m.group(1) in g.derived or m.group(1) in text.split("[")[1]


def test_declined_text_is_an_abstention():
    from ragehr.answers import decline_text

    assert is_abstention(decline_text("nothing in the record's structured events matches 'troponin'"))


def test_chart_highlights_cited_points_and_is_inert(rec, tmp_path):
    got, _, _ = _answer(rec, "How has her body weight changed over time?")
    svg = series_svg(got.series(), got.highlighted())
    assert svg.startswith("<svg") and svg.count("<circle") == 3 and svg.count('class="cited"') >= 2
    assert "<script" not in svg and "href" not in svg and "style" not in svg
    hostile = series_svg([("<b>x</b>", None, got.series()[0][2])])
    assert "<b>" not in hostile and "&lt;b&gt;" in hostile
    out = write_plot(tmp_path / "w.svg", got.series(), got.highlighted())
    assert out.read_text().startswith("<svg")
    with pytest.raises(ConfigError):
        write_plot(tmp_path / "w.gif", got.series())
