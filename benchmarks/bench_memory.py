"""Peak memory of ``ragehr index``: one record by stage, and a cohort of many files (issue 12).

    PYTHONPATH=. python benchmarks/bench_memory.py benchmarks/data/synthetic_{small,median,large}.xml \\
        [--copies 12] [--out benchmarks/results/memory.json]

Each measurement runs in a fresh process, so its peak RSS (``VmHWM``) is its own; the
hashing embedder keeps models out of the figures (a model adds its own fixed size).

- **by stage**, for each record: RSS after the imports, after reading the file, after the
  XML tree, after the record (events), after dropping the tree, after chunking, and the
  peak of a whole ``build_indexes`` of that record alone;
- **cohort**: ``--copies`` copies of the median record, each its own patient (MedAlign files
  are named by patient), indexed in one ``build_indexes`` call: with the first pass keeping at
  most ``KEEP_PARSED_EVENTS`` parsed events (what ragehr does), against keeping every parsed
  record until the end (what it did before: ``KEEP_PARSED_EVENTS`` set to infinity, and the
  records of built patients not let go). One copy alone is the reference.

Copies live in a temporary folder and are removed; nothing of the records is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "BENCH-RESULT "


def _rss() -> tuple[int, int]:
    cur = hwm = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) // 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) // 1024
    return cur, hwm


def child_stages(path: Path) -> dict:
    import gc

    from ragehr.chunking import chunk_record
    from ragehr.config import IndexConfig
    from ragehr.ehr.medalign import parse_medalign
    from ragehr.ehr.source import parse_xml
    from ragehr.tokens import EstimateCounter

    out = {"imports": _rss()[0]}
    data = path.read_bytes()
    out["file read"] = _rss()[0]
    root = parse_xml(path, data)
    out["XML tree"] = _rss()[0]
    rec = parse_medalign(root, path=path)
    out["record (events)"] = _rss()[0]
    del root, data
    gc.collect()
    out["tree dropped"] = _rss()[0]
    chunks = chunk_record(rec, IndexConfig().chunking, EstimateCounter())
    out["chunks"] = _rss()[0]
    return {"stages_mb": out, "events": len(rec.events), "chunks": len(chunks), "peak_mb": _rss()[1]}


def child_build(paths: list[Path], keep: int | None, hold: bool) -> dict:
    from ragehr.config import IndexConfig
    from ragehr.index import build as build_mod

    if keep is not None:
        build_mod.KEEP_PARSED_EVENTS = keep
    held: list = []
    if hold:  # the old behaviour: every parsed record stays alive until the call returns
        real = build_mod._build_one

        def holding(pid, records, *a, **kw):
            held.append(records)
            return real(pid, records, *a, **kw)

        build_mod._build_one = holding
    base = _rss()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        summaries = build_mod.build_indexes(paths, Path(tmp) / "idx", IndexConfig(embedder="hashing"))
        secs = time.perf_counter() - t
    assert all(s.status == "built" for s in summaries), [s.message for s in summaries]
    return {
        "patients": len(summaries),
        "events": sum(s.n_events for s in summaries),
        "seconds": round(secs, 2),
        "baseline_mb": base,
        "peak_mb": _rss()[1],
    }


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(MARK))
    return json.loads(line[len(MARK) :])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="*")
    ap.add_argument("--copies", type=int, default=12)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "stages":
            res = child_stages(Path(rest[0]))
            res["build"] = child_build([Path(rest[0])], None, False)
        else:  # build KEEP HOLD paths...
            keep = None if rest[0] == "default" else int(rest[0])
            res = child_build([Path(p) for p in rest[2:]], keep, rest[1] == "hold")
        sys.stdout.write("\n" + MARK + json.dumps(res) + "\n")
        return 0
    if not args.records:
        ap.error("give record files (benchmarks/make_record.py writes them)")
    doc: dict = {
        "command": " ".join(["python", "benchmarks/bench_memory.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "records": {},
        "cohort": {},
    }
    for path in args.records:
        print(f"stages: {path.name} ...", file=sys.stderr, flush=True)
        doc["records"][path.name] = run_child("stages", str(path))
    median = next((p for p in args.records if "median" in p.name), args.records[-1])
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for i in range(args.copies):
            c = Path(tmp) / f"copy{i:03d}" / f"EHR_{90000 + i}.xml"
            c.parent.mkdir()
            shutil.copy(median, c)
            copies.append(str(c))
        for label, keep, hold, files in (
            ("one copy", "default", "free", copies[:1]),
            (f"{args.copies} copies, bounded (ragehr)", "default", "free", copies),
            (f"{args.copies} copies, every record kept (before)", str(10**12), "hold", copies),
        ):
            print(f"cohort: {label} ...", file=sys.stderr, flush=True)
            doc["cohort"][label] = run_child("build", keep, hold, *files)
    doc["load_average_end"] = os.getloadavg()
    print(
        f"\nPeak RSS of `build_indexes` (hashing embedder), fresh process each; load average at end {doc['load_average_end']}"
    )
    print(
        "\n| record | events | chunks | "
        + " | ".join(next(iter(doc["records"].values()))["stages_mb"])
        + " | build peak |"
    )
    print("|---|---|---|" + "---|" * (len(next(iter(doc["records"].values()))["stages_mb"]) + 1))
    for name, r in doc["records"].items():
        print(
            f"| {name} | {r['events']:,} | {r['chunks']:,} | "
            + " | ".join(f"{v} MB" for v in r["stages_mb"].values())
            + f" | {r['build']['peak_mb']} MB |"
        )
    print(f"\n| cohort ({median.name} copies) | patients | events | seconds | peak RSS |\n|---|---|---|---|---|")
    for label, r in doc["cohort"].items():
        print(f"| {label} | {r['patients']} | {r['events']:,} | {r['seconds']} | {r['peak_mb']} MB |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
