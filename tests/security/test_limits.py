"""Issue 24, part A, below the CLI: the one ownership judge, bounded line reading in the
streaming readers (NDJSON bulk exports, JSONL questions), the read-only generation cache,
run folders that say they are ragehr's from their first file, and terminal escapes in
``inspect``'s cohort listing."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragehr import fsutil
from ragehr.cli import app
from ragehr.config import IndexConfig
from ragehr.errors import ConfigError
from ragehr.eval.experiment import ExperimentConfig
from ragehr.eval.runner import _mark_run, run_dir_for
from ragehr.fsutil import check_plain_name, iter_bounded_lines, open_regular, ragehr_made, same_file
from ragehr.index.build import build_indexes
from ragehr.llm import cache as gencache
from ragehr.llm.cache import CachedBackend
from ragehr.llm.extractive import ExtractiveBackend
from ragehr.pipeline import batch
from ragehr.pipeline.batch import BackendRecipe, read_done, read_questions, run_batch
from ragehr.pipeline.spec import ContextSpec
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"


@pytest.fixture(scope="module")
def sample_index_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("limits-idx")
    [s] = build_indexes([SAMPLE], d, IndexConfig(embedder="hashing"))
    assert s.status == "built"
    return d


# -- the ownership judge --------------------------------------------------------------------


def _manifest(folder: Path, doc: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def test_ragehr_made_reads_the_manifest_not_file_names(tmp_path):
    good = {"format": "ragehr-index", "patient_id": "p", "files": {}}
    assert ragehr_made(_manifest(tmp_path / "a", good), "index")
    assert ragehr_made(tmp_path / "a", "index", patient_id="p")
    assert not ragehr_made(tmp_path / "a", "index", patient_id="q")  # another patient's
    assert not ragehr_made(tmp_path / "a", "run")  # an index is not a run folder
    legacy = {"format_version": 1, "ragehr_version": "0.9", "patient_id": "p", "config_hash": "x", "files": {}}
    assert ragehr_made(_manifest(tmp_path / "old", legacy), "index")  # written before the marker
    for i, doc in enumerate(
        [
            {"format": "ragehr-index"},
            {"name": "web app"},
            [],
            "ragehr-index",
            {**good, "format": "RAGEHR-INDEX"},
            {**good, "files": []},
            {**legacy, "format": "x"},
        ]
    ):
        assert not ragehr_made(_manifest(tmp_path / f"n{i}", doc), "index"), doc
    assert ragehr_made(_manifest(tmp_path / "r", {"format": "ragehr-run", "name": "x"}), "run")
    assert not ragehr_made(_manifest(tmp_path / "r2", {"name": "x", "ragehr_version": "1"}), "run")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert not ragehr_made(tmp_path / "link", "index")  # a link to an index is not one
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "manifest.json").symlink_to(tmp_path / "a" / "manifest.json")
    assert not ragehr_made(tmp_path / "f", "index")  # nor is a folder whose manifest is a link
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "manifest.json")
    assert not ragehr_made(tmp_path / "fifo", "index")  # and it did not hang
    with pytest.raises(ValueError):
        ragehr_made(tmp_path / "a", "anything")


def test_open_regular_names_what_it_refuses(tmp_path):
    os.mkfifo(tmp_path / "p")
    for path, kind in ((tmp_path / "p", "FIFO"), ("/dev/zero", "device"), (tmp_path, "directory")):
        with pytest.raises(fsutil.NotRegularFileError) as info:
            open_regular(path)
        assert kind in info.value.strerror
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(fsutil.FileTooLargeError):
        open_regular(tmp_path / "big", max_bytes=99)
    os.close(open_regular(tmp_path / "big", max_bytes=100))


def test_same_file_and_plain_names(tmp_path):
    (tmp_path / "a").write_text("x")
    os.link(tmp_path / "a", tmp_path / "h")
    (tmp_path / "s").symlink_to(tmp_path / "a")
    (tmp_path / "d").mkdir()
    assert same_file(tmp_path / "a", tmp_path / "h") and same_file(tmp_path / "s", tmp_path / "a")
    assert same_file(tmp_path / "d" / ".." / "a", tmp_path / "a")
    assert not same_file(tmp_path / "a", tmp_path / "missing")
    (tmp_path / "b").write_text("x")
    assert not same_file(tmp_path / "a", tmp_path / "b")  # equal content is not the same file
    assert check_plain_name("run-1.v2", "--run") is None
    for bad in ("", ".", "..", "a/b", "/abs", "a\\b", "a\x00b", "a\x1bb", "x" * 201):
        assert check_plain_name(bad, "--run") is not None, bad


# -- bounded lines --------------------------------------------------------------------------


def test_a_huge_line_is_skipped_and_never_read_whole():
    reads: list[int] = []

    class Spy(io.BytesIO):
        def readline(self, size: int = -1) -> bytes:  # type: ignore[override]
            line = super().readline(size)
            reads.append(len(line))
            return line

    data = b'{"a": 1}\n' + b"x" * 5_000_000 + b"\n" + b'{"b": 2}\n' + b"y" * 3000
    got = list(iter_bounded_lines(Spy(data), 1024))
    assert [(n, line) for n, _, line, _ in got] == [(1, b'{"a": 1}\n'), (2, None), (3, b'{"b": 2}\n'), (4, None)]
    assert got[1][3] == 5_000_001 and got[3][3] == 3000
    assert got[2][1] == 9 + 5_000_001  # offsets stay right after a skipped line
    assert max(reads) <= 1025  # never more than the limit (+1 to see it is over) in memory


def test_bulk_export_skips_an_oversized_line_with_a_counted_problem(tmp_path, monkeypatch):
    from ragehr.ehr import bulk

    monkeypatch.setattr(bulk, "MAX_LINE_BYTES", 2048)
    d = tmp_path / "export"
    d.mkdir()
    pats = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1970-01-01"} for i in (1, 2)]
    obs = [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "subject": {"reference": f"Patient/p{i}"},
            "effectiveDateTime": "2020-01-01T00:00:00Z",
            "code": {"text": "potassium"},
            "valueQuantity": {"value": 4.0 + i, "unit": "mmol/L"},
        }
        for i in (1, 2)
    ]
    huge = {**obs[0], "id": "big", "note": [{"text": "z" * 10_000}]}
    (d / "Patient.000.ndjson").write_text("".join(json.dumps(p) + "\n" for p in pats))
    (d / "Observation.000.ndjson").write_text("".join(json.dumps(o) + "\n" for o in (obs[0], huge, obs[1])))
    scan = bulk.BulkExport(d).scan()
    assert any("line 2 is" in p and "over the 2048-byte line limit; skipped" in p for p in scan.problems), scan.problems
    assert sorted(s.patient_id for s in scan.slices) == ["p1", "p2"]
    assert {s.patient_id: s.n_items for s in scan.slices} == {"p1": 2, "p2": 2}


def test_questions_file_line_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_JSONL_LINE_BYTES", 200)
    q = tmp_path / "q.jsonl"
    q.write_text(
        json.dumps({"id": "a", "question": "k", "patient_id": "p"})
        + "\n"
        + json.dumps({"id": "b", "question": "k" * 500, "patient_id": "p"})
        + "\n"
        + json.dumps({"id": "c", "question": "k", "patient_id": "p"})
        + "\n"
    )
    good, bad = read_questions(q, ContextSpec())
    assert [x.id for x in good] == ["a", "c"]
    assert [(e.line, e.exit_code) for e in bad] == [(2, 2)] and "over the 200-byte limit" in bad[0].message


def test_questions_file_size_limit_and_fifo(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_TEXT_FILE_BYTES", 10)
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "k", "patient_id": "p"}) + "\n")
    with pytest.raises(ConfigError, match="over the 10-byte limit"):
        read_questions(tmp_path / "q.jsonl", ContextSpec())
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="FIFO"):
        read_questions(tmp_path / "fifo", ContextSpec())


# -- batch --out --------------------------------------------------------------------------


def test_read_done_refuses_a_user_file_and_leaves_it(tmp_path):
    out = tmp_path / "mine.jsonl"
    text = (
        json.dumps({"id": "q0", "line": 1, "question": "x", "patient_id": "p", "chunks": [], "answer": "4"})
        + "\nmine\n"
    )
    out.write_text(text)
    mode = os.stat(out).st_mode
    with pytest.raises(ConfigError, match="line 2 is not a ragehr `ask` answer line"):
        read_done(out, "ask")
    assert out.read_text() == text and os.stat(out).st_mode == mode


def test_out_equal_to_questions_is_refused_before_anything(sample_index_dir, tmp_path):
    q = tmp_path / "q.jsonl"
    text = json.dumps({"id": "a", "question": "latest potassium", "patient_id": "sample"}) + "\n"
    q.write_text(text)
    recipe = BackendRecipe(name="extractive")
    for out in (q, tmp_path / "x" / ".." / "q.jsonl"):
        (tmp_path / "x").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match="is the input file"):
            run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=recipe)
    assert q.read_text() == text
    s = run_batch(q, tmp_path / "a.jsonl", index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=recipe)
    assert s.answered == 1  # a new file is written as before


# -- eval run folders -----------------------------------------------------------------------


def _cfg(tmp_path: Path, name: str = "tiny") -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        results_dir=str(tmp_path / "results"),
        datasets=[{"name": "q", "type": "jsonl", "path": "q.jsonl"}],
        strategies=["rag"],
        backends=["extractive"],
    )


def test_a_run_folder_is_marked_from_its_first_file_and_fresh_deletes_only_it(tmp_path):
    cfg = _cfg(tmp_path)
    run_dir = run_dir_for(cfg)
    _mark_run(cfg, run_dir)  # what run_experiment does before its first prediction
    assert ragehr_made(run_dir, "run")
    (run_dir / "predictions.jsonl").write_text("{}\n")
    (tmp_path / "results" / "other").mkdir()
    (tmp_path / "results" / "other" / "keep.txt").write_text("keep")
    assert run_dir_for(cfg, fresh=True) == run_dir and not run_dir.exists()
    assert (tmp_path / "results" / "other" / "keep.txt").read_text() == "keep"
    (tmp_path / "results" / "empty").mkdir()
    assert run_dir_for(cfg, "empty", fresh=True).is_dir()  # an empty folder: nothing to delete, used
    with pytest.raises(ConfigError, match="not a ragehr run folder"):
        run_dir_for(cfg, "other", fresh=True)
    with pytest.raises(ConfigError, match="not a ragehr run folder"):
        run_dir_for(cfg, "other")


def test_experiment_names_that_are_not_folder_names_are_invalid(tmp_path):
    for bad in ("..", "."):
        with pytest.raises(ValueError):
            _cfg(tmp_path, bad)


# -- a read-only shared index folder: the generation cache degrades to read-only ------------


def test_generation_cache_on_a_read_only_folder_warns_once_and_answers(sample_index_dir, tmp_path, monkeypatch, caplog):
    from ragehr.index.search import load_patient_index
    from ragehr.pipeline.ask import ask

    def refuse(path, text, encoding="utf-8"):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(gencache, "atomic_write_text", refuse)
    backend = CachedBackend(ExtractiveBackend(), tmp_path / "ro-cache")
    idx = load_patient_index(sample_index_dir, "sample", need_dense=False)
    with caplog.at_level(logging.WARNING, logger="ragehr.llm.cache"):
        for q in ("latest potassium", "weight", "allergies"):
            r = ask(idx, q, backend, ContextSpec(retriever="bm25"))
            assert r.generation.text
    assert backend.read_only
    warnings = [r for r in caplog.records if "not writable" in r.getMessage()]
    assert len(warnings) == 1 and "potassium" not in warnings[0].getMessage()


def test_other_cache_write_errors_still_raise(tmp_path, monkeypatch):
    def broken(path, text, encoding="utf-8"):
        raise OSError(errno.EIO, "I/O error", str(path))

    monkeypatch.setattr(gencache, "atomic_write_text", broken)
    backend = CachedBackend(ExtractiveBackend(), tmp_path / "c")
    from ragehr.types import Generation

    with pytest.raises(OSError):
        backend._store("k" * 64, Generation(text="x", backend="extractive", model="m"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the monkeypatched test covers it")
def test_ask_on_a_read_only_index_dir_needs_no_flag(tmp_path):  # pragma: no cover - non-root CI only
    [s] = build_indexes([SAMPLE], tmp_path / "idx", IndexConfig(embedder="hashing"))
    for p in [tmp_path / "idx", *(tmp_path / "idx").rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o500)
    try:
        r = CliRunner().invoke(
            app,
            [
                "ask",
                "latest potassium",
                "--patient",
                "sample",
                "--backend",
                "extractive",
                "--index-dir",
                str(tmp_path / "idx"),
            ],
        )
        assert r.exit_code == 0, r.output
    finally:
        for p in [tmp_path / "idx", *(tmp_path / "idx").rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o700)


# -- inspect: ids with terminal escapes are escaped ----------------------------------------


def test_inspect_cohort_listing_escapes_control_characters(tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    pid = "p\x1b]0;owned\x07\x1b[31mred"
    (d / "Patient.000.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": pid, "gender": "male"}) + "\n")
    (d / "Observation.000.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2020-01-01T00:00:00Z",
                "code": {"text": "potassium"},
                "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
            }
        )
        + "\n"
    )
    (d / "export-manifest.json").write_text(
        json.dumps(
            {
                "transactionTime": "2026-01-01T00:00:00Z",
                "request": "https://example.org/fhir/$export",
                "error": [],
                "output": [
                    {"type": t, "url": f"https://example.org/{t}.000.ndjson"} for t in ("Patient", "Observation")
                ],
            }
        )
    )
    r = CliRunner().invoke(app, ["inspect", str(d)])
    out = r.output
    assert "\x1b" not in out and "\x07" not in out, out
    assert "\\x1b" in out, out
