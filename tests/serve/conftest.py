"""Fixtures of the web page's tests: a small index (the MedAlign sample, hashing embedder)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ragehr[serve]')")

from ragehr.config import IndexConfig
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
HASHING = IndexConfig(embedder="hashing")


@pytest.fixture(scope="session")
def serve_index_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-idx")
    [s] = build_indexes([SAMPLE], d, HASHING)
    assert s.status == "built"
    return d
