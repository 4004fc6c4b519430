"""The llama-index adapter: same hits as ragehr's own search, as nodes; options pass through;
the core never imports llama-index."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from llama_index.core import Settings
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from ragehr.adapters.llamaindex import METADATA_KEYS, RagehrRetriever
from ragehr.config import IndexConfig, RetrievalConfig
from ragehr.errors import ConfigError
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search
from ragehr.types import EventKind
from tests.conftest import FIXTURES, REPO

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
QUERY = "systolic blood pressure"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    [s] = build_indexes([SAMPLE], d, IndexConfig(embedder="hashing"))
    assert s.status == "built" and s.patient_id == "sample", s
    return d


@pytest.fixture(scope="module")
def index(index_dir):
    return load_patient_index(index_dir, "sample")


def _ids_scores(nodes):
    return [(n.node.node_id, n.score) for n in nodes]


def _expected(index, query, **kwargs):
    hits, _ = search(index, query, **kwargs)
    return [(h.chunk.chunk_id, h.hit.score) for h in hits]


@pytest.mark.parametrize("name", ["hybrid", "bm25", "dense"])
def test_nodes_are_search_hits_in_order(index, name):
    r = RagehrRetriever(index, retriever=name)
    assert isinstance(r, BaseRetriever)
    nodes = r.retrieve(QUERY)
    expected = _expected(index, QUERY, retriever=name)
    assert expected, "the fixture should match the query"
    assert _ids_scores(nodes) == expected
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [n.node.metadata["rank"] for n in nodes] == list(range(1, len(nodes) + 1))


def test_query_bundle_and_k_and_config(index):
    cfg = RetrievalConfig(fusion="weighted", k=4)
    r = RagehrRetriever(index, config=cfg)
    nodes = r.retrieve(QueryBundle(QUERY))
    assert len(nodes) == 4
    assert _ids_scores(nodes) == _expected(index, QUERY, config=cfg)
    assert _ids_scores(RagehrRetriever(index, config=cfg, k=2).retrieve(QUERY)) == _expected(
        index, QUERY, config=cfg, k=2
    )


def test_metadata(index):
    hits, _ = search(index, QUERY)
    nodes = RagehrRetriever(index).retrieve(QUERY)
    assert nodes
    for rc, n in zip(hits, nodes, strict=True):
        c, md = rc.chunk, n.node.metadata
        assert tuple(md) == METADATA_KEYS
        assert n.node.node_id == md["chunk_id"] == c.chunk_id
        assert n.node.get_content() == c.text
        assert md["patient_id"] == "sample"
        assert md["kind"] == c.kind.value
        assert md["start"] == (c.start.isoformat() if c.start else None)
        assert md["end"] == (c.end.isoformat() if c.end else None)
        assert md["sources"] == list(c.sources) and md["sources"]
        assert md["event_ids"] == list(c.event_ids) and md["event_ids"]
        assert (md["visit_id"], md["note_type"], md["title"]) == (c.visit_id, c.note_type, c.title)
        assert md["rank"] == rc.hit.rank
        assert md["components"] == rc.hit.components and set(md["components"]) <= {"bm25", "dense"}
        assert n.node.embedding is None
    notes = [n for n in nodes if n.node.metadata["kind"] == "note"]
    assert notes and any(n.node.metadata["note_type"] for n in notes)
    assert datetime.fromisoformat(nodes[0].node.metadata["start"]).tzinfo is not None


def test_llm_and_embedder_see_only_kind_and_dates(index):
    node = RagehrRetriever(index).retrieve(QUERY)[0].node
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):
        shown = node.get_metadata_str(mode)
        keys = {line.split(":", 1)[0] for line in shown.splitlines()}
        assert keys == {"kind", "start", "end"}, mode
        content = node.get_content(metadata_mode=mode)
        assert node.text in content and f"kind: {node.metadata['kind']}" in content
        assert node.metadata["chunk_id"] not in content
        assert node.metadata["sources"][0] not in content
    assert node.metadata["chunk_id"] in node.get_metadata_str(MetadataMode.ALL)
    wide = RagehrRetriever(index, metadata_visible_keys=("kind", "start", "title", "note_type"))
    keys = {
        line.split(":", 1)[0] for line in wide.retrieve(QUERY)[0].node.get_metadata_str(MetadataMode.LLM).splitlines()
    }
    assert keys == {"kind", "start", "title", "note_type"}


@pytest.mark.parametrize("kinds", [["vital"], [EventKind.VITAL], "vital", ["NOTE", "lab"]])
def test_kinds_pass_through(index, kinds):
    as_enum = {EventKind(k.lower()) for k in ([kinds] if isinstance(kinds, str) else kinds)}
    nodes = RagehrRetriever(index, kinds=kinds).retrieve(QUERY)
    assert nodes
    assert {n.node.metadata["kind"] for n in nodes} <= {k.value for k in as_enum}
    assert _ids_scores(nodes) == _expected(index, QUERY, kinds=as_enum)


def test_time_window_passes_through(index):
    since = datetime(2022, 1, 1, tzinfo=UTC)
    nodes = RagehrRetriever(index, since="2022").retrieve(QUERY)
    assert nodes and all(n.node.metadata["end"] >= since.isoformat() for n in nodes)
    assert _ids_scores(nodes) == _expected(index, QUERY, since=since)
    naive = RagehrRetriever(index, since=datetime(2022, 1, 1), until="2022-12-31").retrieve(QUERY)
    assert _ids_scores(naive) == _expected(index, QUERY, since=since, until=datetime(2022, 12, 31, tzinfo=UTC))
    assert RagehrRetriever(index, since="2100").retrieve(QUERY) == []


def test_question_time_is_read_unless_disabled(index):
    q = f"{QUERY} in 2022"
    with_time = RagehrRetriever(index).retrieve(q)
    assert _ids_scores(with_time) == _expected(index, q)
    assert all(n.node.metadata["start"].startswith("2022") for n in with_time)
    without = RagehrRetriever(index, use_question_time=False).retrieve(q)
    assert _ids_scores(without) == _expected(index, q, use_question_time=False)
    assert any(not (n.node.metadata["start"] or "").startswith("2022") for n in without)


def test_search_method_returns_window(index):
    hits, window = RagehrRetriever(index).search(f"{QUERY} in 2022")
    assert hits and window.since is not None and window.since.year == 2022


def test_from_index_dir(index_dir, index):
    r = RagehrRetriever.from_index_dir(index_dir, "sample", retriever="bm25", k=3)
    assert r.index.dense is None and r.patient_id == "sample"
    assert _ids_scores(r.retrieve(QUERY)) == _expected(index, QUERY, retriever="bm25", k=3)
    hybrid = RagehrRetriever.from_index_dir(index_dir, "sample")
    assert _ids_scores(hybrid.retrieve(QUERY)) == _expected(index, QUERY)


def test_async_matches_sync(index):
    r = RagehrRetriever(index)
    assert _ids_scores(asyncio.run(r.aretrieve(QUERY))) == _ids_scores(r.retrieve(QUERY))


def test_leaves_global_settings_alone(index):
    before = (Settings._llm, Settings._embed_model)
    RagehrRetriever(index).retrieve(QUERY)
    assert (Settings._llm, Settings._embed_model) == before


def test_bad_options_fail_early(index_dir, index):
    with pytest.raises(ConfigError, match="unknown retriever"):
        RagehrRetriever(index, retriever="splade")
    with pytest.raises(ConfigError, match="unknown kind"):
        RagehrRetriever(index, kinds=["vitals"])
    with pytest.raises(ConfigError, match="since"):
        RagehrRetriever(index, since="yesterday")
    with pytest.raises(ConfigError, match="k must be"):
        RagehrRetriever(index, k=0)
    with pytest.raises(ConfigError, match="metadata keys"):
        RagehrRetriever(index, metadata_visible_keys=("text",))
    with pytest.raises(ConfigError, match="PatientIndex"):
        RagehrRetriever(str(index_dir))
    bm25_only = load_patient_index(index_dir, "sample", need_dense=False)
    with pytest.raises(ConfigError, match="dense side"):
        RagehrRetriever(bm25_only)
    assert RagehrRetriever(bm25_only, retriever="bm25").retrieve(QUERY)


def test_core_never_imports_llama_index():
    code = (
        "import ragehr, ragehr.index.search, ragehr.index.build, ragehr.cli; import sys; "
        "assert not any(m.startswith('llama_index') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('llama_index'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
