"""Question understanding: intent, time window and concept, from the way people ask."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ragehr.retrieval.intent import INTENTS, concept_text, plan_question

ANCHOR = datetime(2022, 5, 18, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "question,intent",
    [
        ("What was the patient's potassium on May 5, 2019?", "point"),
        ("Potassium 5/5/19?", "point"),
        ("What was her A1c in March 2020?", "point"),
        ("What was the patient's most recent potassium?", "latest"),
        ("latest A1c", "latest"),
        ("What was her last creatinine?", "latest"),
        ("What is her current weight?", "latest"),
        ("newest hemoglobin result", "latest"),
        ("When was the last A1c measured?", "latest"),
        ("When was 'Hypertension' first recorded?", "first"),
        ("When was she diagnosed with diabetes?", "first"),
        ("When did she start metformin?", "first"),
        ("What was her earliest recorded A1c?", "first"),
        ("initial troponin", "first"),
        ("How many times was potassium measured?", "series"),
        ("What was her highest glucose?", "series"),
        ("What is the trend of her creatinine?", "series"),
        ("How has her creatinine changed this year?", "series"),
        ("How has her weight changed since March 3, 2021?", "series"),
        ("weights since May 2020", "series"),
        ("What medications is she currently on?", "current"),
        ("What are her active medications?", "current"),
        ("current problems", "current"),
        ("Is the patient still taking warfarin?", "current"),
        ("What anticoagulant is she on now?", "current"),
        ("Does the patient have a penicillin allergy?", "none"),
        ("labs in 2019", "none"),
        # cue words inside a measurement's own name are not cues
        ("What is the most recent Mean Arterial Pressure?", "latest"),
        ("MCV [Entitic mean volume] on 2019-05-05", "point"),
        ("What was her mean glucose in 2021?", "series"),
    ],
)
def test_intent(question, intent):
    assert plan_question(question, ANCHOR).intent == intent


def test_every_intent_is_listed():
    assert {"point", "latest", "first", "series", "current", "none"} == set(INTENTS)


def test_last_n_units_and_last_weekday_are_windows_not_latest():
    p = plan_question("potassium values in the last 6 months", ANCHOR)
    assert p.intent != "latest" and p.since is not None
    p = plan_question("What was her blood pressure last Tuesday?", ANCHOR)
    assert p.intent == "point" and p.window.target.date() == date(2022, 5, 17)


def test_concept_drops_time_and_intent_words_but_keeps_the_thing_asked_about():
    assert plan_question("What was the patient's most recent Potassium?", ANCHOR).concept == "Potassium"
    assert plan_question("What was the patient's potassium on May 5, 2019?", ANCHOR).concept == "potassium"
    c = plan_question("What was the patient's Hemoglobin A1c/Hemoglobin.total in Blood on 05/05/2019?", ANCHOR).concept
    assert c == "Hemoglobin A1c/Hemoglobin.total in Blood".replace(" in ", " ")
    assert plan_question("When was 'Hypertension' first recorded?", ANCHOR).concept == "'Hypertension'"
    assert plan_question("When was she diagnosed with type 2 diabetes?", ANCHOR).concept == "type 2 diabetes"
    assert "medications" in plan_question("What medications is she currently on?", ANCHOR).concept


def test_concept_falls_back_to_the_question():
    assert concept_text("What is the most recent?") == "What is the most recent?"


def test_explicit_bounds_win_and_keep_the_question_text():
    since = datetime(2020, 1, 1, tzinfo=UTC)
    p = plan_question("potassium on May 5, 2019", ANCHOR, since=since)
    assert p.since == since and p.until is None and p.window.span is None
    assert "2019" in p.concept


def test_question_time_can_be_ignored():
    p = plan_question("potassium on May 5, 2019", ANCHOR, use_question_time=False)
    assert not p.is_filter


def test_plan_json_is_plain():
    p = plan_question("most recent A1c in 2021", ANCHOR)
    j = p.to_json()
    assert j["intent"] == "latest" and j["since"].startswith("2021-01-01") and j["fallback"] is None
    assert j["time_phrase"] == "in 2021"


@pytest.mark.parametrize(
    "question,anchor",
    [
        ("How has her NIHSS changed since her stroke?", ("since", "stroke")),
        ("blood pressure after the surgery", ("since", "surgery")),
        ("What was her A1c before starting metformin?", ("before", "metformin")),
        ("creatinine prior to the kidney transplant", ("before", "kidney transplant")),
    ],
)
def test_event_anchors(question, anchor):
    p = plan_question(question, ANCHOR)
    assert p.event_anchor == anchor and anchor[1] not in p.concept


@pytest.mark.parametrize(
    "question", ["take after meals", "labs before 2019", "potassium since May 2019", "after 2 weeks"]
)
def test_not_event_anchors(question):
    assert plan_question(question, ANCHOR).event_anchor is None


def test_a_measurement_named_with_a_cue_word_keeps_its_name():
    assert plan_question("What is the most recent Mean Arterial Pressure?", ANCHOR).concept == "Mean Arterial Pressure"


@pytest.mark.parametrize(
    "question,intent,concept",
    [
        ("What was her potassium on 6-May-2024?", "point", "potassium"),
        ("Potassium 06-MAY-24", "point", "Potassium"),
        ("What was the LDL cholesterol on the 6th of May 2024?", "point", "LDL cholesterol"),
        ("What was her A1c in Q2 2024?", "point", "A1c"),
        ("What was her weight in spring of 2021?", "point", "weight"),
        ("Highest creatinine in mid-2021?", "series", "creatinine"),
        ("How many times was INR measured in the first half of 2022?", "series", "INR"),
        ("How has her weight changed since May 2020?", "series", "weight"),
        ("Most recent A1c in late 2020", "latest", "A1c"),
    ],
)
def test_new_date_forms_leave_the_concept_and_keep_the_intent(question, intent, concept):
    p = plan_question(question, ANCHOR)
    assert (p.intent, p.concept) == (intent, concept) and p.is_filter
