"""Shorthand questions find the record's coded names through retrieval, and the plan and
``context --json`` say how the question was read. The record is the chronic one of
``test_time_search`` (potassium, sodium, creatinine, glucose every two weeks)."""

from __future__ import annotations

import pytest

from ragehr.config import IndexConfig
from ragehr.ehr.medalign import write_medalign_xml
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search
from ragehr.pipeline.context import build_context, context_json
from ragehr.retrieval import concepts
from ragehr.tokens import EstimateCounter
from tests.index.test_time_search import _line_in, _potassium, _record


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    path = d / "chronic.xml"
    path.write_text(write_medalign_xml(_record()), encoding="utf-8")
    [s] = build_indexes([path], d / "idx", IndexConfig(embedder="hashing"))
    assert s.status == "built", s
    return load_patient_index(d / "idx", s.patient_id)


@pytest.mark.parametrize("retriever", ["hybrid", "bm25"])
def test_latest_k_finds_the_newest_potassium_and_says_how_it_read_k(idx, retriever):
    newest = _potassium(idx)[-1]
    hits, plan = search(idx, "latest K?", k=3, retriever=retriever)
    assert plan.intent == "latest"
    assert _line_in(hits[0].chunk, newest)
    [m] = [m for m in plan.concepts if m.term == "K"]
    assert m.concept.code == "2823-3" and m.via == "abbreviation"
    assert plan.to_json()["concepts"][0]["label"] == '"K" -> Potassium [Moles/volume] in Serum or Plasma (LOINC 2823-3)'


def test_without_the_vocabularies_k_finds_nothing_about_potassium(idx):
    newest = _potassium(idx)[-1]
    saved = list(concepts.EXPANDERS)
    concepts.EXPANDERS.clear()
    try:
        hits, plan = search(idx, "latest K?", k=3)
    finally:
        concepts.EXPANDERS[:] = saved
    assert plan.concepts == () and not _line_in(hits[0].chunk, newest)


def test_context_json_lists_the_concepts_and_the_expansion(idx):
    ctx = build_context(
        idx, "How many times was Cr checked?", strategy="rag", budget_tokens=1024, counter=EstimateCounter()
    )
    out = context_json(ctx)
    assert [c["code"] for c in out["concepts"]] == ["2160-0"]
    assert out["expansion"] == "Creatinine"
    plain = context_json(
        build_context(
            idx, "How many times was creatinine checked?", strategy="rag", budget_tokens=1024, counter=EstimateCounter()
        )
    )
    assert plain["expansion"] is None and [c["via"] for c in plain["concepts"]] == ["name"]


def test_an_event_anchor_in_a_brand_name_finds_the_generic_start(idx):
    pytest.importorskip("drug_named_entity_recognition")
    warfarin = next(e for e in idx.stored.record.events if e.text.startswith("warfarin"))
    _, plan = search(idx, "potassium since starting Coumadin", k=3)
    assert plan.since is not None and plan.since.date() == warfarin.start.date()
