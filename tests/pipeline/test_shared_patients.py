"""`ragehr context` and `ragehr ask` for every shared-data patient, with each strategy and
backend: fake and extractive everywhere, openai against a small stand-in server on 127.0.0.1
(no client library mocked), and the local SmolLM2 model on the MedAlign sample."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from ragehr.cli import app
from ragehr.config import IndexConfig
from ragehr.index.build import build_indexes

runner = CliRunner()
STRATEGIES = ("rag", "visit-bm25", "recent", "full")


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("shared-idx")
    summaries = build_indexes(
        [
            shared_data / "synthea" / "ccda",
            shared_data / "synthea" / "fhir",
            shared_data / "medalign" / "sample-ehr-clean.xml",
        ],
        d,
        IndexConfig(embedder="hashing"),
    )
    assert all(s.status == "built" for s in summaries)
    return d, sorted(s.patient_id for s in summaries)


class StandIn:
    """An OpenAI-compatible chat server that answers with the first excerpt it was given."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append(body)
                user = body["messages"][-1]["content"]
                first = user.split("\n[1] ", 1)[1].split("\n", 1)[0] if "\n[1] " in user else "nothing"
                out = json.dumps(
                    {
                        "choices": [{"message": {"role": "assistant", "content": f"From [1]: {first[:60]}"}}],
                        "usage": {"prompt_tokens": 111, "completion_tokens": 7},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _ok_or_too_long(r, strategy):
    if strategy == "full" and r.exit_code == 2:
        assert "use --strategy rag or recent" in r.output
        return False
    assert r.exit_code == 0, r.output
    return True


def test_every_patient_every_strategy_fake_and_extractive(shared_index):
    from ragehr.index.search import load_patient_index
    from ragehr.llm.extractive import ExtractiveBackend
    from ragehr.llm.fake import FakeBackend
    from ragehr.packing import ContextTooLongError
    from ragehr.pipeline.ask import ask

    d, patients = shared_index
    assert len(patients) == 15
    q = "What medications was the patient prescribed?"
    for pid in patients:
        idx = load_patient_index(d, pid)
        for strategy in STRATEGIES:
            for backend in (FakeBackend(context_window=8192), ExtractiveBackend()):
                try:
                    r = ask(idx, q, backend, strategy=strategy, budget=8192 if strategy == "full" else 2048)
                except ContextTooLongError:
                    assert strategy == "full"
                    continue
                assert r.generation.text and r.context.packed.items
                assert r.context.packed.used_tokens <= r.budget.evidence
    # and through the command line, for two patients
    for pid in (patients[0], "sample-ehr-clean"):
        for strategy in STRATEGIES:
            r = runner.invoke(
                app,
                [
                    "context",
                    q,
                    "--patient",
                    pid,
                    "--strategy",
                    strategy,
                    "--backend",
                    "extractive",
                    "--budget",
                    "8192",
                    "--index-dir",
                    str(d),
                    "--json",
                ],
            )
            if _ok_or_too_long(r, strategy):
                out = json.loads(r.output)
                assert out["used_tokens"] <= out["budget_tokens"] and out["chunks"]
            r = runner.invoke(
                app,
                [
                    "ask",
                    q,
                    "--patient",
                    pid,
                    "--strategy",
                    strategy,
                    "--backend",
                    "extractive",
                    "--budget",
                    "8192",
                    "--index-dir",
                    str(d),
                    "--json",
                ],
            )
            if _ok_or_too_long(r, strategy):
                assert json.loads(r.output)["answer"]


def test_openai_backend_against_a_stand_in_server(shared_index):
    d, patients = shared_index
    server = StandIn()
    try:
        for pid in patients[:3] + ["sample-ehr-clean"]:
            for strategy in ("rag", "visit-bm25", "recent"):
                r = runner.invoke(
                    app,
                    [
                        "ask",
                        "Most recent vital signs?",
                        "--patient",
                        pid,
                        "--strategy",
                        strategy,
                        "--backend",
                        "openai",
                        "--base-url",
                        server.url,
                        "--model",
                        "stand-in",
                        "--index-dir",
                        str(d),
                        "--json",
                        "--no-cache",
                    ],
                )
                assert r.exit_code == 0, r.output
                out = json.loads(r.output)
                assert out["backend"] == "openai" and out["model"] == "stand-in" and out["prompt_tokens"] == 111
                assert out["answer"].startswith("From [1]:") and out["citations"][0]["marker"] == 1
        assert server.calls and all(c["model"] == "stand-in" for c in server.calls)
        assert "<ehr>" in server.calls[0]["messages"][-1]["content"]
    finally:
        server.server.shutdown()


def test_unreachable_server_is_one_clear_line(shared_index):
    d, _ = shared_index
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = runner.invoke(
        app,
        [
            "ask",
            "x",
            "--patient",
            "sample-ehr-clean",
            "--backend",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--model",
            "m",
            "--index-dir",
            str(d),
            "--no-cache",
        ],
    )
    assert r.exit_code == 5 and r.output.count("\n") == 1 and "ragehr: error:" in r.output


_EACH_STRATEGY = """
import json
from typer.testing import CliRunner
from ragehr.cli import app
out = []
for strategy in {strategies!r}:
    r = CliRunner().invoke(app, ["ask", "What did the head CT show?", "--patient", "sample-ehr-clean",
                                 "--strategy", strategy, "--backend", {backend!r}, "--budget", "{budget}",
                                 "--max-new-tokens", "{new}", "--index-dir", {index_dir!r}, "--json", "--no-cache"])
    out.append({{"strategy": strategy, "code": r.exit_code, "output": r.output, "stdout": r.stdout}})
emit(out)
"""


@pytest.mark.models
@pytest.mark.parametrize("backend", ["llamacpp", "transformers"])
def test_local_smollm2_each_strategy(shared_index, backend, request):
    """SmolLM2 answers with each selecting strategy (``full`` needs the whole record in the
    window: covered with the fake and extractive backends), in a child process (a native crash
    fails this test alone). Small windows keep CI time down. transformers uses the session's
    converted weights, linked into the index's cache."""
    import importlib.util

    from tests.childproc import run_child

    d, _ = shared_index
    if backend == "llamacpp" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed (make local-fast)")
    if backend == "transformers":
        models = d / ".cache" / "models"
        if not models.exists():
            models.parent.mkdir(parents=True, exist_ok=True)
            models.symlink_to(request.getfixturevalue("hf_model_cache"), target_is_directory=True)
    new, budget = 16, 1024
    results = run_child(
        _EACH_STRATEGY.format(
            strategies=("rag", "visit-bm25", "recent"), backend=backend, budget=budget, new=new, index_dir=str(d)
        ),
        what=f"ask with {backend}",
    )
    for res in results:
        assert res["code"] == 0, (res["strategy"], res["output"])
        out = json.loads(res["stdout"])
        assert out["backend"] == backend and out["model"].endswith(".gguf") and out["answer"].strip()
        assert out["prompt_tokens"] <= budget - new
