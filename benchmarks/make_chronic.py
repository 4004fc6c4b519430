"""Build MedAlign-length records of a chronically ill patient seen every few weeks, by
replaying a REAL Synthea patient's own lab and vital panels with jittered values, and write
time-stress questions with gold evidence for them.

Why: real records repeat the same tests dozens to hundreds of times ("the potassium on 3
March", "the latest A1c"). ``make_record.py``'s planted facts carry unique terms, so they
cannot show whether retrieval finds *the right copy* of a repeated measurement.

How: the base patient's whole record is kept as is. Its lab/vital panels (events of one kind
sharing a time) are replayed, in a seeded shuffled cycle, at visits 7 to 35 days apart over
the years before the record's end, each numeric value jittered by up to +-8% (rounded to the
precision it was written with), until the rendered record reaches ``--tokens``. Some of the
base patient's notes are replayed at visits too (their text unchanged). The record is written
as MedAlign XML and read back, so event ids are what ``ragehr`` computes for that file.

Questions (``<record>.qa.jsonl``): :func:`ragehr.eval.generated.generate_qa` with the
time-stress types (:data:`~ragehr.eval.generated.TIME_QTYPES`), plus ``latest_value``,
``value_on_date`` and ``first_diagnosis_date``.

With ``--short`` the base patients' own records are copied unchanged (2k-38k tokens) and
questions of every type (:data:`~ragehr.eval.generated.ALL_QTYPES`) are written for them: the
check that short records keep their recall.

Usage::

    python benchmarks/make_chronic.py benchmarks/data/chronic --tokens 90000 --seed 0
    python benchmarks/make_chronic.py benchmarks/data/short --short --n 5 --per-type 3

The output is derived from the shared data (Synthea; see ../shared/data/README.md for
licenses): write it outside git (``benchmarks/data/`` is ignored).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from ragehr.ehr import load_record
from ragehr.ehr.medalign import write_medalign_xml
from ragehr.ehr.render import render_event
from ragehr.eval.generated import ALL_QTYPES, TIME_QTYPES, generate_qa, write_jsonl
from ragehr.tokens import estimate_tokens
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator, TimePrecision

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
BASES = (
    "synthea/fhir/exafluence_CA_49644ad4-3f2c-ecff-52c0-0bd1022aa1b6.json",
    "synthea/fhir/smart_Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    "synthea/fhir/exafluence_CA_2b8f6690-5ebd-45ef-ba61-152e08c9f38a.json",
    "synthea/fhir/smart_Judi_Schamberger_3228ed47-7683-4cf1-8104-59f6bdd49f49.json",
    "synthea/fhir/exafluence_CA_85629dc4-502e-1d50-1a01-3484ba4d16da.json",
)
QA_TYPES = (*TIME_QTYPES, "latest_value", "value_on_date", "first_diagnosis_date")


def _jitter(v: float | int | str | None, rng: random.Random) -> float | int | str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    x = v * (1 + rng.uniform(-0.08, 0.08))
    if isinstance(v, int):
        return max(0, round(x))
    text = f"{v:g}"
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return round(x, max(decimals, 1))


def panels(record: PatientRecord) -> list[tuple[Event, ...]]:
    """Lab and vital events with a value, grouped by (kind, time): the panels to replay."""
    groups: dict[tuple[str, str], list[Event]] = {}
    for e in record.events:
        if e.kind in (EventKind.LAB, EventKind.VITAL) and e.value is not None and e.start is not None:
            groups.setdefault((e.kind.value, e.start.isoformat()), []).append(e)
    return [tuple(v) for _, v in sorted(groups.items())]


def build(base: PatientRecord, tokens: int, seed: int) -> PatientRecord:
    rng = random.Random(seed)
    pool = panels(base)
    notes = [e for e in base.events if e.kind is EventKind.NOTE and e.text.strip()]
    if not pool or base.last_time is None:
        raise SystemExit(f"{base.patient_id}: no lab or vital panels to replay")
    events = list(base.events)
    size = sum(estimate_tokens(render_event(e)) + 1 for e in events)
    end = base.last_time - timedelta(days=3)
    # Visits go back from the end, 7-35 days apart, until the record is long enough.
    when = end
    order: list[int] = []
    v = 0
    while size < tokens:
        if not order:
            order = list(range(len(pool)))
            rng.shuffle(order)
        vid = f"replay-{v}"
        day_events: list[Event] = []
        for j in range(rng.randint(2, 4)):  # a few panels per visit
            if not order:
                order = list(range(len(pool)))
                rng.shuffle(order)
            panel = pool[order.pop()]
            t = when.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(minutes=37 * j + rng.randint(0, 20))
            for i, e in enumerate(panel):
                day_events.append(
                    e.model_copy(
                        update={
                            "start": t,
                            "end": None,
                            "precision": TimePrecision.MINUTE,
                            "visit_id": vid,
                            "value": _jitter(e.value, rng),
                            "source": SourceLocator(file="make_chronic", path=f"{vid}/{j}/{i}"),
                        }
                    )
                )
        if notes and rng.random() < 0.25:
            n = rng.choice(notes)
            day_events.append(
                n.model_copy(
                    update={
                        "start": when.replace(hour=11, minute=30, second=0, microsecond=0),
                        "end": None,
                        "precision": TimePrecision.MINUTE,
                        "visit_id": vid,
                        "source": SourceLocator(file="make_chronic", path=f"{vid}/note"),
                    }
                )
            )
        events.extend(day_events)
        size += sum(estimate_tokens(render_event(e)) + 1 for e in day_events)
        when -= timedelta(days=rng.randint(7, 35))
        v += 1
    events.sort(key=lambda e: (e.start is None, e.start or end))
    return base.model_copy(update={"events": events})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--tokens", type=int, default=90_000, help="rendered length to reach (estimated tokens)")
    ap.add_argument("--n", type=int, default=3, help=f"how many base patients (at most {len(BASES)})")
    ap.add_argument("--per-type", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument(
        "--short",
        action="store_true",
        help="instead: copy the base patients' records as they are (short records) and write their questions",
    )
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.short:
        for i, rel in enumerate(BASES[: args.n]):
            path = args.out_dir / f"short_{i}.json"
            shutil.copyfile(args.shared / rel, path)
            rec = load_record(path)
            qa = generate_qa(rec, seed=args.seed, per_type=args.per_type, qtypes=ALL_QTYPES)
            write_jsonl(qa, path.with_suffix(".qa.jsonl"))
            n_tok = sum(estimate_tokens(render_event(e)) + 1 for e in rec.events)
            print(
                json.dumps(
                    {"record": str(path), "base": rel, "events": len(rec.events), "tokens": n_tok, "questions": len(qa)}
                )
            )
        return 0
    for i, rel in enumerate(BASES[: args.n]):
        base = load_record(args.shared / rel)
        rec = build(base, args.tokens, args.seed + i)
        path = args.out_dir / f"chronic_{i}.xml"
        path.write_text(write_medalign_xml(rec), encoding="utf-8")
        back = load_record(path)
        qa = generate_qa(back, seed=args.seed, per_type=args.per_type, qtypes=QA_TYPES)
        write_jsonl(qa, path.with_suffix(".qa.jsonl"))
        n_tok = sum(estimate_tokens(render_event(e)) + 1 for e in back.events)
        print(
            json.dumps(
                {"record": str(path), "base": rel, "events": len(back.events), "tokens": n_tok, "questions": len(qa)}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
