"""Does keeping llama.cpp's KV cache for a shared prompt prefix (``reuse_prefix``) change the
answers, and what does it save? The ablation (``rag_vs_long_context_local.yaml``) runs
SmolLM2 at its whole 8k window with it: under ``recent`` and ``full`` the evidence does not
depend on the question and comes before it in the prompt, so questions about one record
share everything but their last few dozen tokens.

    .venv/bin/python benchmarks/bench_prefix.py [--window 8192] [--questions 4] [--threads 2]
        [--max-new-tokens 64] [--out benchmarks/results/prefix.json]

The same prompts (MedAlign's public sample instructions asked of a Synthea patient, packed by
``recent`` to fill the window, the model's own token counts) are answered twice in one process,
greedily: each from an empty KV cache, then in a row with ``reuse_prefix``. Prints the time
per question both ways and how many answers are identical. Answers are compared in memory and
never written out (they are derived from a record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (  # verbatim from MedAlign's instructions-sample.csv
    "Were any complications reported during this patient's last MRI exam?",
    "Has she ever been on a statin before?",
    "Please show the patient's vital signs over the past 6 months",
    "What medications is she currently on?",
    "When was her last A1c?",
    "Does she have any allergies?",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("RAGEHR_SHARED_DATA", REPO.parent / "shared" / "data"))
    )
    ap.add_argument("--record", default="synthea/fhir/exafluence_CA_2b8f6690-5ebd-45ef-ba61-152e08c9f38a.json")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from ragehr.config import IndexConfig
    from ragehr.index.build import build_indexes
    from ragehr.index.search import load_patient_index
    from ragehr.llm.registry import make_backend
    from ragehr.pipeline.spec import ContextSpec, prepare_context
    from ragehr.prompts import build_messages
    from ragehr.types.generation import GenerationRequest

    fresh = make_backend("llamacpp", context_window=args.window, n_threads=args.threads)
    reuse = make_backend("llamacpp", context_window=args.window, n_threads=args.threads, reuse_prefix=True)
    questions = QUESTIONS[: args.questions]
    with tempfile.TemporaryDirectory() as tmp:
        [s] = build_indexes([args.data / args.record], Path(tmp), IndexConfig(embedder="hashing"))
        idx = load_patient_index(Path(tmp), s.patient_id, need_dense=False)
        # a fixed question reserve: the evidence is then the same for every question
        spec = ContextSpec(
            strategy="recent", budget=args.window, max_new_tokens=args.max_new_tokens, question_reserve=64
        )
        requests = []
        for q in questions:
            prep = prepare_context(idx, q, spec, fresh)
            requests.append(
                GenerationRequest(
                    messages=build_messages(q, prep.context.packed.block()), question=q, max_tokens=args.max_new_tokens
                )
            )
    fresh.load()
    reuse.load()
    runs: dict[str, list[tuple[float, str]]] = {"fresh": [], "reuse": []}
    for name, be in (("fresh", fresh), ("reuse", reuse)):
        for req in requests:
            t0 = time.perf_counter()
            text = be.generate(req).text
            runs[name].append((time.perf_counter() - t0, text))
            print(f"{name}: {runs[name][-1][0]:.1f} s", file=sys.stderr, flush=True)
    identical = sum(a[1].strip() == b[1].strip() for a, b in zip(runs["fresh"], runs["reuse"]))
    doc = {
        "command": " ".join(["python", "benchmarks/bench_prefix.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "window": args.window,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "record": args.record,
        "fresh_s": [round(t, 2) for t, _ in runs["fresh"]],
        "reuse_s": [round(t, 2) for t, _ in runs["reuse"]],
        "identical": identical,
        "n": len(requests),
    }
    f_mean, r_mean = statistics.fmean(doc["fresh_s"]), statistics.fmean(doc["reuse_s"][1:] or doc["reuse_s"])
    print(
        f"\nSmolLM2 at {args.window} tokens (recent), {len(requests)} questions, {args.threads} threads, "
        f"load average at end {doc['machine']['loadavg_at_end']}"
    )
    print("| | s per question |\n|---|---|")
    print(f"| empty KV cache each time | {f_mean:.1f} |")
    print(f"| reuse_prefix, first question | {doc['reuse_s'][0]:.1f} |")
    print(f"| reuse_prefix, later questions | {r_mean:.1f} ({f_mean / r_mean:.0f}x faster) |")
    print(f"identical greedy answers: {identical}/{len(requests)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
