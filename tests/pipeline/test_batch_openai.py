"""Batch mode against a served model: a stand-in OpenAI-compatible server on 127.0.0.1 that
records how many requests it holds at once and injects slow, failing (500, 429) and
malformed responses. Every question gets a line; each failure is reported for its own
question; concurrency reaches the configured limit and never passes it."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragehr.config import LLMConfig
from ragehr.eval.experiment import ExperimentConfig
from ragehr.pipeline.batch import BackendRecipe, run_batch
from ragehr.pipeline.spec import ContextSpec

LIMIT = 3


class StandIn:
    """What the server does is chosen by a tag in the question: ``<<slow>>`` (the first
    attempt outlasts the client's timeout), ``<<500>>`` and ``<<429>>`` (the first attempt fails),
    ``<<malformed>>`` (always a 200 that is not a chat completion), ``<<dead>>`` (always 500);
    anything else answers after a short delay."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.attempts: dict[str, int] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"]
                tag = (re.search(r"<<(\w+)>>", text) or [None, "ok"])[1]
                qid = (re.search(r"QID-(\d+)", text) or [None, "?"])[1]
                with stand_in.lock:
                    stand_in.active += 1
                    stand_in.max_active = max(stand_in.max_active, stand_in.active)
                    n = stand_in.attempts[qid] = stand_in.attempts.get(qid, 0) + 1
                try:
                    if tag == "slow" and n == 1:
                        time.sleep(1.2)
                        return self._send(200, _completion("late"))
                    if tag == "dead" or (tag == "500" and n == 1):
                        return self._send(500, b'{"error": {"message": "model crashed"}}')
                    if tag == "429" and n == 1:
                        return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                    if tag == "malformed":
                        return self._send(200, b'{"choices": []}')
                    time.sleep(0.15)
                    return self._send(200, _completion(f"Answer to Q{qid}."))
                finally:
                    with stand_in.lock:
                        stand_in.active -= 1

            def _send(self, status, payload, headers=None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        }
    ).encode()


TAGS = {3: "slow", 5: "500", 8: "429", 10: "malformed", 12: "dead"}


@pytest.fixture()
def server():
    with StandIn() as s:
        yield s


def _settings(url: str) -> dict:
    # a fresh base_url per test, so the process-wide semaphore is this test's size
    return {
        "base_url": url,
        "model": "stand-in",
        "timeout": 0.6,
        "max_retries": 2,
        "backoff": 0.01,
        "concurrency": LIMIT,
    }


def test_batch_against_a_flaky_server_loses_nothing(server, sample_index_dir, tmp_path):
    n = 14
    q = tmp_path / "q.jsonl"
    q.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"Q{i}",
                    "patient_id": "sample",
                    "strategy": "recent",
                    "budget": 512,
                    "question": f"QID-{i} potassium <<{TAGS[i]}>>" if i in TAGS else f"QID-{i} potassium?",
                }
            )
            + "\n"
            for i in range(1, n + 1)
        )
    )
    out = tmp_path / "a.jsonl"
    recipe = BackendRecipe(LLMConfig(backend="openai", settings=_settings(server.url)))
    s = run_batch(q, out, index_dir=sample_index_dir, base_spec=ContextSpec(), recipe=recipe)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(rows) == n  # nothing lost
    failed = {f.id: f for f in s.failures}
    assert set(failed) == {"Q10", "Q12"} and s.answered == n - 2
    assert "malformed chat completion" in failed["Q10"].message and failed["Q10"].exit_code == 5
    assert "HTTP 500" in failed["Q12"].message and "after 3 attempts" in failed["Q12"].message
    assert rows["Q12"]["error"] == failed["Q12"].message and rows["Q12"]["exit_code"] == 5
    for i in range(1, n + 1):
        if f"Q{i}" not in failed:
            assert rows[f"Q{i}"]["answer"] == f"Answer to Q{i}.", i  # each answer is its own question's
    # slow, 500 and 429 were retried and then answered
    assert server.attempts["3"] >= 2 and server.attempts["5"] == 2 and server.attempts["8"] == 2
    assert server.attempts["12"] == 3 and server.attempts["10"] == 1
    # Concurrent up to the limit. The client abandons the slow request after its timeout and
    # sends the next one while the server still sleeps on the abandoned one: one more.
    assert LIMIT <= server.max_active <= LIMIT + 1
    assert s.exit_code == 5


def test_eval_sends_concurrent_requests(server, sample_index_dir, tmp_path, shared_data):
    """The eval runner answers a condition's items concurrently through a served model."""
    from ragehr.eval.runner import run_experiment

    cfg = ExperimentConfig.model_validate(
        {
            "name": "served",
            "data_root": str(shared_data),
            "index_dir": str(tmp_path / "idx"),
            "results_dir": str(tmp_path / "res"),
            "index": {"embedder": "hashing"},
            "datasets": [
                {
                    "name": "ma",
                    "type": "medalign",
                    "instructions": "medalign/instructions-sample.csv",
                    "pair_with": "medalign/sample-ehr-clean.xml",
                    "limit": 8,
                }
            ],
            "strategies": ["recent"],
            "budgets": [2048],
            "max_new_tokens": 64,
            "backends": [{"name": "openai", "settings": _settings(server.url)}],
            "bootstrap_resamples": 100,
        }
    )
    run_experiment(cfg, tmp_path / "res" / "served")
    rows = [json.loads(line) for line in (tmp_path / "res" / "served" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["answer"].startswith("Answer to") for r in rows)
    assert server.max_active == LIMIT


def test_a_run_killed_mid_way_continues(server, sample_index_dir, tmp_path):
    """SIGKILL the real command while it answers; the rerun answers each question exactly once."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    n = 12
    q = tmp_path / "q.jsonl"
    q.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"Q{i}",
                    "patient_id": "sample",
                    "strategy": "recent",
                    "budget": 512,
                    "question": f"QID-{i} potassium?",
                }
            )
            + "\n"
            for i in range(1, n + 1)
        )
    )
    cfg = tmp_path / "served.yaml"
    cfg.write_text(json.dumps({"llm": {"backend": "openai", "settings": {**_settings(server.url), "concurrency": 1}}}))
    out = tmp_path / "a.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ragehr.cli",
        "ask",
        "--questions",
        str(q),
        "--out",
        str(out),
        "--index-dir",
        str(sample_index_dir),
        "--config",
        str(cfg),
        "--no-cache",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = out.read_text().count("\n")
    assert 3 <= first < n  # killed part-way
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"already done (of {n} questions" in done.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"Q{i}" for i in range(1, n + 1))  # each exactly once
