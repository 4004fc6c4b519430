"""Metrics: hand-worked examples, properties, and cross-checks against independent
implementations (rouge-score, sacrebleu's corpus chrF++, scipy's tau through a brute-force
count)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.embeddings import load_embedder
from ragehr.eval.generated import QAItem
from ragehr.eval.metrics import (
    bertscore_f1_minilm,
    chrf_pp,
    count_match,
    date_match,
    embedding_similarity_minilm,
    evidence_recall,
    evidence_recall_ids,
    exact_match,
    find_number_mentions,
    kendall_tau,
    list_f1,
    list_match,
    mrr,
    ndcg_at_k,
    normalize_text,
    numeric_match,
    parse_yes_no,
    recall_at_k,
    rouge_l,
    score_answer,
    token_f1,
    yes_no_match,
)

L2 = math.log2

# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------

RANKED = [["e1", "e2"], ["e3"], ["e4", "e5"], ["e6"]]
GOLD = ["e3", "e5", "e9"]  # e9 is in no chunk


def test_evidence_recall_ids() -> None:
    # gold {e3, e5, e9}; packed holds e3 and e5 -> 2/3
    assert evidence_recall_ids(["e1", "e3", "e5", "e5"], GOLD) == pytest.approx(2 / 3)
    assert evidence_recall_ids(["e1"], ["e3", "e3"]) == 0.0  # duplicates in gold count once
    assert evidence_recall_ids(["e1"], []) is None


def test_evidence_recall_is_span_level() -> None:
    """A gold fact counts only when its own text is in the packed text: a piece of the same
    note, or the cut half of the same day's lab panel, does not count."""
    line_k = "2019-03-02 10:00 | lab | Potassium: 4.1 mmol/L | LOINC 2823-3"
    line_na = "2019-03-02 10:00 | lab | Sodium: 139 mmol/L | LOINC 2951-2"
    packed = "[1] Lab results on 2019-03-02:\n...mmol/L | LOINC 2823-3\n" + line_na + "\n"
    assert evidence_recall(packed, [line_k, line_na]) == 0.5
    assert evidence_recall(packed.replace("\n", "\n  "), [line_na]) == 1.0  # whitespace-insensitive
    planted = "Her potassium was noted at 6.2 during the admission."
    note_other_chunk = "[2] 2019-03-04 | note | Discharge summary\nPlan: follow up in clinic."
    assert evidence_recall(note_other_chunk, [planted]) == 0.0
    assert evidence_recall("x", []) is None


def test_evidence_recall_credits_facts_shown_as_series_rows_and_nothing_else() -> None:
    """A fact packed as a row of a per-concept series table (``shown``) counts; a flag never
    credits a fact twice, a fact not flagged still needs its own line, and the flags must
    pair with the gold texts."""
    line_k = "2019-03-02 10:00 | lab | Potassium: 4.1 mmol/L | LOINC 2823-3"
    line_na = "2019-03-02 10:00 | lab | Sodium: 139 mmol/L | LOINC 2951-2"
    table = "[1] Potassium (LOINC 2823-3): lab values in mmol/L in 2019, rows 1-1 of 1:\n2019-03-02: 4.1\n"
    assert evidence_recall(table, [line_k, line_na]) == 0.0
    assert evidence_recall(table, [line_k, line_na], [True, False]) == 0.5
    assert evidence_recall(table, [line_k, line_k], [True, False]) == 1.0  # one fact, counted once
    assert evidence_recall(table + line_na, [line_k, line_na], [False, False]) == 0.5
    with pytest.raises(ValueError, match="flags"):
        evidence_recall(table, [line_k, line_na], [True])


def test_series_rows_shown_follows_the_packers_kept_rows(tmp_path) -> None:
    """The eval credits exactly the events whose rows a packed series piece kept: all of a
    whole piece, only the surviving rows of a cut one, none from a day chunk."""
    from types import SimpleNamespace

    from ragehr.eval.runner import series_rows_shown
    from ragehr.packing import kept_event_ids

    series = SimpleNamespace(concept="LOINC 2823-3")
    day = SimpleNamespace(concept=None)

    def chunk(cid: str):
        if cid == "visit-1":
            raise KeyError(cid)  # visit documents and record text are not chunks of the index
        return series if cid == "s" else day

    index = SimpleNamespace(chunk=chunk)
    whole = SimpleNamespace(chunk_id="s", event_ids=("e1", "e2", "e3"))
    day_piece = SimpleNamespace(chunk_id="d", event_ids=("e9",))
    visit = SimpleNamespace(chunk_id="visit-1", event_ids=("e8",))
    assert series_rows_shown(index, SimpleNamespace(items=(whole, day_piece, visit))) == {"e1", "e2", "e3"}
    from datetime import UTC, datetime

    from ragehr.types import Chunk, EventKind

    chunk = Chunk(
        chunk_id="s",
        patient_id="p",
        kind=EventKind.LAB,
        start=datetime(2019, 1, 1, tzinfo=UTC),
        end=datetime(2019, 3, 1, tzinfo=UTC),
        text="Potassium: lab values in 2019, rows 1-3 of 3:\n2019-01-01: 4.0\n2019-02-01: 4.4\n2019-03-01: 5.1",
        n_tokens=30,
        event_ids=("e1", "e2", "e3"),
        sources=("f#1", "f#2", "f#3"),
        concept="LOINC 2823-3",
    )
    cut = "Potassium: lab values in 2019, rows 1-3 of 3:\n2019-01-01: 4.0\n2019-02-01: 4.4\n2019-03-0"
    kept = SimpleNamespace(chunk_id="s", event_ids=kept_event_ids(chunk, cut))
    assert series_rows_shown(index, SimpleNamespace(items=(kept,))) == {"e1", "e2"}


def test_recall_at_k_hand_worked() -> None:
    assert recall_at_k(RANKED, GOLD, 1) == 0.0  # {e1, e2}: no gold
    assert recall_at_k(RANKED, GOLD, 2) == pytest.approx(1 / 3)  # + e3
    assert recall_at_k(RANKED, GOLD, 3) == pytest.approx(2 / 3)  # + e5
    assert recall_at_k(RANKED, GOLD, 4) == pytest.approx(2 / 3)  # e6 is not gold
    assert recall_at_k(RANKED, GOLD, 10) == pytest.approx(2 / 3)  # shorter ranking used whole
    assert recall_at_k(RANKED, [], 3) is None
    with pytest.raises(ValueError):
        recall_at_k(RANKED, GOLD, 0)


def test_mrr_hand_worked() -> None:
    assert mrr(RANKED, GOLD) == 0.5  # first chunk with a gold id is rank 2
    assert mrr(RANKED, ["e6"]) == 0.25
    assert mrr(RANKED, ["zz"]) == 0.0
    assert mrr(RANKED, []) is None


def test_ndcg_hand_worked() -> None:
    # gains at ranks 1..4: [0, 1, 1, 0]
    # DCG@4 = 1/log2(3) + 1/log2(4) = 0.630930 + 0.5 = 1.130930
    # IDCG@4: min(4, |gold| = 3) = 3 relevant positions: 1 + 1/log2(3) + 1/log2(4) = 2.130930
    # nDCG@4 = 1.130930 / 2.130930 = 0.530721
    dcg = 1 / L2(3) + 1 / L2(4)
    idcg = 1 + 1 / L2(3) + 1 / L2(4)
    assert ndcg_at_k(RANKED, GOLD, 4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, GOLD, 4) == pytest.approx(0.530721, abs=1e-6)
    # @2: DCG = 1/log2(3) = 0.63093; IDCG = 1 + 1/log2(3) = 1.63093 -> 0.386853
    assert ndcg_at_k(RANKED, GOLD, 2) == pytest.approx(0.386853, abs=1e-6)
    assert ndcg_at_k(RANKED, GOLD, 1) == 0.0
    assert ndcg_at_k(RANKED, [], 3) is None
    # perfect: one gold id per chunk, at the top
    assert ndcg_at_k([["a"], ["b"], ["x"]], ["a", "b"], 3) == pytest.approx(1.0)


def test_ndcg_documented_edge_cases() -> None:
    # one event in two overlapping chunks: the second adds nothing new, so nDCG stays 1, not
    # (1 + 1/log2 3) / 1 = 1.63
    assert ndcg_at_k([["e1"], ["e1", "e2"]], ["e1"], 2) == pytest.approx(1.0)
    # three gold events bundled in one chunk ranked first: 1 / (1 + 1/log2 3 + 1/2) = 0.469279
    assert ndcg_at_k([["a", "b", "c"]], ["a", "b", "c"], 3) == pytest.approx(0.469279, abs=1e-6)


ids = st.sampled_from([f"e{i}" for i in range(8)])
rankings = st.lists(st.lists(ids, max_size=3), max_size=6)


@settings(max_examples=200, deadline=None)
@given(rankings, st.lists(ids, min_size=1, max_size=4), st.integers(1, 8))
def test_retrieval_properties(ranked: list[list[str]], gold: list[str], k: int) -> None:
    r = recall_at_k(ranked, gold, k)
    n = ndcg_at_k(ranked, gold, k)
    assert r is not None and n is not None
    assert 0.0 <= r <= 1.0 and 0.0 <= n <= 1.0 + 1e-12
    assert recall_at_k(ranked, gold, k + 1) >= r  # type: ignore[operator]
    assert (n > 0) == (r > 0)
    rr = mrr(ranked, gold)
    assert rr is not None and 0.0 <= rr <= 1.0
    assert (rr >= 1 / k) == (r > 0)


# ---------------------------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------------------------


def test_normalize_and_exact_match() -> None:
    assert normalize_text("  The  Blood-Pressure, [2] is  HIGH! ") == "bloodpressure is high"
    assert normalize_text("mm[Hg]") == "mmhg"
    assert exact_match("Yes.", "yes")
    assert exact_match("An apple", "apple")
    assert not exact_match("165 mmHg", "165")


def test_token_f1_hand_worked() -> None:
    # pred tokens: [bp, was, 165], gold: [165, mmhg]; common = {165} -> P = 1/3, R = 1/2
    # F1 = 2 * (1/3) * (1/2) / (1/3 + 1/2) = (1/3) / (5/6) = 0.4
    assert token_f1("BP was 165", "165 mmHg") == pytest.approx(0.4)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


# ---------------------------------------------------------------------------------------------
# Numbers and units
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "unit", "expected"),
    [
        ("165 mm[Hg]", 165, "mm[Hg]", True),
        ("The systolic pressure was 165 mmHg [2].", 165, "mm[Hg]", True),
        ("165 mm Hg", 165, "mm[Hg]", True),
        ("BP 165/95 mm Hg", 165, "mm[Hg]", True),  # 165 has no unit right after it
        ("166.5 mmHg", 165, "mm[Hg]", False),  # 1.5 mmHg off: not the value charted
        ("167 mmHg", 165, "mm[Hg]", False),  # 2 / 167 = 1.2% > 1%
        # 80 kg = 80 / 0.45359237 lb = 176.37 lb
        ("80 kg", 176.37, "[lb_av]", True),
        ("80kg", 176.37, "[lb_av]", True),
        ("80 kg", 80, "cm", False),  # mass vs length
        ("80 kg", 80, "kg", True),
        ("176.4 lbs", 80, "kg", True),  # 176.4 * 0.45359237 = 80.014 kg
        ("about 80 kilograms", 80, "kg", True),
        ("80 kg/m2", 80, "kg", False),  # BMI unit is not kg
        ("80,000 mg", 80, "g", True),
        ("5 ft", 152.4, "cm", True),  # 5 * 30.48
        ("69 inches", 175.26, "cm", True),  # 69 * 2.54
        ("65 in.", 165.1, "cm", True),
        ("She weighed 80 in 2019", 80, "kg", True),  # "in" before a year is a preposition
        ("1.75 m", 175, "cm", True),
        # 37 °C = 37 * 9/5 + 32 = 98.6 °F
        ("37 °C", 98.6, "[degF]", True),
        ("37 degrees Celsius", 98.6, "[degF]", True),
        ("98.6 F", 37, "Cel", True),
        ("98.6 °F", 98.6, "Cel", False),
        ("5.4 mmol/L", 5.4, "mg/dL", False),  # different units, no conversion known
        ("5.4 mg/dl", 5.4, "mg/dL", True),
        ("72 beats per minute", 72, "/min", True),
        ("72 bpm", 72, "/min", True),
        ("72 kg", 72, "/min", False),
        ("7.2%", 7.2, "%", True),
        ("eGFR 62 mL/min/1.73 m2", 62, "mL/min/{1.73_m2}", True),  # gold unit with a space
        ("WBC 7.5 x10^9/L", 7.5, "10*9/L", True),
        ("WBC 7.5 x10^9/L", 7.5, "10*3/uL", False),
        ("score of 12 points", 12, "{score}", True),  # "points" is not a unit
        ("It was 6 on 2019-03-02 [3].", 3, None, False),  # marker and date digits skipped
        ("It was 6 on 2019-03-02 [3].", 6, None, True),
        ("1,000", 1000, None, True),
        ("HbA1c 7.2", 1, None, False),  # the 1 of A1c is not a number
        ("-2.5", -2.5, None, True),
        ("no value", 3, None, False),
    ],
)
def test_numeric_match(pred: str, gold: float, unit: str | None, expected: bool) -> None:
    assert numeric_match(pred, gold, unit) is expected


def test_numeric_match_tolerances() -> None:
    """Equal at the gold's recorded precision (at most 3 significant digits) or within the
    unit's absolute tolerance; no relative tolerance."""
    assert not numeric_match("101", 100)
    assert not numeric_match("121 mmHg", 120, "mm[Hg]", gold_text="120 mm[Hg]")
    assert numeric_match("120 mmHg", 120.359, "mm[Hg]", gold_text="120.359 mm[Hg]")  # 3 significant digits
    assert not numeric_match("37.0 degC", 37.3, "Cel", gold_text="37.3 Cel")
    assert numeric_match("37.3 °C", 37.3, "Cel", gold_text="37.3 Cel")
    assert numeric_match("11.3 fL", 11.3024, "fL", gold_text="11.3024 fL")
    assert not numeric_match("11.4 fL", 11.3024, "fL", gold_text="11.3024 fL")
    assert numeric_match("0.0", 0.0, gold_text="0.0")


def test_find_number_mentions_skips_enumerators_and_dates() -> None:
    text = "1. Weight 80 kg on March 2, 2019\n2) Height 170 cm (10/08/2018)"
    got = [(m.value, m.unit) for m in find_number_mentions(text)]
    assert got == [(80.0, "kg"), (170.0, "cm")]


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred",
    [
        "2019-03-02",
        "It was first diagnosed on 2019-03-02 [1].",
        "03/02/2019",
        "3/2/2019",
        "3/2/19",
        "March 2, 2019",
        "Mar. 2nd 2019",
        "2 March 2019",
        "2019/03/02",
        "2019-03-02T08:15:00",
    ],
)
def test_date_match_formats(pred: str) -> None:
    assert date_match(pred, "2019-03-02")


@pytest.mark.parametrize("pred", ["2019-02-03", "March 3, 2019", "2019", "no date", "[2019]"])
def test_date_match_rejects(pred: str) -> None:
    assert not date_match(pred, "2019-03-02")


def test_date_match_partial_gold() -> None:
    assert date_match("in March 2019", "2019-03")
    assert date_match("on 2019-03-17", "2019-03")
    assert date_match("3/2019", "2019-03")
    assert not date_match("in April 2019", "2019-03")
    assert date_match("sometime in 2019", "2019")
    assert date_match("on 5/6/2019", "2019")
    assert not date_match("in 2018", "2019")
    with pytest.raises(ValueError):
        date_match("x", "March 2019")


# ---------------------------------------------------------------------------------------------
# Yes / no
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("No, she has never been prescribed warfarin.", "no"),
        ("Yes, she was prescribed warfarin in 2015 [2].", "yes"),
        ("Yes. It is not active any more.", "yes"),  # first word decides
        ("She has not been prescribed warfarin.", "no"),
        ("The patient hasn't received warfarin.", "no"),
        ("There is no record of warfarin.", "no"),
        ("Warfarin was never prescribed.", "no"),
        ("Based on the record [1], yes.", "yes"),
        ("I don't know.", None),
        ("It cannot be determined from the record.", None),
        ("She was prescribed warfarin [1].", None),  # no cue: not read as yes
        ("", None),
        ("Nope", "no"),
    ],
)
def test_parse_yes_no(pred: str, expected: str | None) -> None:
    assert parse_yes_no(pred) == expected


def test_yes_no_match() -> None:
    assert yes_no_match("No, she has never been prescribed warfarin", "no")
    assert not yes_no_match("No, she has never been prescribed warfarin", "yes")
    assert not yes_no_match("Unclear from the notes", "no")  # unknown is False
    with pytest.raises(ValueError):
        yes_no_match("yes", "maybe")


# ---------------------------------------------------------------------------------------------
# Lists and counts
# ---------------------------------------------------------------------------------------------

FLU = "Influenza, seasonal, injectable, preservative free"


def test_list_recall_hand_worked() -> None:
    gold = [FLU, "Td (adult)", "Hep B, adult"]
    # the flu name is matched across punctuation changes; Td matched; Hep B missing -> 2/3
    pred = "In 2019 she received influenza seasonal injectable preservative-free and Td adult [1]."
    assert list_match(pred, gold) == pytest.approx(2 / 3)
    assert list_match("Asthmatic bronchitis", ["Asthma"]) == 0.0  # word boundaries
    assert list_match("anything", []) == 1.0


def test_list_f1_hand_worked() -> None:
    gold = [FLU, "Td (adult)"]
    # lead-in before ":" dropped; items: FLU | Td (adult) | Hep B -> found 2, listed 3
    # P = 2/3, R = 2/2 = 1, F1 = 2 * (2/3) / (2/3 + 1) = 0.8
    pred = f"The patient received: {FLU}; Td (adult) [1], and Hep B."
    recall, precision, f1 = list_f1(pred, gold)
    assert (recall, precision, f1) == pytest.approx((1.0, 2 / 3, 0.8))
    # bullets: 3 items listed, both gold items found -> R = 2/2 = 1, P = 2/3
    bullets = "- Aspirin\n- Metformin 500 MG\n- Lisinopril"
    recall, precision, _ = list_f1(bullets, ["aspirin", "lisinopril"])
    assert (recall, precision) == pytest.approx((1.0, 2 / 3))
    # nothing found: all zero
    assert list_f1("Metformin", ["aspirin"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("She had 3 encounters in 2019 [2].", 3, True),
        ("three visits", 3, True),
        ("She was seen twice.", 2, True),
        ("2 encounters", 3, False),
        ("1. visit on 2019-01-02\n2. visit on 2019-05-06", 1, False),  # enumerators skipped
        ("None", 0, True),
    ],
)
def test_count_match(pred: str, gold: int, expected: bool) -> None:
    assert count_match(pred, gold) is expected


# ---------------------------------------------------------------------------------------------
# score_answer
# ---------------------------------------------------------------------------------------------


def _item(**kw: object) -> QAItem:
    base: dict[str, object] = dict(item_id="0" * 16, patient_id="p", question="q?", qtype="latest_value", depth=0.5)
    base.update(kw)
    return QAItem(**base)  # type: ignore[arg-type]


def test_score_answer_dispatch() -> None:
    num = _item(answer="165 mm[Hg]", answer_type="number", answer_value=165.0, unit="mm[Hg]")
    assert score_answer("It was 165 mmHg [1].", num) == {"accuracy": 1.0, "exact_match": 0.0, "abstained": 0.0}
    assert score_answer("165 mm[Hg]", num)["exact_match"] == 1.0

    d = _item(answer="2019-03-02", answer_type="date", answer_value="2019-03-02")
    assert score_answer("March 2, 2019", d)["accuracy"] == 1.0

    yn = _item(answer="no", answer_type="yes_no", answer_value="no")
    assert score_answer("No, never.", yn) == {"accuracy": 1.0, "exact_match": 0.0, "abstained": 0.0}
    assert score_answer("Unclear.", yn) == {"accuracy": 0.0, "exact_match": 0.0, "abstained": 1.0}

    c = _item(answer="3", answer_type="count", answer_value=3)
    assert score_answer("three", c)["accuracy"] == 1.0

    lst = _item(
        answer="aspirin; lisinopril",
        answer_type="list",
        answer_value="aspirin; lisinopril",
        answer_items=("aspirin", "lisinopril"),
    )
    s = score_answer("Aspirin", lst)
    # R = 1/2, P = 1/1, F1 = 2 * 1/2 / (3/2) = 2/3
    expected = {"accuracy": 2 / 3, "exact_match": 0.0, "abstained": 0.0, "recall": 0.5, "precision": 1.0, "f1": 2 / 3}
    assert s == pytest.approx(expected)
    assert score_answer("Aspirin and lisinopril", lst)["accuracy"] == 1.0

    txt = _item(answer="Never smoker", answer_type="text", answer_value="Never smoker")
    s = score_answer("The patient is a never smoker [4].", txt)
    assert s["accuracy"] == 1.0 and 0 < s["token_f1"] < 1 and 0 < s["rouge_l"] < 1
    assert list(s)[0] == "accuracy"


# ---------------------------------------------------------------------------------------------
# ROUGE-L and chrF++
# ---------------------------------------------------------------------------------------------


def test_rouge_l_hand_worked() -> None:
    # pred: the cat sat on the mat (6); ref: the cat is on the mat (6)
    # LCS = the cat on the mat = 5; P = R = 5/6 -> F = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # pred: blood pressure was high (4); ref: the blood pressure is very high today (7)
    # LCS = blood pressure high = 3; P = 3/4, R = 3/7; F = 2 * 3/4 * 3/7 / (3/4 + 3/7)
    #   = (18/28) / (33/28) = 18/33 = 0.545454...
    got = rouge_l("Blood pressure was high", "the blood pressure is very high today")
    assert got == pytest.approx(18 / 33)
    assert rouge_l("", "x") == 0.0 and rouge_l("a b", "c d") == 0.0


VOCAB = ["the", "cat", "sat", "on", "mat", "a", "dog", "7", "BP", "mm[Hg]", "cat."]
words = st.lists(st.sampled_from(VOCAB), max_size=12)


@settings(max_examples=200, deadline=None)
@given(words, words)
def test_rouge_l_matches_rouge_score(p: list[str], r: list[str]) -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pred, ref = " ".join(p), " ".join(r)
    expected = scorer.score(ref, pred)["rougeL"].fmeasure  # score(target, prediction)
    assert rouge_l(pred, ref) == pytest.approx(expected, abs=1e-12)


def test_chrf_pp_matches_corpus_chrf() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    pred = "The patient's blood pressure was 165 mmHg."
    ref = "Blood pressure 165/95 mmHg on 2019-03-02."
    corpus = sacrebleu.corpus_chrf([pred], [[ref]], word_order=2).score / 100
    assert chrf_pp(pred, ref) == pytest.approx(corpus, abs=1e-12)
    assert chrf_pp(ref, ref) == pytest.approx(1.0)
    assert 0.0 < chrf_pp(pred, ref) < 1.0


# ---------------------------------------------------------------------------------------------
# Kendall's tau
# ---------------------------------------------------------------------------------------------


def test_kendall_tau_hand_worked() -> None:
    # x = 1 2 3 4, y = 1 3 2 4: of the 6 pairs only (2,3) is discordant -> C = 5, D = 1
    # tau = (5 - 1) / 6 = 0.6667 (no ties, so tau-b = tau-a)
    tau, p = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    assert tau == pytest.approx(2 / 3)
    assert 0.0 < p <= 1.0
    # with ties: x = 1 2 2 3, y = 1 2 3 3; pairs: (1,2) C, (1,3) C, (1,4) C, (2,3) tie in x,
    # (2,4) C, (3,4) tie in y. C = 4, D = 0, n0 = 6, n1 = 1, n2 = 1:
    # tau-b = 4 / sqrt((6 - 1)(6 - 1)) = 0.8
    tau, _ = kendall_tau([1, 2, 2, 3], [1, 2, 3, 3])
    assert tau == pytest.approx(0.8)


def test_kendall_tau_drops_missing() -> None:
    tau, _ = kendall_tau([1, None, 2, 3, float("nan"), 4], [1, 5, 3, 2, 1, 4])
    assert tau == pytest.approx(2 / 3)  # the pairs left are the first example's
    assert all(math.isnan(v) for v in kendall_tau([1, None], [1, 2]))
    assert all(math.isnan(v) for v in kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=12))
def test_kendall_tau_b_brute_force(pairs: list[tuple[int, int]]) -> None:
    x, y = [a for a, _ in pairs], [b for _, b in pairs]
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tx += sx == 0
        ty += sy == 0
        c += sx * sy > 0
        d += sx * sy < 0
    n0 = len(x) * (len(x) - 1) // 2
    tau, _ = kendall_tau(x, y)
    if tx == n0 or ty == n0:
        assert math.isnan(tau)
    else:
        assert tau == pytest.approx((c - d) / math.sqrt((n0 - tx) * (n0 - ty)))


# ---------------------------------------------------------------------------------------------
# Embedding similarity and BERTScore-style F1
# ---------------------------------------------------------------------------------------------


def test_embedding_similarity_with_hashing_embedder() -> None:
    emb = load_embedder("hashing")
    texts = ["blood pressure high", "x"]
    sims = embedding_similarity_minilm(texts, ["blood pressure high", "y"], emb)
    assert sims[0] == pytest.approx(1.0, abs=1e-6)
    assert embedding_similarity_minilm([], [], emb) == []
    with pytest.raises(ValueError):
        embedding_similarity_minilm(["a"], [], emb)


def test_import_is_light() -> None:
    code = (
        "import sys, ragehr.eval.metrics, ragehr.eval.stats; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'scipy', 'sacrebleu') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


REF = "The patient's blood pressure was 165/95 mmHg at the visit."


@pytest.mark.models
def test_bertscore_f1_minilm() -> None:
    related = "Blood pressure measured 165 over 95 mm Hg during the appointment."
    unrelated = "The invoice was paid by credit card yesterday afternoon."
    scores = bertscore_f1_minilm([REF, related, unrelated], [REF, REF, REF])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[2] < scores[1] < scores[0]
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    assert bertscore_f1_minilm([], []) == []


@pytest.mark.models
def test_embedding_similarity_minilm() -> None:
    emb = load_embedder("minilm")
    same, rel, unrel = embedding_similarity_minilm(
        [REF, "Blood pressure 165/95.", "Credit card invoice paid."], [REF, REF, REF], emb
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert unrel < rel


def test_sentence_transformers_is_imported_only_in_embeddings() -> None:
    """Read as imports (``ast``), so a module merely naming the package (the extras table of
    ``ragehr/extras.py``) is not an offender, and one importing it anywhere is."""
    import ast

    from tests.conftest import REPO

    def imports(path: Path) -> set[str]:
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.add(node.module.split(".")[0])
        return out

    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "ragehr").rglob("*.py")
        if "sentence_transformers" in imports(p) and "embeddings" not in p.parts
    ]
    assert offenders == []
    assert "sentence_transformers" in imports(REPO / "ragehr" / "embeddings" / "sentence.py")


def test_registry_drives_the_report() -> None:
    """Every registered metric a row carries is aggregated, with nothing hard-coded: a row
    with only ``abstained`` gets an abstention rate per condition."""
    from ragehr.eval.metrics import REGISTRY, text_metric_names
    from ragehr.eval.report import aggregate

    assert {"accuracy", "abstained", "evidence_recall", "bertscore"} <= set(REGISTRY)
    assert set(text_metric_names()) == {"rouge_l", "chrf", "bertscore"}
    assert not REGISTRY["abstained"].higher_is_better and REGISTRY["accuracy"].higher_is_better
    rows = [
        {
            "condition": "c",
            "dataset": "d",
            "strategy": "rag",
            "budget": 512,
            "retriever": "bm25",
            "backend": "b",
            "item_id": str(i),
            "abstained": float(i % 2),
        }
        for i in range(4)
    ]
    (s,) = aggregate(rows, resamples=100, seed=0)
    assert s["abstained"] == 0.5 and "accuracy" not in s


@pytest.mark.models
def test_bertscore_is_wired_into_the_runner() -> None:
    from ragehr.eval.datasets import EvalItem
    from ragehr.eval.runner import score_prediction

    item = EvalItem(item_id="x", dataset="d", patient_id="p", question="q?", reference=REF)
    out = score_prediction(item, REF, "", [], ("rouge_l", "bertscore"))
    assert out["bertscore"] == pytest.approx(1.0, abs=1e-5) and out["rouge_l"] == 1.0
    assert out["abstained"] == 0.0


def test_expected_figures_with_a_print_tolerance() -> None:
    from ragehr.eval.experiment import Expectation
    from ragehr.eval.report import check_expectations

    summary = [{"condition": "c", "strategy": "rag", "budget": 2048, "accuracy": 0.5249}]
    ok = Expectation(metric="accuracy", where={"strategy": "rag", "budget": 2048}, op="==", value=0.52, tol=0.005)
    off = Expectation(metric="accuracy", where={"strategy": "rag"}, op="==", value=0.53, tol=0.005)
    missing = Expectation(metric="accuracy", where={"strategy": "recent"}, value=0.1)
    res = check_expectations(summary, (ok, off, missing))
    assert [r["ok"] for r in res] == [True, False, False]
