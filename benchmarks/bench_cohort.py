"""Cohort scale: indexing a synthetic cohort single-process vs ``--workers 2`` vs a local Ray
with 2 workers, and batch questions per second in one process vs one CLI call per question.

The cohort (``--patients``, default 50) is built from the shared records: every Synthea C-CDA
and FHIR patient, the ten patients of the FHIR bulk export (``fhir-bulk/10-patients``, split
by patient), MedAlign's sample record and ``make_record.py`` small records (``--synthetic``
seeds). Each cohort patient is a re-identified copy of one of these: the record written as
MedAlign XML under a new file name, which is its new patient id (``cohort-007``).

Every figure is wall-clock of the real command line (``python -m ragehr.cli ...``, what a user
runs, process start and model loading included), side by side in one run, on the same files,
each into an empty index folder (and so an empty embedding cache). The hashing embedder is
used so the comparison measures ragehr's own work and scheduling; with MiniLM the embedding
dominates (see benchmarks/RESULTS.md). Growth with patients: single-process indexing of the
first 10, 25 and all patients.

Usage (a few minutes on 2 cores)::

    python benchmarks/bench_cohort.py --out benchmarks/results/cohort.json

Everything written under ``--work`` (default ``benchmarks/data/cohort``) holds text derived
from the shared data: keep it out of git.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ragehr.ehr import load_record  # noqa: E402
from ragehr.ehr.medalign import write_medalign_xml  # noqa: E402

DEFAULT_SHARED = REPO.parent / "shared" / "data"
QUESTIONS = [
    "What was the most recent blood pressure?",
    "Which medications is the patient taking?",
]


def split_bulk(bulk: Path, out: Path) -> list[Path]:
    """One NDJSON file per patient from a FHIR bulk export (resources found by their
    ``subject`` or ``patient`` reference; shared Practitioners, Locations, ... left out)."""
    by_patient: dict[str, list[str]] = defaultdict(list)
    for f in sorted(bulk.glob("*.ndjson")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            res = json.loads(line)
            if res.get("resourceType") == "Patient":
                by_patient[res["id"]].append(line)
                continue
            ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
            if ref.startswith("Patient/"):
                by_patient[ref.split("/", 1)[1]].append(line)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for pid, lines in sorted(by_patient.items()):
        p = out / f"bulk-{pid[:8]}.ndjson"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(p)
    return files


def base_records(shared: Path, work: Path, synthetic: int) -> list[tuple[str, str]]:
    """(origin, MedAlign XML text) of every base record."""
    sources = sorted((shared / "synthea" / "ccda").glob("*.xml")) + sorted((shared / "synthea" / "fhir").glob("*.json"))
    sources += split_bulk(shared / "fhir-bulk" / "10-patients", work / "bulk")
    sources.append(shared / "medalign" / "sample-ehr-clean.xml")
    out = []
    for p in sources:
        try:
            out.append((p.name, write_medalign_xml(load_record(p))))
        except Exception as exc:
            print(f"  base {p.name} left out: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
    if synthetic:
        from make_record import build_xml

        for seed in range(synthetic):
            xml, _, _ = build_xml("small", seed, shared)
            out.append((f"make_record small seed {seed}", xml))
    return out


def make_cohort(shared: Path, work: Path, n: int, synthetic: int) -> tuple[Path, list[dict]]:
    folder = work / "records"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    bases = base_records(shared, work, synthetic)
    rows = []
    for i in range(n):
        origin, xml = bases[i % len(bases)]
        p = folder / f"cohort-{i:03d}.xml"
        p.write_text(xml, encoding="utf-8")
        rows.append({"patient_id": p.stem, "origin": origin, "bytes": p.stat().st_size})
    return folder, rows


def cli(*args: str, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ragehr.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    return time.perf_counter() - t, proc


def index_run(label: str, records: list[Path] | Path, work: Path, cfg: Path, *extra: str) -> dict:
    idx = work / f"idx-{label}"
    if idx.exists():
        shutil.rmtree(idx)
    paths = [str(records)] if isinstance(records, Path) else [str(p) for p in records]
    secs, proc = cli("index", *paths, "--index-dir", str(idx), "--config", str(cfg), *extra)
    built = sum(1 for line in proc.stdout.splitlines() if line.startswith("built"))
    chunks = sum(
        int(line.split(" chunks")[0].rsplit(", ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("built")
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    r = {
        "label": label,
        "seconds": round(secs, 2),
        "patients": built,
        "chunks": chunks,
        "rc": proc.returncode,
        "patients_per_s": round(built / secs, 3),
        "args": list(extra),
    }
    print(
        f"  index {label:<22} {secs:7.1f} s  {built} patients  {chunks} chunks  {built / secs:.2f} patients/s",
        file=sys.stderr,
    )
    return r


def ray_start_seconds() -> float:
    """Starting and stopping a local Ray with 2 CPUs, with nothing to run."""
    code = (
        "import time; t=time.perf_counter(); from ragehr.distributed import RayCluster\n"
        "with RayCluster('local', num_cpus=2): pass\n"
        "print(time.perf_counter()-t)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    return round(float(proc.stdout.strip().splitlines()[-1]), 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "cohort")
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--synthetic", type=int, default=2, help="make_record.py small records among the bases")
    ap.add_argument("--cli-questions", type=int, default=8, help="questions asked one CLI call each")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cohort.json")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "hashing.yaml"
    cfg.write_text("index:\n  embedder: hashing\nllm:\n  backend: extractive\n", encoding="utf-8")

    t = time.perf_counter()
    folder, patients = make_cohort(args.shared, work, args.patients, args.synthetic)
    files = sorted(folder.glob("*.xml"))
    total_bytes = sum(p["bytes"] for p in patients)
    print(
        f"cohort: {len(files)} patients, {total_bytes / 1e6:.1f} MB of XML, "
        f"{len({p['origin'] for p in patients})} distinct bases ({time.perf_counter() - t:.1f} s)",
        file=sys.stderr,
    )

    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        },
        "cohort": {"patients": len(files), "xml_bytes": total_bytes, "bases": sorted({p["origin"] for p in patients})},
        "index": [],
    }
    # growth with patients, single process
    for n in sorted({min(10, len(files)), min(25, len(files))}):
        if n < len(files):
            result["index"].append(index_run(f"single-{n}", files[:n], work, cfg))
    result["index"].append(index_run("single", folder, work, cfg))
    result["index"].append(index_run("workers-2", folder, work, cfg, "--workers", "2"))
    if not args.no_ray:
        result["ray_start_stop_s"] = ray_start_seconds()
        print(f"  local Ray start+stop (2 CPUs): {result['ray_start_stop_s']} s", file=sys.stderr)
        result["index"].append(index_run("ray-2", folder, work, cfg, "--ray", "local", "--workers", "2"))

    # batch questions: one process vs one CLI call per question
    idx = work / "idx-single"
    qfile = work / "questions.jsonl"
    qs = [
        {"id": f"{p['patient_id']}-{j}", "patient_id": p["patient_id"], "question": q}
        for p in patients
        for j, q in enumerate(QUESTIONS)
    ]
    qfile.write_text("".join(json.dumps(q) + "\n" for q in qs), encoding="utf-8")
    batch = {}
    common = ["--index-dir", str(idx), "--config", str(cfg), "--no-cache"]
    for label, extra in [("one-process", []), ("ray-2", ["--ray", "local", "--workers", "2"])]:
        if label.startswith("ray") and args.no_ray:
            continue
        out = work / f"answers-{label}.jsonl"
        out.unlink(missing_ok=True)
        secs, proc = cli("ask", "--questions", str(qfile), "--out", str(out), *common, *extra)
        n_ok = sum(1 for line in out.read_text().splitlines() if '"error"' not in line[:2000])
        batch[label] = {
            "seconds": round(secs, 2),
            "questions": len(qs),
            "answered": n_ok,
            "rc": proc.returncode,
            "questions_per_s": round(len(qs) / secs, 3),
        }
        print(f"  batch {label:<12} {secs:6.1f} s for {len(qs)} questions: {len(qs) / secs:.2f} q/s", file=sys.stderr)
    per_call = []
    for q in qs[: args.cli_questions]:
        secs, proc = cli("ask", q["question"], "--patient", q["patient_id"], "--json", *common)
        assert proc.returncode == 0, proc.stderr[-500:]
        per_call.append(secs)
    mean = sum(per_call) / len(per_call)
    batch["one-call-per-question"] = {
        "seconds_per_question": round(mean, 3),
        "questions": len(per_call),
        "questions_per_s": round(1 / mean, 3),
    }
    print(f"  one CLI call per question: {mean:.2f} s each ({1 / mean:.2f} q/s)", file=sys.stderr)
    result["batch"] = batch

    single = next(r for r in result["index"] if r["label"] == "single")
    result["derived"] = {
        "single_s_per_patient": round(single["seconds"] / single["patients"], 3),
        "batch_speedup_vs_one_call_per_question": round(
            batch["one-process"]["questions_per_s"] / batch["one-call-per-question"]["questions_per_s"], 1
        ),
    }
    for r in result["index"]:
        if r["label"] in ("workers-2", "ray-2"):
            result["derived"][f"{r['label']}_speedup"] = round(single["seconds"] / r["seconds"], 2)
    result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]

    # expected figures: what must hold on any machine (timings vary; these do not)
    def answers(label: str) -> dict:
        out = {}
        for line in (work / f"answers-{label}.jsonl").read_text().splitlines():
            r = json.loads(line)
            r.pop("timings", None)
            out[r["id"]] = r
        return out

    full_runs = [r for r in result["index"] if not r["label"].startswith("single-")]
    checks = [
        (
            "every indexing mode built every patient, with the same chunks",
            all(r["rc"] == 0 and r["patients"] == len(files) and r["chunks"] == single["chunks"] for r in full_runs),
        ),
        ("batch answered every question", batch["one-process"]["answered"] == len(qs)),
        (
            "batch is at least 5x one CLI call per question",
            result["derived"]["batch_speedup_vs_one_call_per_question"] >= 5,
        ),
    ]
    if "ray-2" in batch:
        checks.append(("batch over Ray gives the one-process answers", answers("ray-2") == answers("one-process")))
    result["checks"] = [{"check": c, "ok": ok} for c, ok in checks]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["derived"], indent=1))
    for c, ok in checks:
        print(f"{'OK  ' if ok else 'FAIL'} {c}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
