"""Generated QA: determinism, coverage and gold answers re-derived independently on the Synthea
bundles in shared data, a handmade record with known answers, and the JSONL round trip.

The re-derivations below read the record's events directly; they do not call the generator's
helpers (``display_name``, ``medication_covers``, ...), so a bug there shows up as a mismatch.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragehr.ehr import load_record
from ragehr.errors import InputError
from ragehr.eval.generated import (
    QAItem,
    display_name,
    generate_qa,
    medication_covers,
    read_jsonl,
    stratified_pick,
    write_jsonl,
)
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator, Status, TimePrecision

REPO = Path(__file__).resolve().parents[2]

RICH = (
    "smart_Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    "exafluence_CA_49644ad4-3f2c-ecff-52c0-0bd1022aa1b6.json",
)
FHIR_FILES = (
    "exafluence_CA_2b8f6690-5ebd-45ef-ba61-152e08c9f38a.json",
    "exafluence_CA_49644ad4-3f2c-ecff-52c0-0bd1022aa1b6.json",
    "exafluence_CA_85629dc4-502e-1d50-1a01-3484ba4d16da.json",
    "exafluence_CA_8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96.json",
    "exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.json",
    "smart_Brady_Kuhlman_79ef6ec3-e86a-441b-bb6b-c15936ee8be9.json",
    "smart_Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json",
    "smart_Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json",
    "smart_Judi_Schamberger_3228ed47-7683-4cf1-8104-59f6bdd49f49.json",
)

_CACHE: dict[Path, PatientRecord] = {}


def _load(path: Path) -> PatientRecord:
    if path not in _CACHE:
        _CACHE[path] = load_record(path)
    return _CACHE[path]


@pytest.fixture(scope="module")
def fhir_dir(shared_data: Path) -> Path:
    return shared_data / "synthea" / "fhir"


# --- independent re-derivation of gold answers ------------------------------------------------


def _name(e: Event) -> str:
    """The event's name as the test reads it: the text before any ' (dosage:'. Synthea texts
    carry no unit in the name, so nothing else is stripped."""
    return e.text.split(" (dosage:")[0].strip().casefold()


def _usable(record: PatientRecord, kind: EventKind) -> list[Event]:
    return [e for e in record.events if e.kind is kind and e.start is not None and e.status is not Status.NEGATED]


def _q(pattern: str, question: str) -> tuple[str, ...]:
    m = re.fullmatch(pattern, question)
    assert m, question
    return m.groups()


def _items_set(item: QAItem) -> set[str]:
    return {s.casefold() for s in item.answer_items}


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=0)
    return a == b


def check_item(record: PatientRecord, item: QAItem) -> None:
    """Assert that ``item``'s gold answer follows from ``record``."""
    by_id = {e.event_id: e for e in record.events}
    assert all(i in by_id for i in item.evidence_event_ids), item
    assert len(item.evidence_dates) == len(item.evidence_event_ids)
    assert item.patient_id == record.patient_id
    assert 0.0 <= item.depth <= 1.0
    evidence = [by_id[i] for i in item.evidence_event_ids]
    for e, d in zip(evidence, item.evidence_dates):
        assert e.start is not None and e.start.date().isoformat() == d
    q = item.question
    t = item.qtype
    if t == "latest_value":
        (name,) = _q(r"What is the most recent (.+)\?", q)
        evs = [
            e
            for kind in (EventKind.LAB, EventKind.VITAL)
            for e in _usable(record, kind)
            if e.value is not None and _name(e) == name.casefold()
        ]
        assert len({e.start.date() for e in evs}) >= 2
        latest_t = max(e.start for e in evs)
        latest = [e for e in evs if e.start == latest_t]
        assert all(_same_value(e.value, item.answer_value) and e.unit == item.unit for e in latest)
        assert evidence and all(e.start == latest_t for e in evidence)
        unit = f" {item.unit}" if item.unit else ""
        assert item.answer.endswith(unit)
    elif t == "value_on_date":
        name, day = _q(r"What was the (.+) on (\d{4}-\d{2}-\d{2})\?", q)
        evs = [
            e
            for kind in (EventKind.LAB, EventKind.VITAL)
            for e in _usable(record, kind)
            if e.value is not None and _name(e) == name.casefold() and e.start.date().isoformat() == day
        ]
        assert evs
        assert all(_same_value(e.value, item.answer_value) and e.unit == item.unit for e in evs)
        assert set(evidence) == set(evs)
    elif t == "first_diagnosis_date":
        (name,) = _q(r"When was (.+) first diagnosed\?", q)
        evs = [e for e in _usable(record, EventKind.CONDITION) if _name(e) == name.casefold()]
        first = min(e.start for e in evs)
        assert item.answer == item.answer_value == first.date().isoformat()
        assert len(evidence) == 1 and evidence[0].start == first
    elif t == "first_medication_date":
        (name,) = _q(r"When was (.+) first prescribed\?", q)
        evs = [e for e in _usable(record, EventKind.MEDICATION) if _name(e) == name.casefold()]
        first = min(e.start for e in evs)
        assert item.answer == first.date().isoformat()
        assert len(evidence) == 1 and evidence[0].start == first
    elif t == "ever_prescribed":
        (name,) = _q(r"Has the patient ever been prescribed (.+)\?", q)
        meds = [e for e in record.events if e.kind is EventKind.MEDICATION]
        if item.answer == "no":
            assert not item.evidence_event_ids
            assert not any(name.casefold() in e.text.casefold() for e in meds)
            assert not any(name.casefold() in e.text.casefold() for e in record.events)
        else:
            assert item.answer == "yes"
            want = {e.event_id for e in meds if e.status is not Status.NEGATED and _name(e) == name.casefold()}
            assert want and set(item.evidence_event_ids) == want
    elif t == "active_medications_on_date":
        (day,) = _q(r"Which medications was the patient taking on (\d{4}-\d{2}-\d{2})\?", q)
        d = date.fromisoformat(day)
        taking = []
        for e in _usable(record, EventKind.MEDICATION):
            s = e.start.date()
            if s > d:
                continue
            if e.end is not None:
                ok = d <= e.end.date()
            elif e.status in (None, Status.ACTIVE):
                ok = True
            else:
                ok = d == s
            if ok:
                taking.append(e)
        assert {_name(e) for e in taking} == _items_set(item)
        assert 1 <= len(item.answer_items) <= 6
        assert set(evidence) == set(taking)
    elif t == "immunizations_in_year":
        (year,) = _q(r"Which immunizations did the patient receive in (\d{4})\?", q)
        evs = [e for e in _usable(record, EventKind.IMMUNIZATION) if e.start.year == int(year)]
        assert {_name(e) for e in evs} == _items_set(item)
        assert set(evidence) == set(evs)
    elif t == "procedures_in_period":
        lo, hi = _q(r"Which procedures were performed between (\S+) and (\S+)\?", q)
        a, b = date.fromisoformat(lo), date.fromisoformat(hi)
        evs = [e for e in _usable(record, EventKind.PROCEDURE) if a <= e.start.date() <= b]
        assert {_name(e) for e in evs} == _items_set(item)
        assert 1 <= len(item.answer_items) <= 6
        assert set(evidence) == set(evs)
    elif t == "encounter_count_in_year":
        (year,) = _q(r"How many encounters did the patient have in (\d{4})\?", q)
        encs = [e for e in _usable(record, EventKind.ENCOUNTER) if e.start.year == int(year)]
        visits = {e.visit_id or e.event_id for e in encs}
        assert item.answer_type == "count"
        assert item.answer_value == len(visits) and item.answer == str(len(visits))
    elif t == "allergies":
        evs = _usable(record, EventKind.ALLERGY)
        assert {_name(e) for e in evs} == _items_set(item)
    elif t == "condition_status":
        (name,) = _q(r"Is (.+) still active\?", q)
        evs = [e for e in _usable(record, EventKind.CONDITION) if _name(e) == name.casefold()]
        latest = max(evs, key=lambda e: e.start)
        over = latest.end is not None or latest.status in (Status.RESOLVED, Status.INACTIVE)
        assert item.answer == ("no" if over else "yes")
        assert evidence == [latest]
    else:
        raise AssertionError(f"unknown qtype {t}")


# --- Synthea bundles ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FHIR_FILES)
def test_synthea_gold_answers(fhir_dir: Path, name: str) -> None:
    record = _load(fhir_dir / name)
    items = generate_qa(record)
    assert items
    for item in items:
        check_item(record, item)
    ids = [i.item_id for i in items]
    assert len(ids) == len(set(ids))
    assert len({i.question for i in items}) == len(items)
    types = Counter(i.qtype for i in items)
    assert all(n <= 3 for n in types.values())
    if name in RICH:
        assert len(types) >= 8, types
    # at least 5 types everywhere: even the sparsest bundle has values, conditions, encounters
    assert len(types) >= 5, types


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synthea_gold_answers_other_seeds(fhir_dir: Path, seed: int) -> None:
    for name in RICH:
        record = _load(fhir_dir / name)
        for item in generate_qa(record, seed=seed, per_type=5):
            check_item(record, item)


def test_ccda_and_medalign_gold_answers(shared_data: Path) -> None:
    paths = sorted((shared_data / "synthea" / "ccda").glob("*.xml"))
    paths.append(shared_data / "medalign" / "sample-ehr-clean.xml")
    assert len(paths) >= 2
    for path in paths:
        record = _load(path)
        items = generate_qa(record, per_type=4)
        assert len({i.qtype for i in items}) >= 5, path.name
        for item in items:
            check_item(record, item)


@pytest.mark.parametrize("name", FHIR_FILES)
def test_ever_prescribed_has_true_negatives(fhir_dir: Path, name: str) -> None:
    record = _load(fhir_dir / name)
    items = [i for i in generate_qa(record, per_type=6) if i.qtype == "ever_prescribed"]
    answers = Counter(i.answer for i in items)
    assert answers["no"] >= 3
    n_meds = len({_name(e) for e in _usable(record, EventKind.MEDICATION)})
    assert answers["yes"] == min(3, n_meds)


@pytest.mark.parametrize("name", RICH)
def test_depth_spans_the_timeline(fhir_dir: Path, name: str) -> None:
    items = generate_qa(_load(fhir_dir / name))
    depths = [i.depth for i in items if i.evidence_event_ids]
    assert min(depths) <= 0.2 and max(depths) >= 0.8


def test_depth_is_position_of_first_evidence(fhir_dir: Path) -> None:
    record = _load(fhir_dir / RICH[0])
    by_id = {e.event_id: e for e in record.events}
    t0, t1 = record.first_time.timestamp(), record.last_time.timestamp()
    for item in generate_qa(record):
        if not item.evidence_event_ids:
            assert item.depth == 0.5
            continue
        t = min(by_id[i].start.timestamp() for i in item.evidence_event_ids)
        assert item.depth == pytest.approx((t - t0) / (t1 - t0))
        assert item.anchor_time == record.last_time.isoformat()


def test_deterministic(fhir_dir: Path) -> None:
    record = _load(fhir_dir / RICH[0])
    a = [i.model_dump() for i in generate_qa(record, seed=7)]
    b = [i.model_dump() for i in generate_qa(record, seed=7)]
    assert a == b
    other = {i.question for i in generate_qa(record, seed=8)}
    assert other != {i["question"] for i in a}


def test_deterministic_across_processes(fhir_dir: Path) -> None:
    """Python's string hash is salted per process; the generator must not depend on it."""
    path = fhir_dir / RICH[1]
    here = [i.model_dump(mode="json") for i in generate_qa(_load(path), seed=3)]
    code = (
        "import json, sys\n"
        "from ragehr.ehr import load_record\n"
        "from ragehr.eval.generated import generate_qa\n"
        "items = generate_qa(load_record(sys.argv[1]), seed=3)\n"
        "print(json.dumps([i.model_dump(mode='json') for i in items]))\n"
    )
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], env=env, cwd=REPO, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_per_type_bounds(fhir_dir: Path) -> None:
    record = _load(fhir_dir / RICH[0])
    assert generate_qa(record, per_type=0) == []
    one = Counter(i.qtype for i in generate_qa(record, per_type=1))
    assert set(one.values()) == {1}
    with pytest.raises(ValueError):
        generate_qa(record, per_type=-1)


# --- a handmade record with known answers ------------------------------------------------------


def _ev(i: int, kind: EventKind, when: str, text: str, **kw: object) -> Event:
    return Event(
        kind=kind,
        start=datetime.fromisoformat(when).replace(tzinfo=UTC),
        precision=TimePrecision.MINUTE,
        text=text,
        source=SourceLocator(file="handmade.json", path=f"/entry/{i}/resource"),
        **kw,
    )


@pytest.fixture(scope="module")
def tiny() -> PatientRecord:
    V, C, M = EventKind.VITAL, EventKind.CONDITION, EventKind.MEDICATION
    events = [
        _ev(0, EventKind.ENCOUNTER, "2019-05-05 09:00", "Office visit", visit_id="v1"),
        _ev(1, C, "2019-05-05 09:10", "Hypertension", status=Status.ACTIVE),
        _ev(2, M, "2019-05-05 09:20", "Lisinopril 10 MG Oral Tablet (dosage: daily)", status=Status.ACTIVE),
        _ev(3, M, "2019-06-01 09:20", "Warfarin 5 MG Oral Tablet", status=Status.NEGATED),
        _ev(4, EventKind.ENCOUNTER, "2020-01-01 10:00", "Office visit", visit_id="v2"),
        _ev(5, V, "2020-01-01 10:05", "Systolic blood pressure", value=120.0, unit="mmHg"),
        _ev(6, V, "2020-01-01 10:05", "Heart rate", value=75, unit="/min"),
        _ev(7, M, "2020-01-01 10:10", "Amoxicillin 500 MG Oral Capsule", status=Status.STOPPED),
        _ev(8, C, "2020-01-01 10:10", "Acute bronchitis", status=Status.RESOLVED),
        _ev(9, EventKind.ENCOUNTER, "2020-03-01 10:00", "Urgent care visit", visit_id="v3"),
        _ev(10, EventKind.IMMUNIZATION, "2020-10-10 10:00", "Influenza, seasonal", status=Status.COMPLETED),
        _ev(11, EventKind.ALLERGY, "2020-10-10 10:00", "Peanut allergy", status=Status.ACTIVE),
        _ev(12, EventKind.ENCOUNTER, "2021-06-01 08:00", "Office visit", visit_id="v4"),
        _ev(13, V, "2021-06-01 08:05", "Systolic blood pressure", value=130.0, unit="mmHg"),
        _ev(14, V, "2021-06-01 08:05", "Heart rate", value=70, unit="/min"),
        _ev(15, V, "2021-06-01 08:30", "Heart rate", value=80, unit="/min"),
        _ev(16, EventKind.PROCEDURE, "2021-06-01 08:40", "Electrocardiogram", status=Status.COMPLETED),
    ]
    return PatientRecord(patient_id="tiny-1", format="fhir", events=tuple(events))


def _by_question(items: list[QAItem]) -> dict[str, QAItem]:
    return {i.question: i for i in items}


def test_tiny_known_answers(tiny: PatientRecord) -> None:
    items = generate_qa(tiny)
    qs = _by_question(items)
    ids = {e.text: e.event_id for e in tiny.events}

    latest = qs["What is the most recent Systolic blood pressure?"]
    assert (latest.answer, latest.answer_type, latest.answer_value, latest.unit) == (
        "130 mmHg",
        "number",
        130.0,
        "mmHg",
    )
    assert latest.evidence_dates == ("2021-06-01",)
    assert latest.depth == pytest.approx(1.0, abs=1e-4)
    # two heart rates on the last day: "most recent" is ambiguous by date, so not asked
    assert "What is the most recent Heart rate?" not in qs

    on = qs["What was the Systolic blood pressure on 2020-01-01?"]
    assert on.answer == "120 mmHg" and on.answer_value == 120.0
    assert qs["What was the Heart rate on 2020-01-01?"].answer == "75 /min"
    assert "What was the Heart rate on 2021-06-01?" not in qs

    dx = qs["When was Hypertension first diagnosed?"]
    assert (dx.answer, dx.answer_type, dx.evidence_event_ids) == ("2019-05-05", "date", (ids["Hypertension"],))
    assert dx.depth == pytest.approx(0.0, abs=1e-4)

    rx = qs["When was Lisinopril 10 MG Oral Tablet first prescribed?"]
    assert rx.answer == "2019-05-05"

    on_day = qs["Which medications was the patient taking on 2020-01-01?"]
    assert on_day.answer_items == ("Amoxicillin 500 MG Oral Capsule", "Lisinopril 10 MG Oral Tablet")
    assert on_day.answer == "Amoxicillin 500 MG Oral Capsule; Lisinopril 10 MG Oral Tablet"
    assert qs["Which medications was the patient taking on 2019-05-05?"].answer == "Lisinopril 10 MG Oral Tablet"

    ever = [i for i in items if i.qtype == "ever_prescribed"]
    assert sorted(i.answer for i in ever) == ["no", "yes", "yes"]
    # warfarin is in the record (negated): it is neither a "yes" nor a true negative
    assert not any("warfarin" in i.question.casefold() for i in ever)

    assert qs["Which immunizations did the patient receive in 2020?"].answer == "Influenza, seasonal"
    assert qs["What allergies does the patient have?"].answer_items == ("Peanut allergy",)
    assert qs["Which procedures were performed between 2021-06-01 and 2021-06-30?"].answer == "Electrocardiogram"

    enc = qs["How many encounters did the patient have in 2020?"]
    assert (enc.answer, enc.answer_type, enc.answer_value) == ("2", "count", 2)
    assert len(enc.evidence_event_ids) == 2

    assert qs["Is Hypertension still active?"].answer == "yes"
    assert qs["Is Acute bronchitis still active?"].answer == "no"

    for item in items:
        check_item(tiny, item)
        assert item.anchor_time == "2021-06-01T08:40:00+00:00"


def test_tiny_item_ids_are_stable(tiny: PatientRecord) -> None:
    item = _by_question(generate_qa(tiny))["When was Hypertension first diagnosed?"]
    import hashlib

    want = hashlib.sha256(b"tiny-1\x1ffirst_diagnosis_date\x1fWhen was Hypertension first diagnosed?").hexdigest()
    assert item.item_id == want[:16]


def test_empty_record_gives_only_negatives() -> None:
    record = PatientRecord(patient_id="empty", format="fhir")
    items = generate_qa(record)
    assert {i.qtype for i in items} == {"ever_prescribed"}
    assert all(i.answer == "no" and i.depth == 0.5 for i in items)


# --- helpers -----------------------------------------------------------------------------------


def test_display_name_strips_dosage_and_unit() -> None:
    def ev(text: str, unit: str | None = None) -> Event:
        return _ev(0, EventKind.VITAL, "2020-01-01 00:00", text, unit=unit)

    assert display_name(
        ev("Acetaminophen 325 MG Oral Tablet [Tylenol] (dosage: Every six hours (qualifier value))")
    ) == ("Acetaminophen 325 MG Oral Tablet [Tylenol]")
    assert display_name(ev("Mean blood pressure (mm Hg)", "mm Hg")) == "Mean blood pressure"
    assert display_name(ev("Hemoglobin [g/dL]", "g/dL")) == "Hemoglobin"
    assert display_name(ev("Pain severity [Score]", "{score}")) == "Pain severity [Score]"


def test_medication_covers_rule() -> None:
    def med(status: Status | None, end: str | None = None) -> Event:
        e = _ev(0, EventKind.MEDICATION, "2020-01-10 10:00", "X", status=status)
        if end:
            e = e.model_copy(update={"end": datetime.fromisoformat(end).replace(tzinfo=UTC)})
        return e

    d = date(2020, 2, 1)
    assert medication_covers(med(Status.ACTIVE), d)
    assert medication_covers(med(None), d)
    assert not medication_covers(med(Status.STOPPED), d)
    assert medication_covers(med(Status.STOPPED), date(2020, 1, 10))
    assert medication_covers(med(Status.COMPLETED, "2020-02-01 00:00"), d)
    assert not medication_covers(med(Status.ACTIVE, "2020-01-31 00:00"), d)
    assert not medication_covers(med(Status.ACTIVE), date(2020, 1, 9))
    assert not medication_covers(med(Status.NEGATED), d)


@given(
    st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), max_size=40),
    st.integers(0, 8),
    st.integers(0, 2**32),
)
def test_stratified_pick_properties(times: list[float], n: int, seed: int) -> None:
    import random

    cands = [(t, i) for i, t in enumerate(times)]
    a = stratified_pick(cands, n, random.Random(seed))
    b = stratified_pick(cands, n, random.Random(seed))
    assert a == b
    assert len(a) == min(n, len(cands))
    assert len({p for _, p in a}) == len(a)
    assert [t for t, _ in a] == sorted(t for t, _ in a)
    assert all(cands[p] == (t, p) for t, p in a)


def test_stratified_pick_spreads() -> None:
    import random

    cands = [(float(t), t) for t in range(100)]
    for seed in range(20):
        picked = [t for t, _ in stratified_pick(cands, 4, random.Random(seed))]
        assert [int(t // 25) for t in picked] == [0, 1, 2, 3]


# --- files -------------------------------------------------------------------------------------


def test_jsonl_round_trip(tiny: PatientRecord, tmp_path: Path) -> None:
    items = generate_qa(tiny)
    path = tmp_path / "qa.jsonl"
    write_jsonl(items, path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(items)
    back = read_jsonl(path)
    assert back == items
    assert [type(i.answer_value) for i in back] == [type(i.answer_value) for i in items]


def test_read_jsonl_rejects_a_bad_line(tiny: PatientRecord, tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    write_jsonl(generate_qa(tiny)[:2], path)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"question": "no id"}\n')
    with pytest.raises(InputError, match="line 3"):
        read_jsonl(path)
