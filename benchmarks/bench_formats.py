"""Cohort formats: parse-and-group throughput and peak memory, by export size.

    PYTHONPATH=. python benchmarks/bench_formats.py [--bulk-patients 130,1001] [--omop-persons 1000,5000]
        [--naive-max 200] [--out benchmarks/results/formats.json]

What is measured, each in a fresh process (so its peak RSS is its own):

- ``scan``: the first pass over the whole cohort (positions and fingerprints only);
- ``stream``: scan, then every patient read back and parsed into a record, one at a time (what
  ``ragehr index`` does before chunking and embedding);
- ``naive`` (bulk exports up to ``--naive-max`` patients only): every line of the export parsed
  into memory and grouped by patient in dicts, then each patient parsed: what a loader that is
  not streamed holds. It is the side-by-side reference for the memory figures.

Inputs (written under benchmarks/data/, ignored by git; they derive from ../shared/data):

- FHIR Bulk: the shared 10-patient export (13 patients) as is, and copies of it in which every
  patient is re-identified (a new id for each copy, in the Patient resource and every reference
  to it), so an export of N copies holds 13 N patients and N times the bytes;
- OMOP: the test fixture (2 persons, tests/fixtures/omop) and copies of it with new person and
  row ids (the concept table once).

Peak RSS includes the interpreter and ragehr's imports (a baseline process that only imports
is measured too). Figures vary with the machine's load; ratios within one run are the point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data" / "formats"


def shared() -> Path:
    return Path(os.environ.get("RAGEHR_SHARED_DATA", REPO.parent / "shared" / "data"))


# --------------------------------------------------------------------------- inputs


def make_bulk(copies: int) -> Path:
    """The shared export, ``copies`` times over with re-identified patients."""
    src = shared() / "fhir-bulk" / "10-patients"
    out = DATA / f"bulk-x{copies}"
    if (out / ".done").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ids = [json.loads(line)["id"] for line in (src / "Patient.000.ndjson").read_text().splitlines() if line.strip()]
    pattern = re.compile("|".join(map(re.escape, ids)).encode())
    for f in sorted(src.glob("*.ndjson")):
        lines = f.read_bytes().splitlines(keepends=True)
        per_patient = f.name.split(".")[0] not in ("Practitioner", "PractitionerRole", "Organization", "Location")
        with open(out / f.name, "wb") as fh:
            for k in range(copies if per_patient else 1):
                if k == 0:
                    fh.writelines(lines)
                    continue
                new = {i.encode(): str(uuid.uuid5(uuid.NAMESPACE_URL, f"{i}/{k}")).encode() for i in ids}
                fh.writelines(pattern.sub(lambda m, new=new: new[m.group(0)], line) for line in lines)
    (out / ".done").write_text("")
    return out


def make_omop(copies: int) -> Path:
    """The OMOP fixture, ``copies`` times over with new person and row ids."""
    import csv

    src = REPO / "tests" / "fixtures" / "omop"
    out = DATA / f"omop-x{copies}"
    if (out / ".done").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy(src / "concept.csv", out / "concept.csv")
    for f in sorted(src.glob("*.csv")):
        if f.name == "concept.csv":
            continue
        with open(f, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            cols = list(rows[0].keys()) if rows else []
        if not rows:
            continue
        id_cols = [c for c in cols if c in ("person_id", "visit_occurrence_id") or c == f"{f.stem}_id"]
        span = dict.fromkeys(id_cols, 10**6)  # the fixture's ids are all below 10**6
        with open(out / f.name, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for k in range(copies):
                for r in rows:
                    w.writerow({c: (str(int(v) + k * span[c]) if c in span and v else v) for c, v in r.items()})
    (out / ".done").write_text("")
    return out


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


# --------------------------------------------------------------------------- one measurement


def child(mode: str, folder: str) -> dict:
    """Runs inside a fresh process; returns the figures of one measurement."""
    import resource

    from ragehr.ehr.cohort import detect_cohort

    t0 = time.perf_counter()
    out: dict = {"mode": mode}
    if mode == "baseline":
        import ragehr.ehr.bulk
        import ragehr.ehr.omop  # noqa: F401
    elif mode in ("scan", "stream"):
        cohort = detect_cohort(folder)
        scan = cohort.scan()
        out["scan_s"] = time.perf_counter() - t0
        out["patients"] = len(scan.slices)
        out["items"] = sum(s.n_items for s in scan.slices)
        out["largest_patient_items"] = max(s.n_items for s in scan.slices)
        if cohort.format == "fhir-bulk":
            out["largest_patient_bytes"] = max(s.size for s in scan.slices)
        if mode == "stream":
            events = 0
            for s in scan.slices:
                events += len(s.load().events)
            out["events"] = events
    elif mode == "naive":
        from ragehr.ehr.fhir import parse_fhir, patient_reference

        groups: dict[str, list] = {}
        n = 0
        for f in sorted(Path(folder).glob("*.ndjson")):
            for i, line in enumerate(f.read_bytes().splitlines(), 1):
                r = json.loads(line)
                n += 1
                pid = patient_reference(r)
                if pid:
                    groups.setdefault(pid, []).append((f"line:{i}", r))
        out["scan_s"] = time.perf_counter() - t0
        events = sum(len(parse_fhir(rs, path=Path(folder)).events) for rs in groups.values())
        out.update(patients=len(groups), items=n, events=events)
    out["total_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def measure(mode: str, folder: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(folder or "")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bulk-patients", default="130,1001", help="Sizes of the synthetic exports (patients).")
    ap.add_argument("--omop-persons", default="1000,5000", help="Sizes of the scaled OMOP folders (persons).")
    ap.add_argument("--naive-max", type=int, default=200, help="Run the in-memory reference up to this many patients.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "formats.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1])))
        return

    rows = []
    base = measure("baseline", None)
    print(f"baseline (python + imports): {base['peak_rss_mb']:.0f} MB", flush=True)
    inputs = [("fhir-bulk", shared() / "fhir-bulk" / "10-patients")]
    inputs += [("fhir-bulk", make_bulk(math.ceil(int(n) / 13))) for n in args.bulk_patients.split(",") if n]
    inputs += [("omop", REPO / "tests" / "fixtures" / "omop")]
    inputs += [("omop", make_omop(math.ceil(int(n) / 2))) for n in args.omop_persons.split(",") if n]
    for fmt, folder in inputs:
        size = folder_bytes(folder)
        modes = ["scan", "stream"]
        if fmt == "fhir-bulk":
            modes.append("naive")
        for mode in modes:
            r = measure(mode, folder) if mode != "naive" or rows[-1]["patients"] <= args.naive_max else None
            if r is None:
                continue
            r.update(
                format=fmt,
                folder=str(folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder),
                export_mb=round(size / 2**20, 2),
            )
            r["items_per_s"] = round(r["items"] / r["total_s"], 1)
            r["patients_per_s"] = round(r["patients"] / r["total_s"], 2)
            r["rss_over_baseline_mb"] = round(r["peak_rss_mb"] - base["peak_rss_mb"], 1)
            rows.append(r)
            print(
                f"{fmt:9} {r['export_mb']:8.1f} MB {r['patients']:6d} patients {mode:6}  "
                f"{r['items_per_s']:9.0f} items/s {r['patients_per_s']:8.2f} patients/s  "
                f"peak {r['peak_rss_mb']:7.0f} MB (+{r['rss_over_baseline_mb']:.0f} over baseline)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"baseline_rss_mb": base["peak_rss_mb"], "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
