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
