"""False credit on the computed paths (issue 20): the wordings the computed answers use, each in
a form that must earn nothing — a decline, several analytes for one value, a trend for a latest
value, the nearest values for a day that has none, a partly shown count's second number, and a
count answer for the wrong window — and the honest forms that must stay correct, so strictness
is not bought by rejecting everything. The texts are what :mod:`ragehr.answers.wording` writes
(checked by ``tests/answers``), scored by the eval's own :func:`score_answer`."""

from __future__ import annotations

import pytest

from ragehr.answers import decline_text
from ragehr.eval.generated import QAItem
from ragehr.eval.metrics import score_answer


def _item(question: str, **kw: object) -> QAItem:
    base: dict[str, object] = dict(item_id="0" * 16, patient_id="p", question=question, qtype="x", depth=0.5)
    base.update(kw)
    return QAItem(**base)  # type: ignore[arg-type]


LDL = _item(
    "What is the most recent Cholesterol in LDL?",
    answer="131 mg/dL",
    answer_type="number",
    answer_value=131.0,
    unit="mg/dL",
)
K_DAY = _item(
    "What was the Potassium on 2019-05-01?", answer="4.4 mmol/L", answer_type="number", answer_value=4.4, unit="mmol/L"
)
K_LATEST = _item(
    "What is the most recent Potassium?", answer="4 mmol/L", answer_type="number", answer_value=4.0, unit="mmol/L"
)
K_COUNT = _item("How many times was Potassium measured?", answer="5", answer_type="count", answer_value=5)
VISITS = _item("How many encounters did the patient have in 2019?", answer="3", answer_type="count", answer_value=3)
HTN = _item("Is Essential hypertension still active?", answer="yes", answer_type="yes_no", answer_value="yes")
MEDS = _item(
    "Which medications was the patient taking on 2019-02-05?",
    answer="Amoxicillin 500 MG Oral Capsule; Lisinopril 10 MG Oral Tablet",
    answer_type="list",
    answer_items=("Amoxicillin 500 MG Oral Capsule", "Lisinopril 10 MG Oral Tablet"),
    answer_value="Amoxicillin 500 MG Oral Capsule; Lisinopril 10 MG Oral Tablet",
)

WRONG = [
    pytest.param(decline_text("nothing in the record's structured events matches 'LDL'"), LDL, id="decline"),
    pytest.param(
        "The question matches 3 things in the record; each is given:\n"
        "- The most recent Cholesterol total was 212 mg/dL on 2020-02-10 [1].\n"
        "- The most recent Cholesterol in HDL was 48 mg/dL on 2020-02-10 [1].\n"
        "- The most recent Cholesterol in LDL was 131 mg/dL on 2020-02-10 [1].",
        LDL,
        id="three-analytes-for-one-value",
    ),
    pytest.param(
        "No Potassium is recorded on the date asked. Nearest before: 4.4 mmol/L on 2019-03-14 [2] (48 days "
        "earlier); after: 3.6 mmol/L on 2019-07-01 [3] (61 days later).",
        K_DAY,
        id="nearest-values-for-a-day-without-one",
    ),
    pytest.param(
        "Potassium: 5 values from 2019-01-03 to 2021-05-02; it was stable, from 4.1 mmol/L on 2019-01-03 [1] to "
        "4 mmol/L on 2021-05-02 [5]. Lowest 3.6 mmol/L on 2019-07-01 [3]; highest 5.2 mmol/L on 2019-03-14 [2].",
        K_LATEST,
        id="trend-for-a-latest-value",
    ),
    pytest.param(
        "Potassium was measured 3 times in the period asked [1-3] (from 2019-01-03 to 2019-07-01).",
        K_COUNT,
        id="count-for-the-wrong-window",
    ),
    pytest.param(
        "The patient had 2 encounters in the period asked [1, 2] (from 2019-01-03 to 2019-03-14).",
        VISITS,
        id="wrong-visit-count",
    ),
    pytest.param(
        "No. Essential hypertension is recorded as resolved (latest entry 2019-02-01 [4]).", HTN, id="status-no"
    ),
    pytest.param(
        decline_text('the record does not say whether "Essential hypertension" is still active'),
        HTN,
        id="status-decline",
    ),
]

RIGHT = [
    pytest.param("The most recent Cholesterol in LDL was 131 mg/dL on 2020-02-10 [1].", LDL, id="latest"),
    pytest.param("Potassium was measured 5 times [1-3] (from 2019-01-03 to 2021-05-02).", K_COUNT, id="count"),
    pytest.param(
        "Potassium was measured 5 times [1] (the evidence shown holds 2 of them, from 2019-01-03 to 2019-03-14).",
        K_COUNT,
        id="count-partly-shown",
    ),
    pytest.param(
        "The patient had 3 encounters in the period asked [1-3] (from 2019-01-03 to 2019-07-01).", VISITS, id="visits"
    ),
    pytest.param("Yes. Essential hypertension is recorded as active (latest entry 2018-06-01 [2]).", HTN, id="status"),
    pytest.param(
        "Medications active on 2019-02-05:\n- Amoxicillin 500 MG Oral Capsule [3]\n- Lisinopril 10 MG Oral Tablet [1]",
        MEDS,
        id="list",
    ),
]


@pytest.mark.parametrize("answer, item", WRONG)
def test_computed_wordings_that_must_earn_nothing(answer, item):
    assert score_answer(answer, item)["accuracy"] == 0.0


def test_a_declined_computed_answer_is_an_abstention():
    s = score_answer(decline_text("the question asks for language"), LDL)
    assert s["abstained"] == 1.0 and s["accuracy"] == 0.0


@pytest.mark.parametrize("answer, item", RIGHT)
def test_honest_computed_wordings_stay_correct(answer, item):
    assert score_answer(answer, item)["accuracy"] == 1.0
