"""benchmarks/bench_vocab.py: the shorthand question set's rewrite rules."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_vocab

NAMES = {
    "potassium [moles/volume] in blood",
    "body mass index",
    "body mass index (bmi) [ratio]",
    "lasix 40mg",
    "10 ml furosemide 10 mg/ml injection",
    "renal panel",
}


def test_every_form_names_its_source_and_none_is_an_issue_example():
    rows = bench_vocab.read_forms()
    assert len(rows) >= 70 and all(r["form"] and r["source"] and r["type"] for r in rows)
    issue_21 = {
        "K",
        "Ca",
        "Cr",
        "TC",
        "trigs",
        "HR",
        "RR",
        "ht",
        "wt",
        "Hct",
        "RBC",
        "SGPT",
        "LDL",
        "LDL-C",
        "HTN",
        "OP",
        "IPV",
        "domestic violence",
        "Toprol XL",
    }
    assert not issue_21 & {r["form"] for r in rows}


def test_a_unique_name_is_rewritten_an_ambiguous_one_is_not():
    forms = bench_vocab.read_forms()
    q, row = bench_vocab.rewrite("What was the latest Potassium [Moles/volume] in Blood?", NAMES, forms)
    assert q == "What was the latest K+?" and row["form"] == "K+"
    assert bench_vocab.rewrite("What was the latest Body Mass Index?", NAMES, forms) is None  # two names match
    # "Lasix" is also another name of the record: the rewrite would be ambiguous
    assert bench_vocab.rewrite("When was 10 ML Furosemide 10 MG/ML Injection first prescribed?", NAMES, forms) is None
    assert bench_vocab.rewrite("How many encounters in 2020?", NAMES, forms) is None
