"""The time-stress question types: gold answers re-derived from the events directly, and the
written dates cross-checked against the question parser (an independent reading of the
same day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragehr.eval.generated import ALL_QTYPES, DATE_FORMATS, QTYPES, TIME_QTYPES, generate_qa, written_date
from ragehr.retrieval.timefilter import parse_time_expression
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator

T0 = datetime(2018, 2, 5, 9, 15, tzinfo=UTC)


@given(st.dates(min_value=date(1950, 1, 1), max_value=date(2068, 12, 31)), st.sampled_from(DATE_FORMATS))
def test_every_written_date_reads_back_as_its_day(d, style):
    # us_short keeps two digits of the year: only unambiguous within 1970-2069
    if style == "us_short" and not 1970 <= d.year <= 2069:
        return
    w = parse_time_expression(f"What was the potassium on {written_date(d, style)}?", datetime(2070, 1, 1, tzinfo=UTC))
    assert (w.since.date(), w.until.date()) == (d, d), written_date(d, style)


def test_written_date_styles():
    d = date(2019, 5, 3)
    assert [written_date(d, s) for s in DATE_FORMATS] == [
        "May 3, 2019",
        "2019-05-03",
        "05/03/2019",
        "5/3/19",
        "3 May 2019",
        "the 3rd of May, 2019",
    ]
    assert written_date(date(2019, 5, 11), "ordinal") == "the 11th of May, 2019"
    assert written_date(date(2019, 5, 22), "ordinal") == "the 22nd of May, 2019"
    with pytest.raises(ValueError):
        written_date(d, "roman")


def _record() -> PatientRecord:
    evs = []
    values = [5.1, 4.2, 3.9, 4.8, 4.4, 5.6, 4.0, 4.1]
    for i, v in enumerate(values):  # potassium every 45 days: 2018 (6 values) and 2019 (2)
        evs.append(
            Event(
                kind=EventKind.LAB,
                start=T0 + timedelta(days=45 * i),
                system="LOINC",
                code="2823-3",
                text="Potassium",
                value=v,
                unit="mmol/L",
                source=SourceLocator(file="f", path=f"k{i}"),
            )
        )
    # sodium twice only: too short a series for most types
    for i in range(2):
        evs.append(
            Event(
                kind=EventKind.LAB,
                start=T0 + timedelta(days=100 * i, hours=1),
                system="LOINC",
                code="2951-2",
                text="Sodium",
                value=140 + i,
                unit="mmol/L",
                source=SourceLocator(file="f", path=f"n{i}"),
            )
        )
    evs.sort(key=lambda e: e.start)
    return PatientRecord(patient_id="t", format="medalign-xml", events=tuple(evs))


def test_time_types_known_answers():
    rec = _record()
    ks = [e for e in rec.events if e.code == "2823-3"]
    items: dict[str, list] = {}
    for it in generate_qa(rec, per_type=5, qtypes=TIME_QTYPES):
        items.setdefault(it.qtype, []).append(it)
    [recent] = items["most_recent_value"]
    assert recent.question == "What was the patient's most recent Potassium?"
    assert recent.answer == "4.1 mmol/L" and recent.evidence_event_ids == (ks[-1].event_id,)
    [first] = items["first_value"]
    assert first.answer == "5.1 mmol/L" and first.evidence_event_ids == (ks[0].event_id,)
    counts = {i.question: i for i in items["value_count"]}
    k = counts["How many times was Potassium measured?"]
    assert k.answer_value == 8 and set(k.evidence_event_ids) == {e.event_id for e in ks}
    assert "How many times was Sodium measured?" not in counts  # measured on 2 days only
    [mx] = items["max_in_year"]
    in_2018 = [e for e in ks if e.start.year == 2018]
    assert mx.question == "What was the highest Potassium in 2018?" and mx.answer_value == max(e.value for e in in_2018)
    assert set(mx.evidence_event_ids) == {e.event_id for e in in_2018}
    dated = items["value_on_written_date"]
    assert len(dated) == 5
    by_id = {e.event_id: e for e in rec.events}
    for it in dated:
        [eid] = it.evidence_event_ids
        e = by_id[eid]
        w = parse_time_expression(it.question, None)
        assert w.since.date() == e.start.date() and it.answer_value == e.value


def test_default_types_unchanged_and_unknown_types_refused():
    rec = _record()
    assert {i.qtype for i in generate_qa(rec)} <= set(QTYPES)
    assert set(ALL_QTYPES) == set(QTYPES) | set(TIME_QTYPES)
    with pytest.raises(ValueError, match="unknown question type"):
        generate_qa(rec, qtypes=["nope"])
