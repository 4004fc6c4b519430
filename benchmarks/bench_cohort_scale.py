"""A MedAlign-scale cohort with the default configuration: measured patients, 276 estimated (issue 22, item 3).

    for i in $(seq 1 14); do
        python benchmarks/make_record.py benchmarks/data/cohort20/p$(printf %02d $i).xml --size 100k \
            --seed $i --shared ../shared/data --quiet
    done
    python benchmarks/bench_cohort_scale.py benchmarks/data/cohort20 --first 4 \
        --out benchmarks/results/cohort-scale-22.json
    python benchmarks/bench_cohort_scale.py --check benchmarks/results/cohort-scale-22.json  # re-estimate

Each patient is a different ``make_record.py`` record (one seed each, so no two share chunk
texts and the embedding cache cannot answer for another patient). The real command line is
timed, process start and model loading included, each into an empty index folder (so an empty
embedding cache): ``ragehr index FOLDER`` in one process, then ``--ray local --workers 2``; each
mode twice, over the first ``--first`` patients and over all, so that the fixed start-up
(process start, model load, Ray start) and the marginal cost per chunk separate. No
``--config`` is given: this is the default configuration. Indexing cost grows with chunks,
so records smaller than MedAlign's median may stand in (``--size 100k``: ~1,000 chunks each,
generated in a quarter of the time); the 276-patient estimate is fixed + per-chunk x 3,823
chunks (the median record's) x 276. The static model is read from ``$RAGEHR_MODELS_DIR``
(distil it once before; that minute is not part of any figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cohort import index_run

MEDALIGN_PATIENTS = 276
MEDIAN_CHUNKS = 3823
"""Chunks of a MedAlign-median record (``make_record.py --size median --seed 0``): indexing
cost grows with chunks, so smaller records' marginal seconds per chunk are scaled to it."""


def estimate(result: dict) -> list[tuple[str, bool]]:
    """Per mode: fixed start-up and marginal seconds per chunk from the two runs (few, all
    patients), and 276 patients of ``MEDIAN_CHUNKS`` chunks each estimated from them."""
    runs = {
        r["label"].rsplit("-", 1)[0] + ("-few" if r["patients"] < result["patients"] else "-all"): r
        for r in result["runs"]
    }
    checks = []
    print("\n| mode | fixed s | s per chunk | s per median patient | 276 median patients (estimate) |")
    print("|---|---|---|---|---|")
    for mode in ("one-process", "ray-2"):
        few, full = runs.get(f"{mode}-few"), runs.get(f"{mode}-all")
        if not few or not full:
            continue
        per_chunk = (full["seconds"] - few["seconds"]) / (full["chunks"] - few["chunks"])
        fixed = max(full["seconds"] - per_chunk * full["chunks"], 0.0)
        minutes = (fixed + per_chunk * MEDIAN_CHUNKS * MEDALIGN_PATIENTS) / 60
        result[mode] = {"fixed_s": fixed, "seconds_per_chunk": per_chunk, "estimate_276_min": minutes}
        print(
            f"| {mode} | {fixed:.1f} | {per_chunk * 1000:.2f} ms | {per_chunk * MEDIAN_CHUNKS:.1f} | {minutes:.1f} min |"
        )
        if mode == "one-process":
            checks.append((f"276 MedAlign-median patients in one process: {minutes:.1f} min < 30 min", minutes < 30))
    checks.append(("every run built every patient", all(r["rc"] == 0 for r in result["runs"])))
    for what, ok in checks:
        print(f"{'OK  ' if ok else 'FAIL'} {what}")
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", help="a folder of record files, one patient each")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/data/cohort-scale-work"))
    ap.add_argument("--first", type=int, default=4, help="also index only this many patients (fixed cost)")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--check", type=Path, help="only re-estimate from a saved result JSON")
    args = ap.parse_args()
    if args.check:
        return 0 if all(ok for _, ok in estimate(json.loads(args.check.read_text()))) else 1
    if args.folder is None:
        ap.error("give the folder of records (or --check FILE)")
    files = sorted(p for p in args.folder.iterdir() if p.suffix == ".xml")
    if not files:
        raise SystemExit(f"{args.folder}: no .xml records")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "default.yaml"
    cfg.write_text("{}\n", encoding="utf-8")  # every key at its default
    result: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_start": os.getloadavg(),
        "patients": len(files),
        "runs": [],
    }
    few = index_run(f"one-process-{args.first}", files[: args.first], work, cfg)
    one = index_run(f"one-process-{len(files)}", files, work, cfg)
    result["runs"] += [few, one]
    if not args.no_ray:
        ray = index_run(f"ray-2-{len(files)}", files, work, cfg, "--ray", "local", "--workers", "2")
        ray_few = index_run(f"ray-2-{args.first}", files[: args.first], work, cfg, "--ray", "local", "--workers", "2")
        result["runs"] += [ray, ray_few]
    result["load_average_end"] = os.getloadavg()
    checks = estimate(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
