"""Latency and prompt tokens of `rag` at budgets 1k/2k/4k against `recent` and `full` at the
model's whole window, for the same model and the same questions (issue: packing + ask).

    .venv/bin/python benchmarks/bench_ask.py [--index-dir indexes] [--patient sample-ehr-clean]
        [--window 8192] [--out benchmarks/results/ask.json]

Uses the local SmolLM2-135M-Instruct (llama.cpp, CPU) with the generation cache off, on
MedAlign's public sample instructions asked of the indexed MedAlign sample record (which fits
an 8k window whole, so `full` runs). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragehr.index.search import load_patient_index
from ragehr.llm.registry import make_backend
from ragehr.packing import ContextTooLongError
from ragehr.pipeline.ask import ask

QUESTIONS = (  # verbatim from MedAlign's instructions-sample.csv
    "Were any complications reported during this patient's last MRI exam?",
    "Has she ever been on a statin before?",
    "Please show the patient's vital signs over the past 6 months",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index-dir", default="indexes")
    ap.add_argument("--patient", default="sample-ehr-clean")
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    backend = make_backend("local", context_window=args.window, n_threads=2)
    idx = load_patient_index(args.index_dir, args.patient)
    conds = [("rag", 1024), ("rag", 2048), ("rag", 4096), ("recent", args.window), ("full", args.window)]
    rows = []
    for strategy, budget in conds:
        lat, toks, used = [], [], []
        for q in QUESTIONS:
            try:
                r = ask(idx, q, backend, strategy=strategy, budget=budget, max_new_tokens=args.max_new_tokens)
            except ContextTooLongError as exc:
                print(f"{strategy}@{budget}: {exc}", file=sys.stderr)
                break
            lat.append(r.generation.seconds)
            toks.append(r.prompt_tokens)
            used.append(r.context.packed.used_tokens)
        if lat:
            rows.append(
                {
                    "strategy": strategy,
                    "budget": budget,
                    "n": len(lat),
                    "prompt_tokens": statistics.fmean(toks),
                    "evidence_tokens": statistics.fmean(used),
                    "latency_s": statistics.fmean(lat),
                    "latency_max_s": max(lat),
                }
            )
    full = next((r for r in rows if r["strategy"] == "full"), None)
    print(
        f"model {backend.model}, window {args.window}, {len(QUESTIONS)} questions, patient {args.patient}; "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print("\n| strategy | budget | prompt tokens | mean latency s | latency / full |\n|---|---|---|---|---|")
    for r in rows:
        ratio = r["latency_s"] / full["latency_s"] if full else float("nan")
        print(f"| {r['strategy']} | {r['budget']} | {r['prompt_tokens']:.0f} | {r['latency_s']:.2f} | {ratio:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "model": backend.model, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
