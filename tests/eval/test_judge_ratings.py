"""The optional LLM judge (through the openai backend, against a stand-in server on
127.0.0.1) and Kendall's tau against a human ratings file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ragehr.eval.experiment import ExperimentConfig
from ragehr.eval.judge import parse_scores
from ragehr.eval.runner import run_experiment


def test_parse_scores():
    assert parse_scores('Sure: {"accuracy": 4, "completeness": 3, "clarity": 5}') == {
        "accuracy": 4,
        "completeness": 3,
        "clarity": 5,
    }
    assert parse_scores('{"accuracy": 9, "completeness": 3, "clarity": 5}') is None
    assert parse_scores("no json here") is None


def test_judge_and_ratings_in_a_run(tmp_path, shared_data):
    calls = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            n = 1 + len(body["messages"][-1]["content"]) % 5  # deterministic, varied
            out = json.dumps(
                {
                    "choices": [
                        {"message": {"content": json.dumps({"accuracy": n, "completeness": 6 - n, "clarity": 3})}}
                    ]
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    ratings = tmp_path / "ratings.csv"
    import csv

    rows = list(csv.DictReader((shared_data / "medalign" / "instructions-sample.csv").read_text().splitlines()))[:5]
    ratings.write_text(
        "item_id,backend,strategy,rating\n"
        + "".join(f"{r['instruction_id']},extractive,rag,{i % 3 + 1}\n" for i, r in enumerate(rows))
    )
    cfg = ExperimentConfig.model_validate(
        {
            "name": "judged",
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
                    "limit": 61,
                }
            ],
            "strategies": ["rag"],
            "budgets": [1024],
            "retrievers": ["bm25"],
            "backends": ["extractive"],
            "judge": {"name": "openai", "settings": {"base_url": url, "model": "judge"}},
            "ratings": str(ratings),
        }
    )
    try:
        metrics = run_experiment(cfg, tmp_path / "res" / "judged")
    finally:
        server.shutdown()
    assert len(calls) == 61 and "<ehr>" in calls[0]["messages"][-1]["content"]
    s = metrics["summary"][0]
    assert 1 <= s["judge_accuracy"] <= 5 and s["judge_clarity"] == 3
    corr = {c["metric"]: c for c in metrics["rating_correlations"]}
    assert corr["judge_accuracy"]["n"] == 5 and -1 <= corr["judge_accuracy"]["tau_b"] <= 1
    assert "Kendall's tau-b" in (tmp_path / "res" / "judged" / "summary.md").read_text()
