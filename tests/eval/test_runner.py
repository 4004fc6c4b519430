"""The smoke experiment end to end: expected figures OK, every artifact written, resumable,
and the notebook reproduces the tables from the predictions."""

from __future__ import annotations

import json
import os

import pytest

from ragehr.eval.experiment import ExperimentConfig
from ragehr.eval.runner import Condition, conditions, run_experiment, run_one
from tests.conftest import REPO

SMOKE = REPO / "configs" / "experiments" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("smoke")
    cfg = ExperimentConfig.from_file(SMOKE).model_copy(
        update={"data_root": str(shared_data), "index_dir": str(tmp / "idx"), "results_dir": str(tmp / "results")}
    )
    run_dir = tmp / "results" / "smoke"
    metrics = run_experiment(cfg, run_dir, config_text=SMOKE.read_text())
    return cfg, run_dir, metrics


def test_every_expected_figure_is_ok(smoke):
    _, _, metrics = smoke
    assert metrics["expected"] and all(c["ok"] for c in metrics["expected"]), metrics["expected"]


def test_artifacts(smoke):
    cfg, run_dir, metrics = smoke
    for name in (
        "predictions.jsonl",
        "metrics.json",
        "summary.md",
        "summary.csv",
        "manifest.json",
        "by_category.csv",
        "by_evidence_age.csv",
        "plots/by_evidence_age.png",
        "plots/accuracy_by_budget.png",
        "plots/evidence_recall_by_budget.png",
        "plots/cost_by_condition.png",
    ):
        assert (run_dir / name).is_file(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["packages"]["pydantic"] and manifest["config"]["name"] == "smoke"
    assert set(manifest["models"]) == {"extractive", "fake", "computed"}
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    n_items = manifest["n_items"]
    assert len(rows) == len({(r["item_id"], r["condition"]) for r in rows})
    ok = [r for r in rows if not r.get("error")]
    assert all({"packed_chunk_ids", "answer", "prompt_tokens", "latency_s"} <= set(r) for r in ok)
    assert n_items > 30 and len(conditions(cfg)) == 38  # 36 + the computed condition per dataset
    summary_md = (run_dir / "summary.md").read_text()
    assert "| synthea-qa | rag | 512 | bm25 | extractive |" in summary_md
    assert "## By question type" in summary_md and "## By evidence age" in summary_md
    assert all("abstained" in r and "depth" in r for r in ok if r["dataset"] == "synthea-qa")


def test_resume_after_a_kill(smoke, tmp_path):
    """Cut predictions.jsonl in the middle of a line: the rerun finishes the same grid and
    gets the same figures, with generations from the cache."""
    cfg, run_dir, metrics = smoke
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    copy = tmp_path / "resumed"
    copy.mkdir()
    half = len(lines) // 2
    (copy / "predictions.jsonl").write_text("\n".join(lines[:half]) + "\n" + lines[half][:25])
    again = run_experiment(cfg, copy)
    rows = [json.loads(line) for line in (copy / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(lines)
    strip = lambda m: [(s["condition"], s.get("accuracy"), s.get("evidence_recall")) for s in m["summary"]]
    assert strip(again) == strip(metrics)
    # a third run has nothing left to do
    before = (copy / "predictions.jsonl").read_text()
    run_experiment(cfg, copy)
    assert (copy / "predictions.jsonl").read_text() == before


def test_notebook_reproduces_the_tables(smoke):
    import nbformat
    from nbclient import NotebookClient

    _, run_dir, _ = smoke
    nb = nbformat.read(REPO / "notebooks" / "ablation.ipynb", as_version=4)
    os.environ["RAGEHR_RESULTS"] = str(run_dir)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    finally:
        os.environ.pop("RAGEHR_RESULTS", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| synthea-qa | rag | 512 | bm25 | extractive |" in markdown
    text = "".join(o.get("text", "") for o in outputs)
    assert "independent check: OK" in text  # recomputed without report.aggregate
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4


def test_run_one_is_a_pure_function_of_its_arguments(smoke):
    """run_one returns the same row (but timings) for the same item and condition, without
    touching the run folder: a batch or distributed runner can call it anywhere."""
    from pathlib import Path

    from ragehr.eval.runner import _backend, prepare
    from ragehr.index.search import load_patient_index

    cfg, run_dir, _ = smoke
    before = (run_dir / "predictions.jsonl").read_text()
    items, _ = prepare(cfg)
    item = next(it for it in items if it.dataset == "synthea-qa" and it.evidence_event_ids)
    cond = Condition("synthea-qa", "rag", 512, "bm25", "extractive")
    idx = load_patient_index(cfg.index_dir, item.patient_id, need_dense=False)
    be = _backend(cfg.backends[0], Path(cfg.index_dir) / ".cache" / "generations")
    drop = ("latency_s", "generate_s", "cached")
    a, b = (run_one(item, cond, idx, be, cfg) for _ in range(2))
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert a["condition"] == cond.key and 0.0 <= a["evidence_recall"] <= 1.0
    assert (run_dir / "predictions.jsonl").read_text() == before


def test_a_limit_keeps_every_question_type():
    from ragehr.eval.datasets import EvalItem
    from ragehr.eval.runner import _stratified_sample

    items = [
        EvalItem(item_id=f"{c}{p}{i}", dataset="d", patient_id=f"p{p}", question="q?", category=c)
        for c in ("a", "b", "c")
        for p in range(3)
        for i in range(10 if c == "a" else 2)
    ]
    picked = _stratified_sample(items, 9, seed=0)
    assert len(picked) == 9 and len({it.item_id for it in picked}) == 9
    assert {it.category for it in picked} == {"a", "b", "c"}
    assert sum(it.category == "b" for it in picked) == 3 and len({it.patient_id for it in picked}) >= 2
    assert _stratified_sample(items, 9, seed=0) == picked  # seeded


def test_strategy_budgets_give_one_strategy_its_own_windows():
    """The local-model grid: rag at the small window only, recent at both, full at the
    model's window; the budgets of other strategies are untouched, and a bad one is refused."""
    import pydantic

    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import conditions

    base = {
        "name": "t",
        "datasets": [{"name": "d", "type": "generated", "records": ["x"]}],
        "strategies": ["rag", "recent", "full"],
        "budgets": [2048],
        "orders": ["chronological", "edges"],
        "backends": [{"name": "extractive", "settings": {"context_window": 8192}}],
    }
    grid = conditions(ExperimentConfig(**base, strategy_budgets={"recent": [2048, 8192]}))
    got = sorted((c.strategy, c.budget or 0, c.order) for c in grid)
    assert got == [
        ("full", 0, "chronological"),
        ("rag", 2048, "chronological"),
        ("rag", 2048, "edges"),
        ("recent", 2048, "chronological"),
        ("recent", 8192, "chronological"),
    ]
    assert len(conditions(ExperimentConfig(**base))) == 4  # without it: recent at 2048 only
    for bad in ({"recent": []}, {"recent": [64]}, {"full": [8192]}):
        with pytest.raises(pydantic.ValidationError):
            ExperimentConfig(**base, strategy_budgets=bad)


def test_ablation_figures_expected_block_round_trips_with_an_order_axis(tmp_path, capsys):
    """scripts/ablation_figures.py prints an ``expected:`` block; read back as the config's
    expectations, every line must be OK on the run it came from, and each must match one
    condition (an evidence-order axis must not make a line match three)."""
    import runpy

    import yaml

    from ragehr.eval.experiment import Expectation
    from ragehr.eval.report import check_expectations

    def row(strategy, budget, order, er, acc):
        key = f"d|{strategy}|{budget or 'window'}|{'hybrid' if strategy == 'rag' else '-'}|local"
        return {
            "dataset": "d",
            "strategy": strategy,
            "budget": budget,
            "retriever": "hybrid" if strategy == "rag" else None,
            "backend": "local",
            "order": order,
            "n": 60,
            "errors": 0 if strategy != "full" else 40,
            "condition": key if order == "chronological" else f"{key}|{order}",
            "evidence_recall": er,
            "accuracy": acc,
            "abstained": 0.1,
        }

    summary = [
        row("rag", 2048, o, 0.9 - i / 10, 0.3 + i / 10) for i, o in enumerate(("chronological", "relevance", "edges"))
    ]
    summary += [
        row("recent", 2048, "chronological", 0.1, 0.05),
        row("recent", 8192, "chronological", 0.3, 0.1),
        row("full", None, "chronological", 1.0, 0.2),
    ]
    (tmp_path / "metrics.json").write_text(json.dumps({"summary": summary}))
    main = runpy.run_path(str(REPO / "scripts" / "ablation_figures.py"))["main"]
    assert main([str(tmp_path), "--backend", "local", "--budgets", "2048,8192"]) == 0
    out = capsys.readouterr().out
    assert "| rag (hybrid), relevance order | 0.80 / 0.40 / 0.10 | - |" in out
    assert "| full (whole window) | 1.00 / 0.20 / 0.10 (n=20) |" in out
    block = yaml.safe_load(out[out.index("expected:") :])["expected"]
    checks = check_expectations(summary, tuple(Expectation(**e) for e in block))
    assert len(block) == 6 * 3 and len(checks) == len(block) and all(c["ok"] for c in checks)


def test_a_slow_backend_runs_a_subset_of_the_grid():
    """A second, slower backend in the same experiment: its own strategies, budgets and
    orders; the first backend keeps the experiment's (and the strategy's) settings."""
    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import conditions

    cfg = ExperimentConfig(
        name="t",
        datasets=[{"name": "d", "type": "generated", "records": ["x"]}],
        strategies=["rag", "recent", "full"],
        budgets=[2048],
        strategy_budgets={"recent": [2048, 8192]},
        orders=["chronological", "relevance"],
        backends=[
            {"name": "extractive"},
            {
                "name": "fake",
                "label": "slow",
                "budgets": [2048],
                "strategies": ["rag", "recent"],
                "orders": ["relevance"],
            },
        ],
    )
    grid = sorted((c.backend, c.strategy, c.budget or 0, c.order) for c in conditions(cfg))
    assert [g for g in grid if g[0] == "slow"] == [
        ("slow", "rag", 2048, "relevance"),
        ("slow", "recent", 2048, "chronological"),
    ]
    assert len([g for g in grid if g[0] == "extractive"]) == 2 + 2 + 1  # rag x 2 orders, recent x 2 budgets, full
