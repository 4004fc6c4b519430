"""A MedAlign-scale cohort with the default configuration: 20 measured patients, 276 estimated (issue 22, item 3).

    for i in $(seq 1 20); do
        python benchmarks/make_record.py benchmarks/data/cohort20/p$(printf %02d $i).xml --size median \\
            --seed $i --shared ../shared/data --quiet
    done
    python benchmarks/bench_cohort_scale.py benchmarks/data/cohort20 --out benchmarks/results/cohort-scale.json

Each patient is a different ``make_record.py`` record (one seed each, so no two share chunk
texts and the embedding cache cannot answer for another patient). The real command line is
timed, process start and model loading included, each into an empty index folder (so an empty
embedding cache): ``ragehr index FOLDER`` in one process, then ``--ray local --workers 2``. No
``--config`` is given: this is the default configuration (``ragehr/config.py``). The static
model is read from ``$RAGEHR_MODELS_DIR`` (distil it once before; that minute is not part of
any figure). The 276-patient estimate is the measured seconds per patient times 276 plus the
fixed start-up (process start, model load, Ray start), which the ``--first`` run of a few
patients separates out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cohort import index_run  # noqa: E402

MEDALIGN_PATIENTS = 276


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of record files, one patient each")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/data/cohort-scale-work"))
    ap.add_argument("--first", type=int, default=4, help="also index only this many patients (fixed cost)")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.suffix == ".xml")
    if not files:
        raise SystemExit(f"{args.folder}: no .xml records")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "default.yaml"
    cfg.write_text("{}\n", encoding="utf-8")  # every key at its default
    result: dict = {"command": " ".join(["python", *sys.argv]),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                    "load_average_start": os.getloadavg(), "patients": len(files), "runs": []}
    few = index_run(f"one-process-{args.first}", files[: args.first], work, cfg)
    one = index_run(f"one-process-{len(files)}", files, work, cfg)
    result["runs"] += [few, one]
    per_patient = (one["seconds"] - few["seconds"]) / (len(files) - args.first)
    fixed = max(one["seconds"] - per_patient * len(files), 0.0)
    result["one_process"] = {"seconds_per_patient": per_patient, "fixed_s": fixed,
                             "estimate_276_min": (fixed + per_patient * MEDALIGN_PATIENTS) / 60}
    if not args.no_ray:
        ray = index_run(f"ray-2-{len(files)}", files, work, cfg, "--ray", "local", "--workers", "2")
        ray_few = index_run(f"ray-2-{args.first}", files[: args.first], work, cfg, "--ray", "local", "--workers", "2")
        result["runs"] += [ray, ray_few]
        per = (ray["seconds"] - ray_few["seconds"]) / (len(files) - args.first)
        fixed_r = max(ray["seconds"] - per * len(files), 0.0)
        result["ray_2"] = {"seconds_per_patient": per, "fixed_s": fixed_r,
                           "estimate_276_min": (fixed_r + per * MEDALIGN_PATIENTS) / 60}
    result["load_average_end"] = os.getloadavg()
    print("\n| run | patients | chunks | seconds | per patient (marginal) | 276 patients (estimate) |")
    print("|---|---|---|---|---|---|")
    for r in result["runs"]:
        print(f"| {r['label']} | {r['patients']} | {r['chunks']:,} | {r['seconds']:.1f} | | |")
    for key in ("one_process", "ray_2"):
        if key in result:
            e = result[key]
            print(f"| {key} | | | fixed {e['fixed_s']:.1f} s | {e['seconds_per_patient']:.2f} s | "
                  f"{e['estimate_276_min']:.1f} min |")
    ok = all(r["rc"] == 0 and r["patients"] == int(r["label"].rsplit("-", 1)[1]) for r in result["runs"])
    est = result["one_process"]["estimate_276_min"]
    print(f"{'OK  ' if ok else 'FAIL'} every run built every patient")
    print(f"{'OK  ' if est < 30 else 'FAIL'} 276 patients in one process: {est:.1f} min < 30 min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0 if ok and est < 30 else 1


if __name__ == "__main__":
    raise SystemExit(main())
