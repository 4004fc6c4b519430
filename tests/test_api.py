"""The public Python API (``ragehr.open_index``, ``Patient.retrieve/context/ask``,
``ragehr.index_records``, ``ragehr.run_eval``) against the CLI: same options, same JSON."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import ragehr
from ragehr.cli import app as cli_app
from ragehr.config import IndexConfig, RagehrConfig
from ragehr.errors import ConfigError, IndexNotFoundError
from tests.conftest import FIXTURES, REPO

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
HASHING = RagehrConfig(index=IndexConfig(embedder="hashing"))
Q = "What was the systolic blood pressure?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("api-idx")
    [s] = ragehr.index_records([SAMPLE], d, config=HASHING, progress=False)
    assert s.status == "built" and s.patient_id == "sample"
    return d


@pytest.fixture(scope="module")
def patient(index_dir):
    return ragehr.open_index(index_dir).patient("sample")


def _cli(*args: str) -> str:
    r = CliRunner().invoke(cli_app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def _cli_json(*args: str):
    return json.loads(_cli(*args, "--json"))


def test_import_ragehr_is_light():
    code = (
        "import sys, ragehr; ragehr.__version__; "
        "heavy = [m for m in ('torch', 'faiss', 'transformers', 'llama_index', 'fastapi', 'bm25s', 'ragehr.api') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve_and_unknown_names_do_not():
    for name in ragehr.__all__:
        assert getattr(ragehr, name) is not None
    assert ragehr.open_index is ragehr.api.open_index
    with pytest.raises(AttributeError):
        ragehr.nonesuch  # noqa: B018


def test_patients_are_patients_json(index_dir):
    idx = ragehr.open_index(index_dir)
    want = [json.loads(line) for line in _cli("patients", "--index-dir", str(index_dir), "--json").splitlines()]
    assert [p.to_json() for p in idx.patients()] == want
    assert idx.patient_ids() == ["sample"] and "sample" in idx and len(idx) == 1
    assert [p.patient_id for p in idx] == ["sample"]


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        ({}, []),
        ({"k": 3, "retriever": "bm25"}, ["--k", "3", "--retriever", "bm25"]),
        ({"retriever": "dense", "kinds": "vital,lab"}, ["--retriever", "dense", "--kinds", "vital,lab"]),
        ({"since": "2018-10-15", "until": "2022"}, ["--since", "2018-10-15", "--until", "2022"]),
    ],
)
def test_retrieve_is_retrieve_json(index_dir, patient, options, flags):
    got = patient.retrieve(Q, **options)
    want = _cli_json("retrieve", Q, "--patient-id", "sample", "--index-dir", str(index_dir), *flags)
    assert got.to_json() == want
    assert want, "the question must find something, or the comparison proves little"
    assert [h.chunk.chunk_id for h in got] == [w["chunk_id"] for w in want]


@pytest.mark.parametrize("strategy", ["rag", "recent", "visit-bm25", "full"])
def test_context_is_context_json(index_dir, patient, strategy):
    budget = {"full": 8192, "visit-bm25": 4096}.get(strategy, 1024)
    got = patient.context(Q, strategy=strategy, budget=budget, backend="extractive")
    want = _cli_json(
        "context",
        Q,
        "--patient-id",
        "sample",
        "--strategy",
        strategy,
        "--budget",
        str(budget),
        "--backend",
        "extractive",
        "--index-dir",
        str(index_dir),
    )
    assert got.to_json() == want
    assert want["chunks"] and got.block().count("[") >= len(want["chunks"])


@pytest.mark.parametrize(("strategy", "order"), [("rag", "chronological"), ("rag", "relevance"), ("recent", "edges")])
def test_ask_is_ask_json(index_dir, patient, strategy, order):
    got = patient.ask(Q, strategy=strategy, order=order, budget=2048, backend="extractive", cache=False).to_json()
    want = _cli_json(
        "ask",
        Q,
        "--patient-id",
        "sample",
        "--strategy",
        strategy,
        "--order",
        order,
        "--budget",
        "2048",
        "--backend",
        "extractive",
        "--no-cache",
        "--index-dir",
        str(index_dir),
    )
    for d in (got, want):
        d.pop("timings")
    assert got == want
    assert got["citations"] and got["patient_id"] == "sample" and got["question"] == Q


def test_ask_streams_tokens(patient):
    pieces: list[str] = []
    r = patient.ask(Q, backend="extractive", cache=False, on_token=pieces.append)
    assert "".join(pieces).strip() == r.generation.text.strip()


def test_options_have_the_cli_names():
    """One name per thing: each keyword of Patient.ask/context/retrieve is an option of the
    command of the same name, and the commands' options are all there but the CLI's own."""
    import typer.main

    commands = typer.main.get_command(cli_app).commands
    cli_only = {
        "patient_id",
        "index_dir",
        "config",
        "json",
        "questions",
        "out",
        "ray",
        "workers",
        "cache_size",
        "no_cache",
    }
    py_only = {"self", "cache", "on_token", "options"}
    for name in ("retrieve", "context", "ask"):
        cli = {p.opts[0].lstrip("-").replace("-", "_") for p in commands[name].params}
        py = set(inspect.signature(getattr(ragehr.Patient, name)).parameters) - py_only
        assert py == cli - cli_only, name


def test_unknown_patient_is_the_cli_error(index_dir):
    idx = ragehr.open_index(index_dir)
    with pytest.raises(IndexNotFoundError) as exc:
        idx.patient("nobody")
    r = CliRunner().invoke(cli_app, ["retrieve", Q, "--patient-id", "nobody", "--index-dir", str(index_dir)])
    assert r.exit_code == 3 and str(exc.value) in r.stderr


def test_bad_options_are_config_errors(patient):
    with pytest.raises(ConfigError, match="unknown ask option"):
        patient.ask(Q, backend="extractive", nonesuch=1)
    with pytest.raises(ConfigError, match="retriever"):
        patient.retrieve(Q, retriever="bm26")
    with pytest.raises(ConfigError, match="since"):
        patient.retrieve(Q, since="2022", until="2021")
    with pytest.raises(ConfigError, match="unknown kind"):
        patient.retrieve(Q, kinds=["vital", "xray"])
    with pytest.raises(ConfigError, match="strategy"):
        patient.context(Q, strategy="everything")
    with pytest.raises(ConfigError, match="empty"):
        patient.retrieve("   ")


def test_index_records_reports_progress_and_is_idempotent(index_dir, capsys):
    [s] = ragehr.index_records(SAMPLE, index_dir, config=HASHING, progress=True)
    assert s.status == "unchanged"
    [s] = ragehr.index_records(SAMPLE, index_dir, config=HASHING, force=True, progress=True)
    assert s.status == "built"
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch(r"ragehr: [\w ]+: \d+/\d+", line) for line in lines), lines
    done = {line.split(": ")[1]: line.rsplit(" ", 1)[1] for line in lines}  # each stage's last line
    assert all(n == f"{t}" for n, t in (v.split("/") for v in done.values())), done  # every stage finishes
    [s] = ragehr.index_records(SAMPLE, index_dir, config=HASHING, progress=False)
    assert capsys.readouterr().err == ""


def test_index_records_reports_a_bad_file_and_keeps_going(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<not a record", encoding="utf-8")
    out = ragehr.index_records([bad, SAMPLE], tmp_path / "idx", config=HASHING, progress=False)
    assert sorted(s.status for s in out) == ["built", "failed"]


def test_env_config_and_index_dir_are_the_clis(index_dir, tmp_path, monkeypatch):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("answer: generated\nllm:\n  backend: extractive\n", encoding="utf-8")
    monkeypatch.setenv("RAGEHR_CONFIG", str(cfg))
    monkeypatch.setenv("RAGEHR_INDEX_DIR", str(index_dir))
    r = ragehr.open_index().patient("sample").ask(Q, cache=False)
    assert r.generation.backend == "extractive" and r.answered_by == "generated"  # both from the env's config
    computed = ragehr.open_index().patient("sample").ask(Q, cache=False, answer="computed")
    assert computed.answered_by == "computed" and computed.to_json()["grounded"]


def test_run_eval_refuses_names_and_folders_it_did_not_make(tmp_path):
    from ragehr.eval.experiment import ExperimentConfig

    exp = ExperimentConfig.from_file(REPO / "configs" / "experiments" / "smoke.yaml").model_copy(
        update={"results_dir": str(tmp_path / "results")}
    )
    for bad in ("..", "../victim", "/tmp/x", "a/b"):
        with pytest.raises(ConfigError, match="not a folder name|path separator"):
            ragehr.run_eval(exp, run=bad, fresh=True)
        assert not (tmp_path / "victim").exists()
    mine = tmp_path / "results" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a ragehr run folder"):
        ragehr.run_eval(exp, run="mine", fresh=True)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


TINY_EVAL = """
name: tiny
data_root: {data}
index_dir: {tmp}/indexes
results_dir: {tmp}/results
index: {{embedder: hashing}}
datasets:
  - {{name: medalign-sample, type: medalign, instructions: medalign/instructions-sample.csv,
     pair_with: medalign/sample-ehr-clean.xml, limit: 2}}
strategies: [rag]
budgets: [512]
retrievers: [bm25]
backends: [fake]
bootstrap_resamples: 100
expected:
  - {{metric: n, where: {{strategy: rag, budget: 512, backend: fake}}, op: "==", value: 2}}
"""


def test_run_eval_runs_a_config_and_checks_its_figures(shared_data, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_EVAL.format(data=shared_data, tmp=tmp_path), encoding="utf-8")
    run = ragehr.run_eval(cfg)
    assert run.run_dir == tmp_path / "results" / "tiny"
    assert run.ok and [c["ok"] for c in run.checks] == [True]
    assert json.loads((run.run_dir / "metrics.json").read_text(encoding="utf-8"))["expected"] == run.checks
    assert "rag" in run.summary
    again = ragehr.run_eval(cfg, fresh=True)  # its own run folder: removed and redone
    assert again.ok and again.checks == run.checks

    loaded = ragehr.load_run(run.run_dir)
    assert loaded.metrics == again.metrics and len(loaded.rows) == 2 and loaded.manifest["name"] == "tiny"
    report = loaded.report(tmp_path / "plots")
    strip = lambda summary: [(s["condition"], s.get("accuracy"), s.get("evidence_recall")) for s in summary]
    assert strip(report.summary) == strip(loaded.metrics["summary"])
    assert report.plots and all(p.is_file() and p.parent == tmp_path / "plots" for p in report.plots)
    assert "| medalign-sample | rag | 512 | bm25 | fake |" in report.markdown
    with pytest.raises(ragehr.RagehrError, match="not a finished ragehr run"):
        ragehr.load_run(tmp_path)


def test_ask_plot_writes_the_series_chart_or_refuses(index_dir, tmp_path):
    p = ragehr.open_index(index_dir).patient("sample")
    svg = tmp_path / "bp.svg"
    r = p.ask(
        "How has the systolic blood pressure changed over time?",
        backend="extractive",
        cache=False,
        answer="computed",
        plot=svg,
    )
    assert r.answered_by == "computed" and svg.read_text(encoding="utf-8").lstrip().startswith("<svg")
    none = tmp_path / "none.svg"
    with pytest.raises(ConfigError, match="no series"):
        p.ask("What is the patient's occupation?", backend="extractive", cache=False, plot=none)
    assert not none.exists()
