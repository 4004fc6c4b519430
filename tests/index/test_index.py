"""Persistent indexes: build, no-op rebuild, merge, atomic swap, and every load check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragehr.config import ChunkingConfig, IndexConfig
from ragehr.ehr import load_record
from ragehr.errors import CorruptIndexError, IndexNotFoundError, StaleIndexError
from ragehr.index import store
from ragehr.index.build import build_indexes, merge_records
from ragehr.index.search import load_patient_index, search
from ragehr.types import EventKind
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
CFG = IndexConfig(embedder="hashing", chunking=ChunkingConfig(max_tokens=128))


@pytest.fixture()
def built(tmp_path):
    index_dir = tmp_path / "idx"
    [s] = build_indexes([SAMPLE], index_dir, CFG)
    assert s.status == "built", s
    return index_dir


def test_build_then_noop(built, tmp_path):
    folder = built / "sample"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["patient_id"] == "sample" and manifest["embedder_id"].startswith("hashing")
    assert manifest["sources"][0]["sha256"] == store.sha256_file(SAMPLE)
    assert manifest["counts"]["events"] == 60 and manifest["counts"]["chunks"] > 10
    assert set(manifest["build_seconds"]) >= {"parse", "chunk", "bm25", "embed", "write"}
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    [again] = build_indexes([SAMPLE], built, CFG)
    assert again.status == "unchanged"
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    # --force rebuilds, and every vector comes from the embedding cache
    [forced] = build_indexes([SAMPLE], built, CFG, force=True)
    assert forced.status == "built" and forced.n_embedded == 0


def test_config_change_rebuilds(built):
    [s] = build_indexes([SAMPLE], built, CFG.model_copy(update={"chunking": ChunkingConfig(max_tokens=64)}))
    assert s.status == "built"


def test_search_and_filters(built):
    idx = load_patient_index(built, "sample")
    hits, _ = search(idx, "systolic blood pressure 165", k=3)
    assert hits[0].chunk.kind is EventKind.VITAL and "165" in hits[0].chunk.text
    assert set(hits[0].hit.components) == {"bm25", "dense"}
    hits, window = search(idx, "notes in 2022", kinds=[EventKind.NOTE], k=20)
    assert window.phrase == "in 2022" and hits
    assert all(h.chunk.kind is EventKind.NOTE and h.chunk.start.year == 2022 for h in hits)
    bm25_only, _ = search(idx, "eliquis", retriever="bm25", k=5)
    assert bm25_only and all("eliquis" in h.chunk.text.lower() for h in bm25_only)
    assert [h.hit.rank for h in bm25_only] == list(range(1, len(bm25_only) + 1))


def test_most_recent_puts_the_newest_relevant_chunk_first(built):
    idx = load_patient_index(built, "sample")
    hits, plan = search(idx, "most recent NIHSS", k=5, kinds=[EventKind.LAB])
    assert plan.intent == "latest" and plan.recency
    about = [c for c in idx.stored.chunks if c.kind is EventKind.LAB and "nihss" in c.text.lower()]
    newest = max(c.end or c.start for c in about)
    assert hits[0].chunk.end == newest and "nihss" in hits[0].chunk.text.lower()


def test_unknown_patient_says_how_many_never_which(built):
    """Other patients' ids may be MRNs: the error counts them and says how to list them."""
    with pytest.raises(IndexNotFoundError) as info:
        load_patient_index(built, "nobody")
    msg = str(info.value)
    assert "ragehr index" in msg and "1 patient(s)" in msg and "ragehr patients" in msg
    assert "sample" not in msg.replace(str(built), "")


@pytest.mark.parametrize("pid", ["../../etc", "..", ".", "a/b", "/abs", "x\\y", "", "ok-id_1.2"])
def test_safe_dirname_never_escapes(pid, tmp_path):
    name = store.safe_dirname(pid) if pid else store.safe_dirname("")
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name not in ("", ".", "..")
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    if pid == "ok-id_1.2":
        assert name == pid


def test_distinct_ids_that_sanitise_alike_get_distinct_folders():
    assert store.safe_dirname("a/b") != store.safe_dirname("a_b") == "a_b"
    assert store.safe_dirname("a/b") != store.safe_dirname("a:b")


def test_path_traversal_patient_id_stays_inside(tmp_path):
    rec_dir = tmp_path / "recs"
    rec_dir.mkdir()
    evil = rec_dir / "EHR_..%2F..%2Fevil.xml"
    shutil.copy(SAMPLE, evil)
    index_dir = tmp_path / "idx"
    [s] = build_indexes([evil], index_dir, CFG)
    assert Path(s.index_path).resolve().parent == index_dir.resolve()
    assert load_patient_index(index_dir, "..%2F..%2Fevil").patient_id == "..%2F..%2Fevil"


def test_manifest_version_mismatch_is_stale(built):
    m = built / "sample" / "manifest.json"
    data = json.loads(m.read_text())
    data["format_version"] = 999
    m.write_text(json.dumps(data))
    with pytest.raises(StaleIndexError, match="re-index"):
        load_patient_index(built, "sample")


def test_embedder_mismatch_is_stale(built):
    from ragehr.embeddings.hashing import HashingEmbedder

    with pytest.raises((StaleIndexError, CorruptIndexError), match="re-index"):
        load_patient_index(built, "sample", embedder=HashingEmbedder(dim=64))


@pytest.mark.parametrize("victim", ["chunks.jsonl", "record.json", "dense/vectors.npy", "bm25/ids.json"])
def test_corrupt_or_missing_file(built, victim):
    p = built / "sample" / victim
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(CorruptIndexError, match="re-index"):
        load_patient_index(built, "sample")
    p.unlink()
    with pytest.raises(CorruptIndexError, match="re-index"):
        load_patient_index(built, "sample")


def test_garbage_manifest(built):
    (built / "sample" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="re-index"):
        load_patient_index(built, "sample")


def test_interrupted_build_keeps_old_index(built, monkeypatch):
    """A crash while writing leaves the previous index whole and no temporary folder."""
    before = (built / "sample" / "manifest.json").read_text()

    def boom(self, directory):
        raise KeyboardInterrupt

    from ragehr.retrieval.dense import DenseIndex

    monkeypatch.setattr(DenseIndex, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        build_indexes([SAMPLE], built, CFG, force=True)
    assert (built / "sample" / "manifest.json").read_text() == before
    assert [p.name for p in built.iterdir() if p.name.startswith(".tmp")] == []
    load_patient_index(built, "sample")


def test_crash_between_renames_recovers(built):
    """If the process died after moving the old index aside, loading puts it back."""
    folder = built / "sample"
    folder.rename(built / ".old-sample-deadbeef")
    assert load_patient_index(built, "sample").patient_id == "sample"


def test_bad_file_is_reported_and_others_indexed(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<record><visit>")
    summaries = build_indexes([bad, SAMPLE, tmp_path / "missing.xml"], tmp_path / "idx", CFG)
    statuses = sorted((s.status, s.patient_id) for s in summaries)
    assert statuses == [("built", "sample"), ("failed", ""), ("failed", "")]
    assert any("malformed XML" in (s.message or "") for s in summaries)


def test_files_of_one_patient_merge_and_duplicates_go(tmp_path):
    a = tmp_path / "a" / "EHR_77.xml"
    b = tmp_path / "b" / "77.xml"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copy(SAMPLE, a)
    shutil.copy(SAMPLE, b)
    [s] = build_indexes([a, b], tmp_path / "idx", CFG)
    assert s.patient_id == "77" and s.n_sources == 2
    assert s.duplicates_removed == 60 and s.n_events == 60
    # a later call with one file keeps the other source of the same patient
    [again] = build_indexes([a], tmp_path / "idx", CFG)
    assert again.status == "unchanged" and again.n_sources == 2


def test_merge_records_keeps_first_and_counts():
    rec = load_record(SAMPLE)
    merged, removed = merge_records([rec, rec])
    assert removed == len(rec.events) and merged.events == rec.events


@pytest.mark.parametrize("keep", [0, 130, 10**9])
def test_a_cohort_is_built_without_holding_every_parsed_record(tmp_path, monkeypatch, keep):
    """Past ``KEEP_PARSED_EVENTS`` the first pass drops what it parsed and the patient's
    files are parsed again when it is built; a built patient's records are let go before the
    next is read. The indexes are the same whatever the budget (a patient split over two
    files included)."""
    import gc
    import weakref

    from ragehr.index import build as build_mod

    monkeypatch.setattr(build_mod, "KEEP_PARSED_EVENTS", keep)
    files = []
    for i in range(4):
        f = tmp_path / "in" / f"EHR_{i}.xml"
        f.parent.mkdir(exist_ok=True)
        shutil.copy(SAMPLE, f)
        files.append(f)
    (tmp_path / "in2").mkdir()
    files.append(tmp_path / "in2" / "3.xml")  # patient 3's second file
    shutil.copy(SAMPLE, files[-1])
    parsed_paths: list[str] = []
    alive: list[weakref.ref] = []
    real = build_mod.load_record

    def counting(path):
        rec = real(path)
        parsed_paths.append(Path(path).name)
        alive.append(weakref.ref(rec))
        return rec

    monkeypatch.setattr(build_mod, "load_record", counting)
    seen_alive: list[int] = []
    real_build_one = build_mod._build_one

    def watching(pid, records, *a, **kw):
        gc.collect()
        seen_alive.append(sum(1 for r in alive if r() is not None))
        return real_build_one(pid, records, *a, **kw)

    monkeypatch.setattr(build_mod, "_build_one", watching)
    summaries = build_indexes(files, tmp_path / f"idx{keep}", CFG)
    assert sorted((s.status, s.patient_id, s.n_sources) for s in summaries) == [
        ("built", "0", 1),
        ("built", "1", 1),
        ("built", "2", 1),
        ("built", "3", 2),
    ]
    per_event = 60  # the sample record's events
    kept_files = min(len(files), keep // per_event)
    assert len(parsed_paths) == len(files) + (len(files) - kept_files)  # the dropped ones twice
    if keep == 0:
        # only the patient being built is held: 1 record, or 2 for the patient with two files
        assert max(seen_alive) <= 2 and seen_alive[:3] == [1, 1, 1]
    chunks = {s.patient_id: json.loads((Path(s.index_path) / "manifest.json").read_text())["counts"] for s in summaries}
    assert chunks["3"]["duplicates_removed"] == 60 and chunks["0"] == chunks["1"] == chunks["2"]
