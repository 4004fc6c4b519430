from __future__ import annotations

import socket

import pytest

from ragehr.config import IndexConfig
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
HASHING = IndexConfig(embedder="hashing")


@pytest.fixture(scope="session")
def sample_index_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline-idx")
    [s] = build_indexes([SAMPLE], d, HASHING)
    assert s.status == "built"
    return d


@pytest.fixture()
def no_network(monkeypatch):
    """Fail the test on any attempt to open a network connection or resolve a name."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
