"""Per-concept time-series chunks: one dated table per measured concept and year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ragehr.chunking import chunk_record, chunk_series, concept_key
from ragehr.config import ChunkingConfig
from ragehr.ehr.render import format_value
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator

T0 = datetime(2019, 11, 4, 8, 30, tzinfo=UTC)


def _lab(i: int, days: int, text: str, code: str | None, value, unit="mmol/L", kind=EventKind.LAB) -> Event:
    return Event(
        kind=kind,
        start=T0 + timedelta(days=days),
        system="LOINC" if code else None,
        code=code,
        text=text,
        value=value,
        unit=unit,
        source=SourceLocator(file="f", path=f"e{i}"),
    )


def _record(events) -> PatientRecord:
    return PatientRecord(patient_id="p", format="medalign-xml", events=tuple(sorted(events, key=lambda e: e.start)))


def test_one_table_per_concept_and_year_rows_in_time_order():
    evs = [_lab(i, 20 * i, "Potassium", "2823-3", 4.0 + i / 10) for i in range(6)]  # 2019-11 .. 2020-03
    evs += [_lab(10, 5, "Sodium", "2951-2", 140), _lab(11, 60, "Sodium", "2951-2", 138)]
    chunks = chunk_series(evs, "p", ChunkingConfig())
    k = [c for c in chunks if c.concept == "LOINC 2823-3"]
    assert [(c.start.year, len(c.event_ids)) for c in k] == [(2019, 3), (2020, 3)]
    for c in k:
        rows = c.text.splitlines()[1:]
        assert len(rows) == len(c.event_ids) == len(c.sources)
        by_id = {e.event_id: e for e in evs}
        for row, eid in zip(rows, c.event_ids):
            e = by_id[eid]
            assert row == f"{e.start:%Y-%m-%d} | {format_value(e.value)}"  # one per day, one unit
        assert c.text.startswith("Potassium (LOINC 2823-3): lab values in mmol/L in ")
        assert c.start == by_id[c.event_ids[0]].start and c.end == by_id[c.event_ids[-1]].start
    assert [c.concept for c in chunks].count("LOINC 2951-2") == 2  # 2019 and 2020


def test_long_series_split_by_rows_with_counts_in_the_title():
    evs = [_lab(i, i, "Glucose", "2345-7", 90 + i, unit="mg/dL") for i in range(40)]  # all in 2019/2020
    cfg = ChunkingConfig(max_tokens=64)
    chunks = chunk_series(evs, "p", cfg)
    assert all(c.n_tokens <= 64 for c in chunks)
    assert sum(len(c.event_ids) for c in chunks) == 40
    assert sorted(e for c in chunks for e in c.event_ids) == sorted(e.event_id for e in evs)
    in_2019 = [c for c in chunks if c.start.year == 2019]
    assert (
        "rows 1-" in in_2019[0].text.splitlines()[0]
        and f"of {sum(len(c.event_ids) for c in in_2019)}" in in_2019[0].text
    )


def test_uncoded_names_group_case_insensitively_without_their_unit():
    a = _lab(1, 0, "Hemoglobin A1c (%)", None, 6.1, unit="%")
    b = _lab(2, 30, "hemoglobin a1c", None, 6.4, unit="%")
    assert concept_key(a) == concept_key(b) == "hemoglobin a1c"
    [c] = chunk_series([a, b], "p", ChunkingConfig())
    assert set(c.event_ids) == {a.event_id, b.event_id}


def test_only_measured_concepts_with_two_or_more_times():
    once = _lab(1, 0, "Troponin", "6598-7", 0.01)
    no_value = _lab(2, 0, "Urinalysis", "24356-8", None)
    no_value2 = _lab(3, 9, "Urinalysis", "24356-8", None)
    med = Event(kind=EventKind.MEDICATION, start=T0, text="aspirin", source=SourceLocator(file="f", path="m"))
    med2 = Event(
        kind=EventKind.MEDICATION,
        start=T0 + timedelta(days=3),
        text="aspirin",
        source=SourceLocator(file="f", path="m2"),
    )
    assert chunk_series([once, no_value, no_value2, med, med2], "p", ChunkingConfig()) == []
    vit = [_lab(i, i, "Body weight", "29463-7", 70 + i, unit="kg", kind=EventKind.VITAL) for i in range(2)]
    [c] = chunk_series(vit, "p", ChunkingConfig())
    assert c.kind is EventKind.VITAL and "vital values" in c.text


def test_record_chunks_include_series_unless_turned_off():
    evs = [_lab(i, 3 * i, "Potassium", "2823-3", 4.1) for i in range(4)]
    rec = _record(evs)
    with_series = chunk_record(rec, ChunkingConfig())
    without = chunk_record(rec, ChunkingConfig(series=False))
    assert [c for c in without if c.concept] == []
    assert len([c for c in with_series if c.concept]) == 1
    assert [c.text for c in without] == [c.text for c in with_series if c.concept is None]
    # day chunks still hold every event once, series or not
    day_ids = [e for c in with_series if c.concept is None for e in c.event_ids]
    assert sorted(day_ids) == sorted(e.event_id for e in evs)


def test_series_chunk_ids_are_stable_and_distinct():
    evs = [_lab(i, 3 * i, "Potassium", "2823-3", 4.1) for i in range(4)]
    a = chunk_series(evs, "p", ChunkingConfig())
    b = chunk_series(list(reversed(evs)), "p", ChunkingConfig())
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len({c.chunk_id for c in chunk_record(_record(evs))}) == len(chunk_record(_record(evs)))


def test_rows_show_the_clock_when_a_day_has_several_and_units_when_they_differ():
    a = _lab(1, 0, "Glucose", "2345-7", 98, unit="mg/dL")
    b = _lab(2, 0, "Glucose", "2345-7", 5.5, unit="mmol/L").model_copy(update={"start": T0 + timedelta(hours=6)})
    c = _lab(3, 30, "Glucose", "2345-7", 101, unit="mg/dL")
    [ch] = chunk_series([a, b, c], "p", ChunkingConfig())
    assert ch.text.splitlines() == [
        "Glucose (LOINC 2345-7): lab values in 2019, rows 1-3 of 3:",
        "2019-11-04 08:30 | 98 mg/dL",
        "2019-11-04 14:30 | 5.5 mmol/L",
        "2019-12-04 | 101 mg/dL",
    ]
