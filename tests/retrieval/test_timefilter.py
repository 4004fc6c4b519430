"""Dates in questions, written from the formats people use (not from the regexes)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from ragehr.retrieval.timefilter import (
    TimeWindow,
    overlaps,
    parse_date_option,
    parse_time_expression,
    strip_phrase,
)

UTC = timezone.utc
# The record ends on Wednesday 2022-05-18 at 14:30.
ANCHOR = datetime(2022, 5, 18, 14, 30, tzinfo=UTC)


def _days(w: TimeWindow) -> tuple[date | None, date | None]:
    return (w.since.date() if w.since else None, w.until.date() if w.until else None)


@pytest.mark.parametrize(
    "question",
    [
        "What was the patient's potassium on May 5, 2019?",
        "What was the patient's potassium on May 5 2019?",
        "What was the patient's potassium on May 5th, 2019?",
        "What was the patient's potassium on 5 May 2019?",
        "What was the patient's potassium on the 5th of May, 2019?",
        "What was the patient's potassium on 05/05/2019?",
        "What was the patient's potassium on 5/5/19?",
        "What was the patient's potassium on 2019-05-05?",
        "What was the patient's potassium on 2019/05/05?",
        "what was the patient's potassium on MAY 5, 2019",
        "potassium on 5-May-2019".replace("-", " "),
    ],
)
def test_one_day_in_any_written_form(question):
    w = parse_time_expression(question, ANCHOR)
    assert _days(w) == (date(2019, 5, 5), date(2019, 5, 5))
    assert w.is_point and w.target.date() == date(2019, 5, 5)
    assert w.since.time().hour == 0 and w.until.time().hour == 23  # the whole day
    assert "potassium" in strip_phrase(question, w).lower()
    assert "2019" not in strip_phrase(question, w) and "/19" not in strip_phrase(question, w)


def test_numeric_dates_are_month_first_unless_impossible():
    assert _days(parse_time_expression("sodium on 03/04/2020", ANCHOR)) == (date(2020, 3, 4),) * 2
    assert _days(parse_time_expression("sodium on 25/12/2020", ANCHOR)) == (date(2020, 12, 25),) * 2
    # no such day: not a date at all
    assert not parse_time_expression("sodium on 13/13/2020", ANCHOR).is_filter


def test_two_digit_years():
    assert _days(parse_time_expression("on 1/2/99", ANCHOR)) == (date(1999, 1, 2),) * 2
    assert _days(parse_time_expression("on 1/2/05", ANCHOR)) == (date(2005, 1, 2),) * 2


@pytest.mark.parametrize(
    "question,first,last",
    [
        ("A1c in May 2019?", date(2019, 5, 1), date(2019, 5, 31)),
        ("A1c in February 2020", date(2020, 2, 1), date(2020, 2, 29)),  # leap year
        ("A1c in Feb. 2021", date(2021, 2, 1), date(2021, 2, 28)),
        ("A1c in Sept of 2018", date(2018, 9, 1), date(2018, 9, 30)),
        ("A1c in 12/2019", date(2019, 12, 1), date(2019, 12, 31)),
        ("A1c values in 2019", date(2019, 1, 1), date(2019, 12, 31)),
        ("A1c during 2017", date(2017, 1, 1), date(2017, 12, 31)),
    ],
)
def test_months_and_years(question, first, last):
    w = parse_time_expression(question, ANCHOR)
    assert _days(w) == (first, last)


@pytest.mark.parametrize(
    "question,day",
    [
        ("What was her potassium on the 3rd of March?", date(2022, 3, 3)),
        ("What was her potassium on March 3rd?", date(2022, 3, 3)),
        ("What was her potassium on 3 March?", date(2022, 3, 3)),
        # a day after the record's end in its last year: the year before
        ("What was her potassium on the 1st of December?", date(2021, 12, 1)),
        ("What was her potassium on June 2?", date(2021, 6, 2)),
        # the record's last day itself
        ("potassium on May 18th", date(2022, 5, 18)),
        # Feb 29 goes back to the last leap year
        ("potassium on February 29th", date(2020, 2, 29)),
    ],
)
def test_days_without_a_year_take_it_from_the_record_end(question, day):
    assert _days(parse_time_expression(question, ANCHOR)) == (day, day)


def test_days_without_a_year_need_an_anchor():
    assert not parse_time_expression("potassium on the 3rd of March", None).is_filter
    # but a full date does not
    assert parse_time_expression("potassium on March 3, 2021", None).is_filter


@pytest.mark.parametrize(
    "question,day",
    [
        ("What was her blood pressure last Tuesday?", date(2022, 5, 17)),  # the day before the end
        ("blood pressure last Wednesday", date(2022, 5, 11)),  # the end is a Wednesday: a week back
        ("blood pressure on Monday", date(2022, 5, 16)),
        ("blood pressure last Thu", date(2022, 5, 12)),
        ("blood pressure yesterday", date(2022, 5, 17)),
        ("blood pressure today", date(2022, 5, 18)),
    ],
)
def test_weekdays_relative_to_the_record_end(question, day):
    assert _days(parse_time_expression(question, ANCHOR)) == (day, day)


def test_may_the_verb_is_not_a_month():
    assert _days(parse_time_expression("potassium on May 2", ANCHOR)) == (date(2022, 5, 2),) * 2
    assert not parse_time_expression("what tests may be due", ANCHOR).is_filter
    assert not parse_time_expression("she may 5 times a day", ANCHOR).is_filter


def test_open_windows_before_and_after_a_date():
    w = parse_time_expression("How has her creatinine changed since March 3, 2021?", ANCHOR)
    assert _days(w) == (date(2021, 3, 3), None)
    w = parse_time_expression("creatinine after 2020", ANCHOR)
    assert _days(w) == (date(2020, 1, 1), None)
    w = parse_time_expression("creatinine before June 2019", ANCHOR)
    assert _days(w) == (None, date(2019, 6, 30))
    w = parse_time_expression("creatinine before 2019", ANCHOR)
    assert _days(w) == (None, date(2018, 12, 31))
    w = parse_time_expression("creatinine between 1/1/2020 and 3/31/2020", ANCHOR)
    assert _days(w) == (date(2020, 1, 1), date(2020, 3, 31))


def test_relative_spans_count_back_from_the_record_end():
    w = parse_time_expression("labs in the last 6 months", ANCHOR)
    assert w.since is not None and 180 <= (ANCHOR - w.since).days <= 184 and w.until is None
    w = parse_time_expression("vitals in the past 24 hours", ANCHOR)
    assert (ANCHOR - w.since).total_seconds() == 24 * 3600
    w = parse_time_expression("within two weeks", ANCHOR)
    assert (ANCHOR - w.since).days == 14


def test_nothing_to_read():
    for q in ("What medications is she on?", "most recent A1c", "Was the potassium 4.5?", "120/80"):
        w = parse_time_expression(q, ANCHOR)
        assert not w.is_filter and w.phrase is None


def test_calendar_windows_compare_a_chunks_own_dates():
    w = parse_time_expression("on May 5, 2019", ANCHOR)
    west = timezone(-__import__("datetime").timedelta(hours=7))
    evening = datetime(2019, 5, 5, 21, 0, tzinfo=west)  # 2019-05-06 04:00 UTC
    assert overlaps(evening, None, w.since, w.until, by_date=True)
    assert not overlaps(evening, None, w.since, w.until)  # by instant it is the next day
    assert not overlaps(datetime(2019, 5, 6, 9, tzinfo=UTC), None, w.since, w.until, by_date=True)
    assert overlaps(datetime(2019, 1, 1, tzinfo=UTC), datetime(2019, 12, 1, tzinfo=UTC), w.since, w.until, by_date=True)
    assert not overlaps(None, None, w.since, w.until, by_date=True)


@pytest.mark.parametrize(
    "value,start,end",
    [
        ("2022", datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2020-02", datetime(2020, 2, 1, tzinfo=UTC), datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2021-07-04", datetime(2021, 7, 4, tzinfo=UTC), datetime(2021, 7, 4, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2021-07-04T10:30", datetime(2021, 7, 4, 10, 30, tzinfo=UTC), datetime(2021, 7, 4, 10, 30, tzinfo=UTC)),
    ],
)
def test_until_means_the_end_of_the_stated_period(value, start, end):
    assert parse_date_option(value) == start
    assert parse_date_option(value, end=True) == end


def test_bad_option_dates():
    for bad in ("", "22", "2022-13", "May 2022", "2022-02-30"):
        with pytest.raises(ValueError):
            parse_date_option(bad)
