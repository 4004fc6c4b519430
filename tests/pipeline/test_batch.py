"""Batch mode (``ragehr ask|context --questions Q.jsonl --out A.jsonl``): each row is what the
single-question path gives, bad lines are reported by number and skipped, a killed run
resumes without losing or repeating a question, and indexes and models load once."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from ragehr.config import LLMConfig, RagehrConfig
from ragehr.index.search import load_patient_index
from ragehr.pipeline import batch as batch_mod
from ragehr.pipeline.ask import ask
from ragehr.pipeline.batch import BackendRecipe, IndexCache, read_done, run_batch
from ragehr.pipeline.context import context_json
from ragehr.pipeline.spec import ContextSpec, prepare_context

EXTRACTIVE = BackendRecipe(LLMConfig(backend="extractive"))
QUESTIONS = [
    {"question": "What was the most recent potassium?", "patient_id": "sample", "id": "k"},
    {"question": "latest A1c?", "patient_id": "sample", "strategy": "recent", "budget": 1024},
    {"question": "blood pressure", "patient_id": "sample", "retriever": "bm25", "id": 7},
    {"question": "medications", "patient_id": "sample", "strategy": "visit-bm25", "order": "relevance"},
    {"question": "What was the first lab?", "patient_id": "sample", "strategy": "full", "budget": None},
]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _strip(row):
    return {k: v for k, v in row.items() if k not in ("timings", "id", "line")}


@pytest.mark.parametrize("answer", ["generated", "auto"])
def test_each_row_is_what_ask_json_prints(sample_index_dir, tmp_path, answer):
    q = _write(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "a.jsonl"
    base = ContextSpec.from_config(RagehrConfig(), strategy="rag", budget=2048, answer=answer)
    s = run_batch(q, out, index_dir=sample_index_dir, base_spec=base, recipe=EXTRACTIVE)
    assert (s.answered, s.failures, s.exit_code) == (5, [], 0)
    rows = {r["id"]: r for r in _rows(out)}
    assert set(rows) == {"k", "line-2", "7", "line-4", "line-5"}
    # the single-question path, run independently, gives the same JSON (timings aside)
    idx = load_patient_index(sample_index_dir, "sample")
    be = EXTRACTIVE.build()
    for i, item in enumerate(QUESTIONS, 1):
        qid = str(item.get("id", f"line-{i}"))
        over = {k: item[k] for k in ("strategy", "budget", "retriever", "order") if k in item}
        spec = base.with_(**over)
        if "budget" in item and item["budget"] is None:
            spec = ContextSpec(**{**spec.__dict__, "budget": None})
        want = ask(idx, item["question"], be, spec).to_json()
        assert _strip(rows[qid]) == _strip(want), qid
        assert rows[qid]["line"] == i
    if answer == "auto":  # a retried answer shows its second, larger context
        return
    assert rows["line-2"]["strategy"] == "recent" and rows["line-2"]["window_tokens"] == 1024
    assert rows["7"]["retriever"] == "bm25"


def test_context_mode_rows(sample_index_dir, tmp_path):
    q = _write(tmp_path / "q.jsonl", QUESTIONS[:2])
    out = tmp_path / "c.jsonl"
    base = ContextSpec.from_config(RagehrConfig(), budget=2048)
    run_batch(q, out, index_dir=sample_index_dir, base_spec=base, recipe=EXTRACTIVE, mode="context")
    rows = {r["id"]: r for r in _rows(out)}
    idx = load_patient_index(sample_index_dir, "sample")
    prep = prepare_context(idx, QUESTIONS[0]["question"], base, EXTRACTIVE.build())
    assert {k: v for k, v in rows["k"].items() if k not in ("id", "line", "question", "patient_id")} == context_json(
        prep.context, prep.window
    )
    assert "answer" not in rows["k"]


def test_bad_lines_are_reported_by_number_and_the_rest_answered(sample_index_dir, tmp_path):
    lines = [
        QUESTIONS[0],  # 1 ok
        "{not json",  # 2
        {"question": "x", "patient_id": "sample", "colour": "red"},  # 3 unknown field
        {"question": "x", "patient_id": "sample", "strategy": "magic"},  # 4 bad strategy
        {"question": "", "patient_id": "sample"},  # 5 empty question
        {"question": "x", "patient_id": "sample", "budget": True},  # 6 a bool is not a budget
        {"question": "x", "patient_id": "sample", "id": "k"},  # 7 duplicate id
        {"question": "x", "patient_id": "nobody"},  # 8 no such index
        "",  # 9 blank: skipped
        "[1, 2]",  # 10 not an object
        QUESTIONS[2],  # 11 ok
    ]
    q = _write(tmp_path / "q.jsonl", lines)
    out = tmp_path / "a.jsonl"
    seen = []
    s = run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=EXTRACTIVE, on_error=seen.append)
    assert sorted(f.line for f in s.failures) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert [f.line for f in seen] == [f.line for f in s.failures]
    assert s.answered == 2 and s.bad_lines == 7
    assert s.exit_code == 1  # bad input (2) and a missing index (3) together
    by_line = {f.line: f for f in s.failures}
    assert "unknown field(s) colour" in by_line[3].message and by_line[7].exit_code == 2
    assert by_line[8].exit_code == 3 and "nobody" in by_line[8].message
    rows = _rows(out)
    assert {r["id"] for r in rows if "error" not in r} == {"k", "7"}
    assert [r["line"] for r in rows if "error" in r] == [8]


def test_a_killed_run_resumes_without_losing_or_repeating(sample_index_dir, tmp_path):
    q = _write(tmp_path / "q.jsonl", QUESTIONS)
    out = tmp_path / "a.jsonl"
    run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=EXTRACTIVE)
    full = {r["id"]: _strip(r) for r in _rows(out)}
    lines = out.read_text().splitlines()
    # killed while writing the third line; the second line was an error row
    err = json.dumps(
        {
            "id": lines and json.loads(lines[1])["id"],
            "line": 2,
            "patient_id": "sample",
            "error": "openai backend: timed out",
            "exit_code": 5,
        }
    )
    out.write_text(lines[0] + "\n" + err + "\n" + lines[2][:40])
    assert read_done(out) == {json.loads(lines[0])["id"]}
    assert out.read_text() == lines[0] + "\n"  # the cut line and the error row are gone
    s = run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=EXTRACTIVE)
    assert (s.skipped, s.answered) == (1, 4)
    rows = _rows(out)
    assert len(rows) == 5 and {r["id"]: _strip(r) for r in rows} == full
    s = run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=EXTRACTIVE)
    assert (s.skipped, s.answered, len(_rows(out))) == (5, 0, 5)


def test_indexes_open_once_and_the_cache_is_bounded(sample_index_dir, tmp_path, monkeypatch):
    q = _write(tmp_path / "q.jsonl", QUESTIONS * 1 + [{**QUESTIONS[0], "id": f"again-{i}"} for i in range(6)])
    s = run_batch(q, tmp_path / "a.jsonl", index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=EXTRACTIVE)
    assert s.answered == 11 and s.indexes_opened == 1

    opened = []

    def fake_load(index_dir, pid, *, need_dense=True, embedder=None):
        opened.append(pid)
        return type("Idx", (), {"dense": object() if need_dense else None, "patient_id": pid})()

    monkeypatch.setattr(batch_mod, "load_patient_index", fake_load)
    cache = IndexCache(sample_index_dir, size=2)
    for pid in ["a", "b", "a", "c", "a", "b"]:
        cache.get(pid, need_dense=False)
    assert opened == ["a", "b", "c", "b"] and len(cache) == 2  # LRU: b was dropped for c
    cache.get("a", need_dense=True)  # opened without its dense side: reopened with it
    assert opened[-1] == "a" and len(opened) == 5


def test_models_load_once_per_process(sample_index_dir, monkeypatch):
    calls = []
    import ragehr.embeddings as emb

    real = emb.load_embedder
    monkeypatch.setattr(emb, "load_embedder", lambda spec, **kw: calls.append(spec) or real(spec, **kw))
    monkeypatch.setattr(batch_mod, "_EMBEDDERS", {})
    monkeypatch.setattr(batch_mod, "_BACKENDS", {})
    monkeypatch.setattr(batch_mod, "_WORKER_INDEXES", {})
    qs, bad = batch_mod.read_questions_from_lines([json.dumps(QUESTIONS[0])], ContextSpec())
    assert not bad
    job = batch_mod.GroupJob(tuple(qs), str(sample_index_dir), EXTRACTIVE, "ask")
    first = batch_mod.answer_group(job)
    batch_mod._WORKER_INDEXES.clear()  # a new patient group in the same worker: index reopened
    second = batch_mod.answer_group(job)
    assert calls == ["hashing"]
    assert len(batch_mod._BACKENDS) == 1
    assert _strip(first[0][1]) == _strip(second[0][1])


def test_cli_batch_exit_status_and_summary(sample_index_dir, tmp_path):
    from ragehr.cli import app

    q = _write(tmp_path / "q.jsonl", [QUESTIONS[0], "oops", {"question": "x", "patient_id": "nobody"}])
    out = tmp_path / "a.jsonl"
    args = [
        "ask",
        "--questions",
        str(q),
        "--out",
        str(out),
        "--index-dir",
        str(sample_index_dir),
        "--backend",
        "extractive",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "line 2: not JSON" in r.output and "line 3 (line-3): no index for patient 'nobody'" in r.output
    assert "1 answered, 2 failed" in r.output
    r = CliRunner().invoke(app, ["ask", "--questions", str(q), "--index-dir", str(sample_index_dir)])
    assert r.exit_code == 2 and "--questions needs --out" in r.output
    r = CliRunner().invoke(app, ["ask", "--index-dir", str(sample_index_dir)])
    assert r.exit_code == 2 and "give a QUESTION and --patient" in r.output


def test_ray_missing_names_the_extra(sample_index_dir, tmp_path, monkeypatch):
    from ragehr.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    q = _write(tmp_path / "q.jsonl", [QUESTIONS[0]])
    for args in (
        [
            "ask",
            "--questions",
            str(q),
            "--out",
            str(tmp_path / "a.jsonl"),
            "--index-dir",
            str(sample_index_dir),
            "--ray",
            "local",
        ],
        ["index", str(tmp_path), "--ray", "local"],
    ):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, r.output
        assert "pip install 'ragehr[ray]'" in r.output


@pytest.mark.parametrize(
    "argv, want",
    [
        (["index", "d", "--ray"], ["index", "d", "--ray", "local"]),
        (["index", "--ray", "d"], ["index", "--ray", "local", "d"]),
        (["eval", "c.yaml", "--ray", "auto"], ["eval", "c.yaml", "--ray", "auto"]),
        (["ask", "--ray", "ray://head:10001", "--out", "o"], ["ask", "--ray", "ray://head:10001", "--out", "o"]),
        (["ask", "--ray", "--out", "o"], ["ask", "--ray", "local", "--out", "o"]),
    ],
)
def test_ray_without_an_address_means_local(argv, want):
    from ragehr.cli import with_ray_default

    assert with_ray_default(argv) == want
