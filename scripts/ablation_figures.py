"""Print the README's ablation tables and the matching ``expected:`` block from a run.

    python scripts/ablation_figures.py results/rag_vs_long_context [--budgets 512,2048,8192,32768]
    python scripts/ablation_figures.py results/rag_vs_long_context_local --backend local --budgets 2048,8192

The tables show, per dataset, each strategy's evidence recall / accuracy / abstention rate at
the chosen budgets (and ``full`` at the backend's whole window), one row per evidence order
when the run has that axis; the ``expected:`` block has
one ``==`` check (tolerance 0.005, i.e. the printed two decimals, plus float rounding) per printed figure, to paste
into ``configs/experiments/rag_vs_long_context.yaml`` so that ``ragehr eval`` re-checks every
figure the README prints (OK/FAIL). Reads ``metrics.json`` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = (("evidence_recall", "evidence recall"), ("accuracy", "accuracy"), ("abstained", "abstained"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--budgets", default="512,2048,8192,32768")
    ap.add_argument("--backend", default="extractive")
    args = ap.parse_args(argv)
    try:
        summary = json.loads((args.run_dir / "metrics.json").read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read {args.run_dir / 'metrics.json'}: {exc}", file=sys.stderr)
        return 2
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = [s for s in summary if s["backend"] == args.backend]
    order_names = ("chronological", "relevance", "edges")
    expected = []
    for ds in sorted({s["dataset"] for s in rows}):
        sub = {
            (s["strategy"], s.get("retriever"), s.get("order") or "chronological", s.get("budget")): s
            for s in rows
            if s["dataset"] == ds
        }
        n = max(s["n"] for s in sub.values())
        print(f"\n**{ds}** ({n} items; cells: evidence recall / accuracy / abstained)\n")
        print("| strategy | " + " | ".join(f"{b:,}" for b in budgets) + " |")
        print("|---" * (len(budgets) + 1) + "|")
        arms = sorted(
            {k[:3] for k in sub},
            key=lambda a: (
                "rag visit-bm25 recent full".split().index(a[0]),
                a[1] or "",
                order_names.index(a[2]) if a[2] in order_names else 9,
            ),
        )
        multi_order = len({k[2] for k in sub}) > 1
        for strategy, retriever, order in arms:
            cells = []
            for b in budgets if strategy != "full" else [None]:
                s = sub.get((strategy, retriever, order, b))
                if s is None:
                    cells.append("-")
                    continue
                vals = []
                for m, _ in METRICS:
                    v = s.get(m)
                    vals.append("-" if v is None else f"{v:.2f}")
                    if v is not None:
                        where = {"dataset": ds, "strategy": strategy, "budget": b, "backend": args.backend}
                        if retriever:
                            where["retriever"] = retriever
                        if multi_order:
                            where["order"] = order
                        expected.append({"metric": m, "where": where, "op": "==", "value": round(v, 2), "tol": 0.0051})
                ok = s["n"] - s["errors"]
                cells.append(" / ".join(vals) + (f" (n={ok})" if s["errors"] else ""))
            if strategy == "full":
                cells = [cells[0]] + [""] * (len(budgets) - 1)
                label = "full (whole window)"
            else:
                label = strategy + (f" ({retriever})" if retriever else "")
            if order != "chronological":
                label += f", {order} order"
            print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nexpected:")
    for e in expected:
        w = ", ".join(f"{k}: {v if v is not None else 'null'}" for k, v in e["where"].items())
        print(f'  - {{metric: {e["metric"]}, where: {{{w}}}, op: "==", value: {e["value"]}, tol: {e["tol"]}}}')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
