"""llama.cpp (portable build) against transformers on the same SmolLM2-135M-Instruct GGUF and
the same prompts at ~1k, 2k and 8k tokens (issue 9): load time cold and warm, prefill and
decode tokens/s, peak memory, and how often the greedy answers are identical.

    .venv/bin/python benchmarks/bench_backends.py [--questions 2] [--max-new-tokens 32]
        [--threads 1] [--sizes 1024,2048,8192] [--out benchmarks/results/backends.json]

Prompts: MedAlign's public sample instructions asked of a Synthea patient of the shared data
(`--record`; long enough to fill an 8k window, which MedAlign's sample record is not), packed by
the `recent` strategy to fill each window (prompt + answer), counted with the
model's tokenizer (both backends' tokenizers give the same counts: tests/llm/test_hf.py), laid
out by the model's own chat template. Each measurement runs in its own child process, one
backend at a time (never both at once), so peak memory (the child's max RSS) is that backend's:

- cold load: the first load with nothing cached: transformers converts the GGUF to
  safetensors (into a fresh temporary cache); llama.cpp maps the GGUF (first process);
- warm load: a new process loading again (transformers reads the converted safetensors);
- prefill tokens/s: prompt tokens over the time to the first streamed piece of text;
  decode tokens/s: the following tokens over the time after it (the same measure for both);
- agreement: greedy answers identical (after stripping whitespace), and the share of the
  answer's leading characters they have in common.

Generated text is compared in memory and never written out (it is derived from a record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (  # verbatim from MedAlign's instructions-sample.csv
    "Were any complications reported during this patient's last MRI exam?",
    "Has she ever been on a statin before?",
    "Please show the patient's vital signs over the past 6 months",
)
MARK = "BENCH-RESULT "


# --- child: one backend, one process -----------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from ragehr.llm.registry import make_backend
    from ragehr.types.generation import GenerationRequest, Message

    settings = {"context_window": args.window, "n_threads": args.threads}
    if args.backend == "transformers":
        settings["cache_dir"] = args.cache_dir
    be = make_backend(args.backend, **settings)
    t1 = time.perf_counter()
    be.load()
    t2 = time.perf_counter()
    out: dict = {
        "backend": args.backend,
        "import_s": round(t1 - t0, 3),
        "load_s": round(t2 - t1, 3),
        "converted": getattr(be, "converted_now", None),
        "runs": [],
    }
    prompts = json.loads(Path(args.prompts).read_text(encoding="utf-8")) if args.prompts else []
    for p in prompts:
        messages = tuple(Message(**m) for m in p["messages"])
        req = GenerationRequest(messages=messages, question=p["question"], max_tokens=args.max_new_tokens)
        first: list[float] = []
        start = time.perf_counter()
        gen = be.generate(
            req, on_token=lambda _s, first=first: first.append(time.perf_counter()) if not first else None
        )
        end = time.perf_counter()
        n_new = be.token_counter().count(gen.text) if gen.completion_tokens is None else gen.completion_tokens
        ttft = (first[0] - start) if first else end - start
        out["runs"].append(
            {
                "size": p["size"],
                "prompt_tokens": p["prompt_tokens"],
                "new_tokens": n_new,
                "ttft_s": round(ttft, 4),
                "total_s": round(end - start, 4),
                "prefill_tok_s": p["prompt_tokens"] / ttft if ttft > 0 else None,
                "decode_tok_s": (n_new - 1) / (end - first[0]) if first and n_new > 1 and end > first[0] else None,
                "text": gen.text,  # compared by the parent, never written to the results file
            }
        )
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    sys.stdout.write("\n" + MARK + json.dumps(out) + "\n")
    return 0


def run_child(backend: str, cache_dir: Path, prompts: Path | None, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        backend,
        "--cache-dir",
        str(cache_dir),
        "--window",
        str(args.window),
        "--threads",
        str(args.threads),
        "--max-new-tokens",
        str(args.max_new_tokens),
    ]
    if prompts is not None:
        cmd += ["--prompts", str(prompts)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{backend} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(MARK))
    return json.loads(line[len(MARK) :])


# --- parent ---------------------------------------------------------------------------------


def build_prompts(cache_dir: Path, sizes: list[int], n_questions: int, max_new: int, record: Path) -> list[dict]:
    from ragehr.config import IndexConfig
    from ragehr.index.build import build_indexes
    from ragehr.index.search import load_patient_index
    from ragehr.llm.hf import TransformersBackend
    from ragehr.pipeline.spec import ContextSpec, prepare_context
    from ragehr.prompts import build_messages

    counter_backend = TransformersBackend(cache_dir=cache_dir, context_window=max(sizes))
    counter_backend.tokenizer()  # the tokenizer only (the weights stay in the children)
    with tempfile.TemporaryDirectory() as tmp:
        [s] = build_indexes([record], Path(tmp), IndexConfig(embedder="hashing"))
        idx = load_patient_index(Path(tmp), s.patient_id, need_dense=False)
        prompts = []
        for size in sizes:
            for q in QUESTIONS[:n_questions]:
                spec = ContextSpec(strategy="recent", budget=size, max_new_tokens=max_new)
                prep = prepare_context(idx, q, spec, counter_backend)
                messages = build_messages(q, prep.context.packed.block())
                chat = [{"role": m.role, "content": m.content} for m in messages]
                n = len(counter_backend.prompt_ids(messages))  # as generate() tokenizes it
                prompts.append({"size": size, "question": q, "messages": chat, "prompt_tokens": n})
    return prompts


def common_prefix_share(a: str, b: str) -> float:
    a, b = a.strip(), b.strip()
    if not a and not b:
        return 1.0
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n / max(len(a), len(b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=2)
    ap.add_argument("--sizes", default="1024,2048,8192")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("RAGEHR_SHARED_DATA", REPO.parent / "shared" / "data"))
    )
    ap.add_argument(
        "--record",
        default="synthea/fhir/exafluence_CA_2b8f6690-5ebd-45ef-ba61-152e08c9f38a.json",
        help="a record under --data",
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child")
    ap.add_argument("--cache-dir")
    ap.add_argument("--prompts")
    ap.add_argument("--window", type=int, default=8192)
    args = ap.parse_args()
    if args.child:
        args.backend = args.child
        return child(args)
    sizes = [int(x) for x in args.sizes.split(",")]
    args.window = max(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "models"
        print("transformers, cold (converts the GGUF) ...", file=sys.stderr, flush=True)
        hf_cold = run_child("transformers", cache, None, args)
        print("llama.cpp, cold ...", file=sys.stderr, flush=True)
        ll_cold = run_child("llamacpp", cache, None, args)
        prompts = build_prompts(cache, sizes, args.questions, args.max_new_tokens, args.data / args.record)
        pfile = Path(tmp) / "prompts.json"
        pfile.write_text(json.dumps(prompts), encoding="utf-8")
        print(f"{len(prompts)} prompts; llama.cpp, warm ...", file=sys.stderr, flush=True)
        ll = run_child("llamacpp", cache, pfile, args)
        print("transformers, warm ...", file=sys.stderr, flush=True)
        hf = run_child("transformers", cache, pfile, args)
    rows = []
    for size in sizes:
        pairs = [(a, b) for a, b in zip(ll["runs"], hf["runs"]) if a["size"] == size]
        row = {"size": size, "n": len(pairs), "prompt_tokens": statistics.fmean(a["prompt_tokens"] for a, _ in pairs)}
        for name, idx in (("llamacpp", 0), ("transformers", 1)):
            runs = [p[idx] for p in pairs]
            row[name] = {
                "prefill_tok_s": statistics.fmean(r["prefill_tok_s"] for r in runs),
                "decode_tok_s": statistics.fmean(r["decode_tok_s"] for r in runs if r["decode_tok_s"])
                if any(r["decode_tok_s"] for r in runs)
                else None,
                "total_s": statistics.fmean(r["total_s"] for r in runs),
            }
        row["identical"] = sum(a["text"].strip() == b["text"].strip() for a, b in pairs)
        row["common_prefix_share"] = statistics.fmean(common_prefix_share(a["text"], b["text"]) for a, b in pairs)
        rows.append(row)
    for r in (ll, hf):
        for run in r["runs"]:
            run.pop("text")
    load = {
        "llamacpp": {
            "cold_s": ll_cold["load_s"],
            "warm_s": ll["load_s"],
            "import_s": ll["import_s"],
            "peak_rss_mb": ll["peak_rss_mb"],
        },
        "transformers": {
            "cold_s": hf_cold["load_s"],
            "warm_s": hf["load_s"],
            "import_s": hf["import_s"],
            "peak_rss_mb": hf["peak_rss_mb"],
            "cold_converted": hf_cold["converted"],
        },
    }
    try:
        loadavg = os.getloadavg()
    except OSError:
        loadavg = None
    doc = {
        "command": " ".join(["python", "benchmarks/bench_backends.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "loadavg_at_end": loadavg},
        "record": args.record,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "load": load,
        "rows": rows,
        "runs": {"llamacpp": ll["runs"], "transformers": hf["runs"]},
    }
    print(
        f"\nSmolLM2-135M-Instruct Q4_1, {args.threads} thread(s), {args.max_new_tokens} new tokens, "
        f"{args.questions} question(s) per size, record {args.record}; load average at end {loadavg}"
    )
    print("\n| | llama.cpp | transformers | ratio (llama/tf) |\n|---|---|---|---|")
    for key, label in (
        ("cold_s", "load, cold (s)"),
        ("warm_s", "load, warm (s)"),
        ("import_s", "import (s)"),
        ("peak_rss_mb", "peak RSS (MB)"),
    ):
        a, b = load["llamacpp"][key], load["transformers"][key]
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    print(
        "\n| prompt | tokens | prefill tok/s llama.cpp | transformers | decode tok/s llama.cpp | transformers | identical | common prefix |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lc, tf = r["llamacpp"], r["transformers"]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        print(
            f"| {r['size']} | {r['prompt_tokens']:.0f} | {fmt(lc['prefill_tok_s'])} | {fmt(tf['prefill_tok_s'])} | "
            f"{fmt(lc['decode_tok_s'])} | {fmt(tf['decode_tok_s'])} | {r['identical']}/{r['n']} | {r['common_prefix_share']:.2f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
