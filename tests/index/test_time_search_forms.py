"""Search with the date forms and calendar-edge phrases of issues 21 and 24, on the same
chronic record as ``test_time_search`` (potassium every two weeks for two years): the day's
value is found whichever way the day is written, ``retrieval.day_first`` reads numeric dates
day first, and phrases past the calendar are answered, not an internal error."""

from __future__ import annotations

import calendar

import pytest

from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.ehr.medalign import write_medalign_xml
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search
from ragehr.retrieval.timefilter import MIN_TIME
from tests.index.test_time_search import _line_in, _potassium, _record

FORMS = {
    "d-Mon-yyyy": lambda d: f"{d.day}-{calendar.month_abbr[d.month]}-{d.year}",
    "DDMONYY": lambda d: f"{d.day:02d}{calendar.month_abbr[d.month].upper()}{d.year % 100:02d}",
    "Mon dth, yyyy": lambda d: f"{calendar.month_abbr[d.month]} {d.day}th, {d.year}",
    "d Month 'yy": lambda d: f"{d.day} {calendar.month_name[d.month]} '{d.year % 100:02d}",
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    "yyyy/mm/dd": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    d = tmp_path_factory.mktemp("forms")
    path = d / "chronic.xml"
    path.write_text(write_medalign_xml(_record()), encoding="utf-8")
    [s] = build_indexes([path], d / "idx", IndexConfig(embedder="hashing"))
    assert s.status == "built", s
    return load_patient_index(d / "idx", s.patient_id)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_day_in_each_new_form_finds_that_days_value(idx, form):
    for e in _potassium(idx)[3::17]:
        q = f"What was the patient's potassium on {FORMS[form](e.start.date())}?"
        hits, plan = search(idx, q, k=3, retriever="bm25")
        assert plan.intent == "point" and plan.fallback is None and plan.concept == "potassium", q
        assert _line_in(hits[0].chunk, e), q


def test_day_first_in_the_retrieval_config_reads_numeric_dates_day_first(idx):
    # a day whose day-of-month is 12 or less, so both readings are real days
    e = next(e for e in _potassium(idx) if e.start.day <= 12 and e.start.day != e.start.month)
    d = e.start.date()
    q = f"potassium on {d.day}/{d.month}/{d.year % 100:02d}"
    hits, plan = search(idx, q, k=3, retriever="bm25", config=RetrievalConfig(day_first=True))
    assert plan.since.date() == d and _line_in(hits[0].chunk, e)
    _, plan = search(idx, q, k=3, retriever="bm25")  # the default reads it month first: another day
    assert plan.since.date() != d


@pytest.mark.parametrize(
    "q",
    [
        "potassium in the past 999999 days",
        "potassium over the last 3000 years",
        "potassium since year 0",
        "potassium in the last " + "9" * 5000 + " days",
    ],
)
def test_spans_reaching_before_the_calendar_cover_the_whole_record(idx, q):
    hits, plan = search(idx, q, k=3)
    assert plan.since == MIN_TIME and plan.until is None and plan.fallback is None and hits
    hits, plan = search(idx, "most recent " + q, k=3)
    assert plan.intent == "latest" and _line_in(hits[0].chunk, _potassium(idx)[-1])


@pytest.mark.parametrize("q", ["potassium in the year 99999", "potassium on 12/31/9999", "potassium before the year 0"])
def test_windows_at_the_calendar_edges_hold_nothing_and_fall_back_to_the_nearest(idx, q):
    hits, plan = search(idx, q, k=3)
    assert plan.is_filter and plan.fallback and "nearest" in plan.fallback and hits


def test_future_spans_are_no_filter(idx):
    hits, plan = search(idx, "potassium in the next 10^9 weeks", k=3)
    assert not plan.is_filter and hits
