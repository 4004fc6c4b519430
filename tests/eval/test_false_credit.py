"""Every false credit issue 11 lists, as a scored answer that must get no credit.

Each case went through ``score_answer`` with accuracy 1.0 before the strict scoring (checked by
running this file against the previous code); now each must score 0 (or, for the list dump,
well below 1). The last test keeps the honest answers correct, so strictness is not bought by
rejecting everything."""

from __future__ import annotations

import pytest

from ragehr.eval.generated import QAItem
from ragehr.eval.metrics import score_answer


def _item(question: str = "q?", **kw: object) -> QAItem:
    base: dict[str, object] = dict(item_id="0" * 16, patient_id="p", question=question, qtype="x", depth=0.5)
    base.update(kw)
    return QAItem(**base)  # type: ignore[arg-type]


NEVER = _item("Has the patient ever been prescribed warfarin?", answer="no", answer_type="yes_no", answer_value="no")
SBP = _item(
    "What is the most recent Systolic blood pressure?",
    answer="120 mm[Hg]",
    answer_type="number",
    answer_value=120.0,
    unit="mm[Hg]",
)
TEMP = _item(
    "What is the most recent Body temperature?", answer="37.3 Cel", answer_type="number", answer_value=37.3, unit="Cel"
)
BMI = _item("What is the most recent BMI?", answer="80", answer_type="number", answer_value=80.0)
HUNDRED = _item("What is the most recent platelet count?", answer="100", answer_type="number", answer_value=100.0)
FIRST_DX = _item("When was asthma first diagnosed?", answer="2019-03-02", answer_type="date", answer_value="2019-03-02")
YEAR = _item("In which year was the first MRI?", answer="2019", answer_type="date", answer_value="2019")
VISITS = _item("How many encounters did the patient have in 2019?", answer="3", answer_type="count", answer_value=3)
ONE = _item("How many encounters did the patient have in 2019?", answer="1", answer_type="count", answer_value=1)
ZERO = _item("How many encounters did the patient have in 2019?", answer="0", answer_type="count", answer_value=0)
K = _item(
    "What is the most recent Potassium?", answer="4.1 mmol/L", answer_type="number", answer_value=4.1, unit="mmol/L"
)
ALLERGIES = _item(
    "What allergies does the patient have?",
    answer="Shellfish allergy; Dander (animal) allergy",
    answer_type="list",
    answer_items=("Dander (animal) allergy", "Shellfish allergy"),
    answer_value="Shellfish allergy; Dander (animal) allergy",
)

TEN_DATES = "Relevant evidence from the record:\n" + "\n".join(
    f"- 2019-{m:02d}-02 | condition | Asthma [{m}]" for m in range(1, 11)
).replace("2019-01-02", "2019-03-02", 1)


@pytest.mark.parametrize(
    "answer, item",
    [
        # abstentions read as a correct "no" (every backend's wording, and the prompt's own)
        ("No evidence in the record matches the question.", NEVER),
        ("No evidence found.", NEVER),
        ("The record provided does not say.", NEVER),
        ("I don't know; there is not enough information.", NEVER),
        # yes/no read past the first sentence (a quoted evidence line, then a stray "no")
        ("Warfarin 5 mg tablet, 2019-03-02 [1]. No dose changes were recorded.", NEVER),
        # any of several dates
        (TEN_DATES, FIRST_DX),
        ("Asthma was diagnosed on 2019-03-02, 2020-01-05 or 2021-07-07.", FIRST_DX),
        # a year-only gold matched by any number equal to the year
        ("The glucose was 2019 mg/dL.", YEAR),
        ("Platelets 2019 and 2020 on file.", YEAR),
        # counts: any numeral, and "one"/"none" as counts
        ("3 or 4 visits.", VISITS),
        ("The patient had 2 encounters for asthma and 3 for diabetes.", VISITS),
        ("One of the encounters was for asthma.", ONE),
        ("None of the labs were abnormal.", ZERO),
        # loose numeric tolerance, unitless comparison
        ("The systolic pressure was 121 mmHg.", SBP),
        ("Temperature 37.0 degC.", TEMP),
        ("She weighs 80 kg.", BMI),
        ("101", HUNDRED),
        # several candidate values for a single-valued question
        ("Potassium: 3.9 mmol/L, 4.1 mmol/L, 4.6 mmol/L.", K),
    ],
)
def test_no_credit(answer: str, item: QAItem) -> None:
    assert score_answer(answer, item)["accuracy"] == 0.0


def test_abstentions_are_counted_as_abstained() -> None:
    for answer in (
        "No evidence in the record matches the question.",
        "No evidence found.",
        "The record provided does not say.",
        "Cannot be determined from the record.",
    ):
        s = score_answer(answer, NEVER)
        assert s["abstained"] == 1.0 and s["accuracy"] == 0.0, answer


def test_dumping_the_record_does_not_score_a_list() -> None:
    dump = "Allergies and everything else: " + ", ".join(
        ["Shellfish allergy", "Dander (animal) allergy"] + [f"Condition {i}" for i in range(30)]
    )
    assert score_answer(dump, ALLERGIES)["accuracy"] < 0.2


@pytest.mark.parametrize(
    "answer, item",
    [
        ("No, there is no record of warfarin [1].", NEVER),
        ("The record does not mention warfarin.", NEVER),
        ("The most recent systolic pressure was 120 mmHg on 2021-03-04 [2].", SBP),
        ("BP 120/80 mm Hg [1].", SBP),
        ("37.3 °C", TEMP),
        ("99.1 °F", TEMP),  # 37.28 °C
        ("BMI 80.", BMI),
        ("100", HUNDRED),
        ("Asthma was first diagnosed on March 2, 2019 [1].", FIRST_DX),
        ("- 2019-03-02 10:00 | condition | Asthma | SNOMED 195967001 [1]", FIRST_DX),
        ("The first MRI was in 2019.", YEAR),
        ("2019", YEAR),
        ("The patient had 3 encounters in 2019 [1][2][3].", VISITS),
        ("Three visits.", VISITS),
        ("One encounter, on 2019-05-01 [1].", ONE),
        ("No encounters in 2019.", ZERO),
        ("- 2021-06-01 | lab | Potassium: 4.1 mmol/L | LOINC 2823-3 [1]", K),
        ("Dander (animal) allergy; Shellfish allergy [1]", ALLERGIES),
    ],
)
def test_honest_answers_keep_their_credit(answer: str, item: QAItem) -> None:
    assert score_answer(answer, item)["accuracy"] == 1.0
