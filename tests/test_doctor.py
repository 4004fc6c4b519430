"""`ragehr doctor`: the report, the exit status, and backend probes in child processes."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from typer.testing import CliRunner

from ragehr.cli import app
from ragehr.config import IndexConfig
from ragehr.doctor import run_probe
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES

runner = CliRunner()


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_doctor_reports_and_exits_zero_when_the_configured_backend_generates(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAGEHR_OPENAI_BASE_URL", raising=False)
    idx = tmp_path / "idx"
    [s] = build_indexes([FIXTURES / "medalign" / "EHR_sample.xml"], idx, IndexConfig(embedder="hashing"))
    assert s.status == "built"
    cfg = _config(tmp_path, "index: {embedder: hashing}\nllm: {backend: extractive}\n")
    r = runner.invoke(
        app,
        [
            "doctor",
            "--index-dir",
            str(idx),
            "--config",
            str(cfg),
            "--backend",
            "extractive",
            "--backend",
            "fake",
            "--backend",
            "openai",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["versions"]["python"] == sys.version.split()[0] and "torch" in rep["versions"]
    assert rep["index"] == {"path": str(idx), "exists": True, "patients": 1}
    assert rep["embedder"]["ok"] and rep["embedder"]["dim"] == 256
    assert rep["network_endpoint"]["configured"] is False
    by = {b["backend"]: b for b in rep["backends"]}
    assert by["extractive"]["generates"] and by["fake"]["generates"]
    assert by["openai"]["generates"] is None and "not the configured" in by["openai"]["skipped"]
    assert rep["configured_backend"] == "extractive" and rep["configured_backend_generates"]
    # a network endpoint from the environment is reported (and not contacted: openai is skipped)
    monkeypatch.setenv("RAGEHR_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    r = runner.invoke(
        app, ["doctor", "--index-dir", str(idx), "--config", str(cfg), "--backend", "extractive", "--no-embedder"]
    )
    assert r.exit_code == 0, r.output
    assert "endpoint configured (RAGEHR_OPENAI_BASE_URL): http://127.0.0.1:9/v1" in r.output
    assert "extractive" in r.output and " OK " in r.output


def test_doctor_exits_5_when_the_configured_backend_cannot_generate(tmp_path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    cfg = _config(tmp_path, f"llm: {{backend: transformers, settings: {{model_path: {str(junk)!r}}}}}\n")
    r = runner.invoke(
        app,
        [
            "doctor",
            "--index-dir",
            str(tmp_path / "none"),
            "--config",
            str(cfg),
            "--no-embedder",
            "--backend",
            "transformers",
            "--backend",
            "extractive",
        ],
    )
    assert r.exit_code == 5, r.output
    assert "FAIL" in r.output and "not a readable GGUF" in r.output
    assert "does not exist yet" in r.output
    assert "the configured backend (transformers) cannot generate" in r.output


def test_a_crashing_probe_is_reported_with_its_signal(tmp_path, monkeypatch) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("ragehr.doctor.sys.executable", str(fake_python))
    out = run_probe("llamacpp", None, None, timeout=30)
    assert out["generates"] is False and out["error"].startswith("crashed with SIGSEGV")
    fake_python.write_text("#!/bin/sh\nsleep 30\n")
    out = run_probe("llamacpp", None, None, timeout=1)
    assert out["generates"] is False and "no answer within 1 s" in out["error"]
    assert os.path.exists(fake_python)
