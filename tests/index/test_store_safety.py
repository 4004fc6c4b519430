"""The index store never destroys what is not its own, locks each patient across processes,
recovers only its own exact temporary names, and reports write failures in one line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ragehr.cli import main as cli_main
from ragehr.config import ChunkingConfig, IndexConfig
from ragehr.errors import IndexNotFoundError, IndexWriteError, NotAnIndexError
from ragehr.index import store
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index
from tests.conftest import FIXTURES, REPO

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
CFG = IndexConfig(embedder="hashing", chunking=ChunkingConfig(max_tokens=128))


@pytest.fixture()
def built(tmp_path):
    index_dir = tmp_path / "idx"
    [s] = build_indexes([SAMPLE], index_dir, CFG)
    assert s.status == "built", s
    return index_dir


def _record(tmp_path: Path, pid: str) -> Path:
    p = tmp_path / "records" / f"EHR_{pid}.xml"
    p.parent.mkdir(exist_ok=True)
    shutil.copy(SAMPLE, p)
    return p


def test_a_user_folder_is_never_replaced(tmp_path):
    """Issue 15 (1): `ragehr index EHR_important.xml --index-dir victim` used to delete it."""
    victim = tmp_path / "victim"
    (victim / "important").mkdir(parents=True)
    (victim / "important" / "thesis.txt").write_text("years of work")
    for force in (False, True):
        [s] = build_indexes([_record(tmp_path, "important")], victim, CFG, force=force)
        assert s.status == "failed" and s.exit_code == 3 and "victim/important" in s.message
        assert (victim / "important" / "thesis.txt").read_text() == "years of work"
        assert sorted(p.name for p in victim.iterdir()) == [".lock-important", "important"]


def test_opening_a_user_folder_does_not_suggest_deleting_it(tmp_path):
    (tmp_path / "idx" / "mine").mkdir(parents=True)
    with pytest.raises(NotAnIndexError) as info:
        load_patient_index(tmp_path / "idx", "mine")
    msg = str(info.value)
    assert "not a ragehr index" in msg and "re-index" not in msg and "delete" not in msg


def test_swap_refuses_a_foreign_folder_directly(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "manifest.json").write_text('{"name": "web app"}')
    (tmp_path / "p" / "index.js").write_text("x")
    tmp = store.new_tmp_dir(tmp_path, "p")
    with pytest.raises(NotAnIndexError):
        store.swap_in(tmp, tmp_path, "p")
    assert (tmp_path / "p" / "index.js").exists()


def test_a_damaged_manifest_makes_the_folder_not_ours_even_with_only_index_file_names(built):
    """Issue 24: ownership is what the manifest says, never file names. A folder whose
    manifest is unreadable is refused (exit 3, named) even though every name in it is an
    index file's; the user removes it, and then --force builds."""
    (built / "sample" / "manifest.json").write_text("{trunc")
    before = {p.name: p.read_bytes() for p in (built / "sample").iterdir() if p.is_file()}
    [s] = build_indexes([SAMPLE], built, CFG, force=True)
    assert s.status == "failed" and s.exit_code == 3 and "not one ragehr wrote" in s.message
    assert {p.name: p.read_bytes() for p in (built / "sample").iterdir() if p.is_file()} == before
    shutil.rmtree(built / "sample")
    [s] = build_indexes([SAMPLE], built, CFG, force=True)
    assert s.status == "built"
    load_patient_index(built, "sample")


@pytest.mark.parametrize(
    "doc",
    [
        None,  # no manifest.json, only record.json
        {"name": "my web app"},
        {"format": "ragehr-index", "patient_id": "someone-else", "files": {}},  # another patient's
        {"format": "something-else", "patient_id": "sample", "files": {}},
        ["format_version", "ragehr_version", "patient_id", "config_hash", "files"],
    ],
)
def test_a_user_folder_named_like_the_layout_is_not_ours(tmp_path, doc):
    """Issue 24 (high): a folder holding only ``manifest.json``/``record.json`` by name."""
    d = tmp_path / "idx" / "sample"
    d.mkdir(parents=True)
    (d / "record.json").write_text('{"mine": true}')
    if doc is not None:
        (d / "manifest.json").write_text(json.dumps(doc))
    assert not store.is_own_index(d)
    [s] = build_indexes([SAMPLE], tmp_path / "idx", CFG, force=True)
    assert s.status == "failed" and s.exit_code == 3
    assert (d / "record.json").read_text() == '{"mine": true}'
    expected = ["record.json"] + (["manifest.json"] if doc is not None else [])
    assert sorted(p.name for p in d.iterdir()) == sorted(expected)


def test_an_index_built_now_carries_the_format_marker(built):
    doc = json.loads((built / "sample" / "manifest.json").read_text())
    assert doc["format"] == "ragehr-index" and doc["patient_id"] == "sample"
    assert store.is_own_index(built / "sample")
    assert not store.is_own_index(built / "sample", safe="other")


def test_recovery_matches_exact_names_only(built):
    """Issue 15 (4): recovery of `john` must not touch `john-smith`'s folders (nor `a_b`
    another id whose safe name starts the same)."""
    for pid in ("john", "john-smith", "a_b", "a/b"):
        shutil.copytree(built / "sample", built / store.safe_dirname(pid))
        m = built / store.safe_dirname(pid) / "manifest.json"
        doc = json.loads(m.read_text())
        doc["patient_id"] = pid
        m.write_text(json.dumps(doc))
    others = [
        ".tmp-john-smith-0123abcd",
        ".old-john-smith-89abcdef",
        ".tmp-john-0123abcd-x",
        ".tmp-john-ABCDEF12",
        f".tmp-{store.safe_dirname('a/b')}-0123abcd",
    ]
    for name in others:
        shutil.copytree(built / "sample", built / name)
    (built / ".tmp-john-0123abcd").mkdir()
    (built / ".tmp-a_b-0123abcd").mkdir()
    load_patient_index(built, "john", need_dense=False)
    load_patient_index(built, "a_b", need_dense=False)
    names = {p.name for p in built.iterdir()}
    assert ".tmp-john-0123abcd" not in names and ".tmp-a_b-0123abcd" not in names
    assert set(others) <= names


def test_recovery_restores_a_lone_old_index_but_never_a_foreign_one(built):
    (built / "sample").rename(built / ".old-sample-deadbeef")
    assert load_patient_index(built, "sample", need_dense=False).patient_id == "sample"
    (built / ".old-other-deadbeef").mkdir()
    (built / ".old-other-deadbeef" / "notes.txt").write_text("mine")
    with pytest.raises(IndexNotFoundError):
        load_patient_index(built, "other", need_dense=False)
    assert (built / ".old-other-deadbeef" / "notes.txt").exists() and not (built / "other").exists()


_HOLDER = """
import sys, time
from pathlib import Path
from ragehr.index import store
index_dir, safe = Path(sys.argv[1]), sys.argv[2]
with store.patient_lock(index_dir, safe):
    tmp = index_dir / f".tmp-{safe}-0123abcd"
    tmp.mkdir()
    (tmp / "chunks.jsonl").write_text("being written")
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_reader_never_deletes_a_live_writers_temporary_folder(built):
    """Issue 15 (3): opening an index while `index --force` writes must leave its temporary
    folder alone; once the writer dies (kill -9 releases the lock), recovery removes it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(built), "sample"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        tmp = built / ".tmp-sample-0123abcd"
        for _ in range(3):
            assert load_patient_index(built, "sample", need_dense=False).patient_id == "sample"
        assert (tmp / "chunks.jsonl").read_text() == "being written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    load_patient_index(built, "sample", need_dense=False)
    assert not tmp.exists()


def test_a_reader_during_a_build_in_this_process_leaves_the_build_whole(built, monkeypatch):
    """The same race within one process (flock locks are per open file): a reader opening the
    index while the build writes its temporary folder does not break the build."""
    from ragehr.retrieval.dense import DenseIndex

    real_save = DenseIndex.save
    seen = []

    def save_and_read(self, directory):
        seen.append(load_patient_index(built, "sample", need_dense=False).patient_id)
        return real_save(self, directory)

    monkeypatch.setattr(DenseIndex, "save", save_and_read)
    [s] = build_indexes([SAMPLE], built, CFG, force=True)
    assert s.status == "built" and seen == ["sample"]
    load_patient_index(built, "sample")


def test_every_file_0600_every_folder_0700(built):
    folder = built / "sample"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    paths = list(folder.rglob("*"))
    assert any(p.name == "record.json" for p in paths) and any(p.name == "chunks.jsonl" for p in paths)
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_index_reverifies_before_saying_unchanged(built):
    """Issue 15 (7): a corrupted index was reported "unchanged"; now it is rebuilt."""
    p = built / "sample" / "chunks.jsonl"
    data = p.read_bytes()
    p.write_bytes(data[:-10] + b"X" * 10)  # same size, new content and mtime
    [s] = build_indexes([SAMPLE], built, CFG)
    assert s.status == "built"
    load_patient_index(built, "sample")
    # only a touch: sizes equal, mtime differs, sha256s match -> still unchanged
    os.utime(built / "sample" / "record.json", ns=(1, 1))
    [s] = build_indexes([SAMPLE], built, CFG)
    assert s.status == "unchanged"


def test_dash_id_never_becomes_a_dash_folder(tmp_path):
    """Issue 15 (7): an id `-rf` must not become a folder named `-rf`."""
    for pid in ("-rf", "--force", "-"):
        name = store.safe_dirname(pid)
        assert not name.startswith("-") and not name.startswith(".")
    [s] = build_indexes([_record(tmp_path, "-rf")], tmp_path / "idx", CFG)
    assert s.status == "built" and not Path(s.index_path).name.startswith("-")
    assert load_patient_index(tmp_path / "idx", "-rf", need_dense=False).patient_id == "-rf"
    assert store.safe_dirname("-rf") != store.safe_dirname("rf")


def test_full_disk_is_one_line_exit_3_old_index_intact(built, tmp_path, monkeypatch, capsys):
    """Issue 15 (6): ENOSPC while writing: one line, exit 3, the old index whole, no leftovers."""
    before = (built / "sample" / "manifest.json").read_text()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("index:\n  embedder: hashing\n  chunking:\n    max_tokens: 128\n")

    def full(folder, chunks):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_chunks", full)
    with pytest.raises(SystemExit) as info:
        cli_main(["index", str(SAMPLE), "--index-dir", str(built), "--force", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert info.value.code == 3 and err.count("\n") == 1, err
    assert err.startswith("ragehr: error: could not write the index") and "No space left on device" in err
    assert (built / "sample" / "manifest.json").read_text() == before
    assert not [p for p in built.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    monkeypatch.undo()
    load_patient_index(built, "sample")


def test_write_failed_is_an_index_error():
    e = store.write_failed(OSError(errno.ENOSPC, "No space left on device"), "x\x1b", Path("d"))
    assert isinstance(e, IndexWriteError) and e.exit_code == 3 and "\x1b" not in str(e)


def test_patients_command(built, tmp_path, capsys):
    shutil.copytree(built / "sample", built / "MRN-1")
    m = built / "MRN-1" / "manifest.json"
    doc = json.loads(m.read_text())
    doc["patient_id"] = "MRN\x1b-1"
    m.write_text(json.dumps(doc))
    (built / "not-an-index").mkdir()
    with pytest.raises(SystemExit) as info:
        cli_main(["patients", "--index-dir", str(built), "--json"])
    out, err = capsys.readouterr()
    assert info.value.code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["patient_id"] for r in rows) == ["MRN\x1b-1", "sample"]
    assert all(r["n_events"] == 60 and r["first_time"].startswith("2018") for r in rows)
    # which vectors each index has (static is the default now; older indexes may be MiniLM's)
    assert all(r["embedder"] == "hashing" and r["embedder_id"].startswith("hashing") for r in rows)
    assert "2 patient(s)" in err
    with pytest.raises(SystemExit):
        cli_main(["patients", "--index-dir", str(built)])
    out, _ = capsys.readouterr()
    assert "\x1b" not in out and "MRN\\x1b-1" in out and "sample" in out
    assert "hashing vectors" in out
    with pytest.raises(SystemExit) as info:
        cli_main(["patients", "--index-dir", str(tmp_path / "none")])
    assert info.value.code == 0 and "0 patient(s)" in capsys.readouterr().err


def test_hostile_id_is_escaped_in_index_and_inspect_output(tmp_path, capsys):
    """An id from the record (an MRN, or a hostile one) never reaches the terminal raw."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p\x1b[2J\x07"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Potassium"},
                    "effectiveDateTime": "2020-01-01",
                    "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
                }
            },
        ],
    }
    p = tmp_path / "x.json"
    p.write_text(json.dumps(bundle))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("index:\n  embedder: hashing\n")
    for args in (
        ["inspect", str(p)],
        ["index", str(p), "--index-dir", str(tmp_path / "idx"), "--config", str(cfg)],
        ["patients", "--index-dir", str(tmp_path / "idx")],
    ):
        with pytest.raises(SystemExit) as info:
            cli_main(args)
        out, err = capsys.readouterr()
        assert info.value.code == 0, err
        assert "\x1b" not in out + err and "\x07" not in out + err and "p\\x1b[2J\\x07" in out, (args, out)
