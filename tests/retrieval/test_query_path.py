"""The query path of an opened index touches no file: everything is read once, at open."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pytest

from ragehr.config import IndexConfig
from ragehr.embeddings import QueryLRU
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "medalign" / "EHR_sample.xml"


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("idx")
    [s] = build_indexes([SAMPLE], d, IndexConfig(embedder="hashing"))
    assert s.status == "built"
    return load_patient_index(d, s.patient_id)


def test_search_reads_no_file_after_the_index_is_open(opened, monkeypatch: pytest.MonkeyPatch) -> None:
    search(opened, "blood pressure", k=5)  # first query may build lazy in-memory views
    opened_files: list[str] = []

    def refuse(*args, **kwargs):
        opened_files.append(str(args[0]) if args else "?")
        raise AssertionError(f"file opened on the query path: {args[:1]}")

    for mod, name in ((builtins, "open"), (io, "open"), (os, "open"), (np, "load"), (np, "fromfile")):
        monkeypatch.setattr(mod, name, refuse)
    for q in ("blood pressure", "potassium in 2019", "latest creatinine", "metformin"):
        for retriever in ("hybrid", "bm25", "dense"):
            search(opened, q, k=5, retriever=retriever)
    assert opened_files == []


def test_the_opened_index_remembers_repeated_questions(opened) -> None:
    assert isinstance(opened.embedder, QueryLRU)
    before = opened.embedder.hits
    a, _ = search(opened, "hemoglobin a1c trend", k=5)
    b, _ = search(opened, "hemoglobin a1c trend", k=5)
    assert opened.embedder.hits == before + 1
    assert [h.chunk.chunk_id for h in a] == [h.chunk.chunk_id for h in b]


QUESTIONS = (
    "blood pressure",
    "potassium in 2019",
    "latest creatinine",
    "metformin",
    "first MRI",
    "what medications is she on",
    "sodium since 2018",
)


def test_row_searches_are_the_record_searches(opened) -> None:
    """``search_rows`` (the query path's arrays) and ``search`` (records) agree, with a filter too."""
    ids = opened.bm25.ids
    mask = np.zeros(len(ids), dtype=bool)
    mask[::3] = True
    for q in QUESTIONS:
        for allowed in (None, mask):
            rows, scores = opened.bm25.search_rows(q, 20, allowed=allowed)
            assert [(ids[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)] == [
                (h.chunk_id, h.score) for h in opened.bm25.search(q, 20, allowed=allowed)
            ]
            qv = opened.embedder.embed([q])[0]
            rows, scores = opened.dense.search_rows(qv, 20, allowed=allowed)
            assert [(opened.dense.ids[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)] == [
                (h.chunk_id, h.score) for h in opened.dense.search(qv, 20, allowed=allowed)
            ]


def test_a_dense_side_in_another_row_order_ranks_the_same(opened) -> None:
    """The fused query path maps dense rows onto BM25 rows when the two sides list chunks in
    different orders: results equal those of the index as built (same ids, scores, components)."""
    from ragehr.index.search import PatientIndex
    from ragehr.retrieval.dense import DenseIndex

    perm = np.random.default_rng(0).permutation(len(opened.dense.ids))
    shuffled = DenseIndex.build(opened.dense.vectors[perm], [opened.dense.ids[i] for i in perm], opened.dense.model_id)
    other = PatientIndex(stored=opened.stored, bm25=opened.bm25, dense=shuffled, embedder=opened.embedder)
    assert tuple(shuffled.ids) != tuple(opened.bm25.ids)
    for q in QUESTIONS:
        for retriever in ("hybrid", "dense"):
            a, _ = search(opened, q, k=10, retriever=retriever)
            b, _ = search(other, q, k=10, retriever=retriever)
            assert [h.hit for h in a] == [h.hit for h in b]


def test_sides_holding_different_chunks_are_refused(opened) -> None:
    from ragehr.errors import StaleIndexError
    from ragehr.index.search import PatientIndex
    from ragehr.retrieval.dense import DenseIndex

    fewer = DenseIndex.build(opened.dense.vectors[1:], list(opened.dense.ids[1:]), opened.dense.model_id)
    other = PatientIndex(stored=opened.stored, bm25=opened.bm25, dense=fewer, embedder=opened.embedder)
    with pytest.raises(StaleIndexError, match="different chunks"):
        search(other, "blood pressure", k=5)


def test_a_time_table_in_another_row_order_filters_the_same(opened) -> None:
    """Time and kind filters are masks over the BM25 side's rows; a time table listing the
    chunks in another order is mapped onto them (same hits for windowed questions)."""
    from ragehr.index.search import PatientIndex, _TimeTable
    from ragehr.types import EventKind

    other = PatientIndex(stored=opened.stored, bm25=opened.bm25, dense=opened.dense, embedder=opened.embedder)
    starts = {e.event_id: e.start for e in opened.stored.record.events}
    other.memo["time-table"] = _TimeTable.of(list(reversed(opened.stored.chunks)), starts)
    assert other.time_table().ids != tuple(opened.bm25.ids)
    for q in ("potassium in 2019", "sodium since 2018", "labs before 2015", "latest creatinine"):
        a, _ = search(opened, q, k=10)
        b, _ = search(other, q, k=10)
        assert [h.hit for h in a] == [h.hit for h in b]
    kinds = [EventKind.LAB]
    assert opened.allowed(None, None, kinds) == other.allowed(None, None, kinds)
    a, _ = search(opened, "blood pressure", k=10, kinds=kinds)
    b, _ = search(other, "blood pressure", k=10, kinds=kinds)
    assert [h.hit for h in a] == [h.hit for h in b]
