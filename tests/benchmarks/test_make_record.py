"""benchmarks/make_record.py: MedAlign-style records of a requested size with planted facts."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from ragehr.ehr import load_record
from ragehr.ehr.render import render_event, render_record
from ragehr.tokens import estimate_tokens
from ragehr.types import EventKind
from tests.conftest import REPO


def _load_module():
    name = "make_record"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "make_record.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # pydantic resolves the models' annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


mr = _load_module()
TINY = mr.Counts(visits=4, notes=6, events=300, years=2)


@pytest.fixture(scope="module")
def tiny(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "tiny.xml"
    record, facts = mr.build_record(TINY, 7, shared_data, out_path=out)
    return out, record, facts


def _structured(record):
    return [
        e
        for e in record.events
        if e.kind is not EventKind.NOTE and not (e.kind is EventKind.ENCOUNTER and e.code is None and e.system is None)
    ]


def test_tiny_parses_as_medalign_with_the_requested_counts(tiny):
    out, built, facts = tiny
    record = load_record(out)
    assert record.format == "medalign-xml"
    assert record.patient_id == "tiny"
    assert record == built  # what build_record returns is what ragehr reads from the file
    assert sum(e.kind is EventKind.NOTE for e in record.events) == TINY.notes
    assert abs(len(_structured(record)) - TINY.events) <= 0.1 * TINY.events
    assert len({e.visit_id for e in record.events}) == TINY.visits
    span = record.last_time - record.first_time
    assert 300 <= span.days <= 2 * 366 + 3 * 366  # years, plus condition end dates
    assert len(facts) == TINY.n_facts() == 10
    assert {f.kind for f in facts} == {"lab", "medication", "procedure", "note"}


def test_planted_facts_are_found_where_recorded_and_unique(tiny):
    out, _, facts = tiny
    record = load_record(out)
    by_id = {e.event_id: e for e in record.events}
    rendered = render_record(record)
    low = rendered.lower()
    for f in facts:
        assert f.record_file == str(out)
        ev = by_id[f.event_id]  # the id ragehr computes when it reads the file
        assert ev.source.path == f.source_path
        m = re.match(r"/record/visit(?:\[(\d+)\])?/day(?:\[(\d+)\])?/", f.source_path)
        assert m and int(m.group(1) or 1) == f.visit_index and int(m.group(2) or 1) == f.day_index
        assert ev.start.isoformat() == f.time
        assert ev.text == f.text
        text = render_event(ev)
        assert f.evidence in text
        if f.answer_type == "yes_no":
            assert f.answer == "yes"
        else:
            assert f.answer in text
        if f.answer_type == "date":
            assert text.startswith(f.answer) and f.answer == f.date
        # The answer (numbers, text), the key terms and the evidence occur nowhere else.
        if f.answer_type in ("number", "text"):
            assert low.count(f.answer.lower()) == 1, f.fact_id
        for k in f.keys:
            assert low.count(k) == 1, (f.fact_id, k)
        assert rendered.count(f.evidence) == 1, f.fact_id
        assert 0.0 <= f.depth <= 1.0


def test_facts_spread_over_the_record(tiny):
    _, _, facts = tiny
    targets = [f.target_depth for f in facts]
    assert targets[0] == pytest.approx(0.02) and targets[-1] == pytest.approx(0.98)
    assert targets == sorted(targets)
    structured = [f for f in facts if f.kind != "note"]
    for f in structured:  # structured facts land right where they were aimed
        assert abs(f.depth - f.target_depth) < 0.1, f.fact_id


def test_same_seed_same_bytes(shared_data, tmp_path, tiny):
    out, _, _ = tiny
    again = tmp_path / "again.xml"
    mr.build_record(TINY, 7, shared_data, out_path=again)
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.xml"
    mr.build_record(TINY, 8, shared_data, out_path=other)
    assert other.read_bytes() != out.read_bytes()


def test_cli_writes_record_and_facts(shared_data, tmp_path, capsys):
    out = tmp_path / "cli.xml"
    rc = mr.main(
        [
            str(out),
            "--shared",
            str(shared_data),
            "--visits",
            "3",
            "--notes",
            "4",
            "--events",
            "120",
            "--years",
            "1",
            "--facts",
            "6",
            "--quiet",
        ]
    )
    assert rc == 0
    lines = (tmp_path / "cli.facts.jsonl").read_text(encoding="utf-8").splitlines()
    facts = [mr.PlantedFact.model_validate(json.loads(line)) for line in lines]
    assert len(facts) == 6
    ids = {e.event_id for e in load_record(out).events}
    assert all(f.event_id in ids for f in facts)
    err = capsys.readouterr().err
    assert "estimated tokens" in err and "notes: 4" in err


def test_bad_size_is_refused(shared_data):
    with pytest.raises(ValueError):
        mr.build_record("huge", 0, shared_data)


def test_templates_are_distinct():
    """No template's key terms occur in its own text more than once or in any other's."""
    items = [((t.key,), t.text) for t in mr.LAB_TEMPLATES + mr.MED_TEMPLATES + mr.PROC_TEMPLATES]
    items += [(t.keys, t.sentence) for t in mr.NOTE_TEMPLATES]
    for i, (keys, text) in enumerate(items):
        for k in keys:
            assert text.lower().count(k) == 1, k
            for j, (_, other) in enumerate(items):
                if j != i:
                    assert k not in other.lower(), (k, other)
    for t in mr.NOTE_TEMPLATES:
        assert t.answer == "yes" or t.answer.lower() in t.sentence.lower()


def test_small_preset_size(shared_data, tmp_path):
    record, facts = mr.build_record("small", 0, shared_data, out_path=tmp_path / "small.xml")
    assert 15_000 <= estimate_tokens(render_record(record)) <= 30_000
    assert len(facts) == 20
