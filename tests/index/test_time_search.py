"""Time-aware search on a chronically ill patient: potassium every two weeks for two years,
among other labs, with a note at the end naming the current anticoagulant.

Expected results are derived from the record itself (which event is newest, oldest, on a
day), never from the ranking code."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ragehr.config import IndexConfig
from ragehr.ehr.medalign import write_medalign_xml
from ragehr.ehr.render import format_value
from ragehr.ehr.times import format_time
from ragehr.eval.generated import DATE_FORMATS, written_date
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search
from ragehr.pipeline.context import build_context, context_json
from ragehr.tokens import EstimateCounter
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator, Status

START = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)


def _record() -> PatientRecord:
    rng = random.Random(7)
    events: list[Event] = []
    for i in range(52):
        t = START + timedelta(days=14 * i)
        for j, (name, code, unit, lo, hi) in enumerate(
            [
                ("Potassium [Moles/volume] in Serum or Plasma", "2823-3", "mmol/L", 3.4, 5.4),
                ("Sodium [Moles/volume] in Serum or Plasma", "2951-2", "mmol/L", 133, 146),
                ("Creatinine [Mass/volume] in Serum or Plasma", "2160-0", "mg/dL", 0.7, 2.1),
                ("Glucose [Mass/volume] in Serum or Plasma", "2345-7", "mg/dL", 70, 220),
            ]
        ):
            events.append(
                Event(
                    kind=EventKind.LAB,
                    start=t + timedelta(minutes=j),
                    system="LOINC",
                    code=code,
                    text=name,
                    value=round(rng.uniform(lo, hi), 1),
                    unit=unit,
                    visit_id=f"v{i}",
                    source=SourceLocator(file="t", path=f"lab/{i}/{j}"),
                )
            )
        if i % 6 == 0:
            events.append(
                Event(
                    kind=EventKind.NOTE,
                    start=t + timedelta(hours=2),
                    text=f"Follow-up visit {i}. Renal function reviewed. Continue plan.",
                    note_type="progress note",
                    visit_id=f"v{i}",
                    source=SourceLocator(file="t", path=f"note/{i}"),
                )
            )
    events.append(
        Event(
            kind=EventKind.MEDICATION,
            start=START,
            text="warfarin 5 MG Oral Tablet",
            status=Status.STOPPED,
            source=SourceLocator(file="t", path="med/0"),
        )
    )
    events.append(
        Event(
            kind=EventKind.PROCEDURE,
            start=START + timedelta(days=14 * 30, hours=5),
            text="Kidney transplant",
            source=SourceLocator(file="t", path="proc/0"),
        )
    )
    end = START + timedelta(days=14 * 51 + 1)
    events.append(
        Event(
            kind=EventKind.NOTE,
            start=end,
            note_type="progress note",
            text="Assessment: atrial fibrillation. Switched to apixaban 5 mg twice daily last month, tolerating well.",
            source=SourceLocator(file="t", path="note/last"),
        )
    )
    events.sort(key=lambda e: e.start)
    return PatientRecord(patient_id="chronic", format="medalign-xml", events=tuple(events))


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    d = tmp_path_factory.mktemp("time")
    path = d / "chronic.xml"
    path.write_text(write_medalign_xml(_record()), encoding="utf-8")
    [s] = build_indexes([path], d / "idx", IndexConfig(embedder="hashing"))
    assert s.status == "built", s
    return load_patient_index(d / "idx", s.patient_id)


def _potassium(idx):
    return sorted((e for e in idx.stored.record.events if e.code == "2823-3"), key=lambda e: e.start)


def _line_in(chunk, e) -> bool:
    day, val = format_time(e.start, e.precision)[:10], format_value(e.value)
    return e.event_id in chunk.event_ids and any(day in ln and val in ln for ln in chunk.text.splitlines())


@pytest.mark.parametrize("style", DATE_FORMATS)
@pytest.mark.parametrize("retriever", ["hybrid", "bm25"])
def test_a_day_in_any_written_form_finds_that_days_value(idx, style, retriever):
    for e in _potassium(idx)[5::15]:
        q = f"What was the patient's potassium on {written_date(e.start.date(), style)}?"
        hits, plan = search(idx, q, k=3, retriever=retriever)
        assert plan.intent == "point" and plan.fallback is None, q
        assert _line_in(hits[0].chunk, e), q


def test_a_day_without_a_measurement_falls_back_to_the_nearest_and_says_so(idx):
    e = _potassium(idx)[10]
    gap = e.start + timedelta(days=3)  # measurements are 14 days apart
    hits, plan = search(idx, f"potassium on {written_date(gap.date(), 'long')}", k=3)
    assert plan.fallback and "3 days" in plan.fallback
    assert _line_in(hits[0].chunk, e)
    ctx = build_context(
        idx,
        f"potassium on {written_date(gap.date(), 'long')}",
        strategy="rag",
        budget_tokens=512,
        counter=EstimateCounter(),
    )
    assert ctx.time_fallback == plan.fallback and context_json(ctx)["time_fallback"] == plan.fallback


@pytest.mark.parametrize(
    "q", ["What was the patient's most recent potassium?", "latest potassium", "last potassium value"]
)
def test_most_recent_is_the_newest_copy(idx, q):
    newest = _potassium(idx)[-1]
    hits, plan = search(idx, q, k=3)
    assert plan.intent == "latest"
    assert _line_in(hits[0].chunk, newest)


def test_first_is_the_oldest_copy(idx):
    oldest = _potassium(idx)[0]
    hits, plan = search(idx, "What was the first recorded potassium?", k=3)
    assert plan.intent == "first" and _line_in(hits[0].chunk, oldest)


def test_latest_within_a_year(idx):
    in_2020 = [e for e in _potassium(idx) if e.start.year == 2020]
    hits, plan = search(idx, "most recent potassium in 2020", k=3)
    assert plan.intent == "latest" and _line_in(hits[0].chunk, in_2020[-1])


def test_counts_get_the_whole_series_in_few_chunks(idx):
    ks = _potassium(idx)
    hits, plan = search(idx, "How many times was potassium measured?", k=4)
    assert plan.intent == "series"
    top = [h.chunk for h in hits if h.chunk.concept is not None]
    assert top and all(c.concept == "LOINC 2823-3" for c in top)
    got = {eid for c in top for eid in c.event_ids}
    assert got == {e.event_id for e in ks}
    ctx = build_context(
        idx, "How many times was potassium measured?", strategy="rag", budget_tokens=1024, counter=EstimateCounter()
    )
    packed = list(ctx.packed.items)
    assert all(any(_line_in(it, e) for it in packed) for e in ks)


def test_current_medications_read_the_latest_note_first(idx):
    hits, plan = search(idx, "What medications is she currently on?", k=3)
    assert plan.intent == "current"
    assert "apixaban" in hits[0].chunk.text


def test_explicit_until_keeps_the_whole_last_day(idx):
    from ragehr.retrieval.timefilter import parse_date_option

    ks = _potassium(idx)
    day = ks[-2].start.date().isoformat()  # measured at 09:00 that day
    hits, _ = search(idx, "most recent potassium", k=3, until=parse_date_option(day, end=True), retriever="bm25")
    assert _line_in(hits[0].chunk, ks[-2])
    hits, _ = search(idx, "most recent potassium", k=3, until=parse_date_option(day), retriever="bm25")
    assert _line_in(hits[0].chunk, ks[-3])  # midnight that day: the one before


def test_plain_questions_are_ranked_as_before(idx):
    hits, plan = search(idx, "apixaban", k=3)
    assert plan.intent == "none" and not plan.is_filter and "apixaban" in hits[0].chunk.text


def test_windows_anchored_on_a_clinical_event(idx):
    tx = next(e for e in idx.stored.record.events if e.text == "Kidney transplant").start.date()
    hits, plan = search(idx, "How has her potassium changed since the transplant?", k=5)
    assert plan.intent == "series" and plan.since.date() == tx and str(tx) in plan.phrase
    assert all(h.chunk.end.date() >= tx for h in hits)
    hits, plan = search(idx, "most recent potassium before the transplant", k=3)
    before = [e for e in _potassium(idx) if e.start.date() <= tx]
    assert plan.intent == "latest" and _line_in(hits[0].chunk, before[-1])
    # an event the record does not have leaves the question unfiltered
    _, plan = search(idx, "potassium since her stroke", k=3)
    assert not plan.is_filter


def test_a_window_finds_its_weak_matches_before_falling_back(tmp_path):
    """Inside a window, "about the concept" is judged against the window's own best match: a
    day chunk listing one procedure is the answer to "which procedures between X and Y" even
    when a long note elsewhere says "procedures performed" over and over (the ablation's
    procedures_in_period questions fell back to that note and packed nothing in the window)."""
    base = datetime(2014, 1, 3, 9, 0, tzinfo=UTC)
    events = [
        Event(
            kind=EventKind.PROCEDURE,
            start=base + timedelta(days=22),
            text="Assessment of anxiety (procedure)",
            system="SNOMED",
            code="710841007",
            source=SourceLocator(file="t", path="proc/1"),
        ),
        Event(
            kind=EventKind.NOTE,
            start=base + timedelta(days=300),
            note_type="operation note",
            text="Procedures performed: procedure one performed, procedure two performed. All procedures performed "
            "without complication; procedures performed under general anesthesia.",
            source=SourceLocator(file="t", path="note/1"),
        ),
    ]
    for i in range(40):  # other days, other kinds, inside and outside the window
        events.append(
            Event(
                kind=EventKind.LAB,
                start=base + timedelta(days=9 * i),
                system="LOINC",
                code="2823-3",
                text="Potassium [Moles/volume] in Serum or Plasma",
                value=4.0 + i / 100,
                unit="mmol/L",
                source=SourceLocator(file="t", path=f"lab/{i}"),
            )
        )
    record = PatientRecord(
        patient_id="window", format="medalign-xml", events=tuple(sorted(events, key=lambda e: e.start))
    )
    path = tmp_path / "window.xml"
    path.write_text(write_medalign_xml(record), encoding="utf-8")
    [s] = build_indexes([path], tmp_path / "idx", IndexConfig(embedder="hashing"))
    idx = load_patient_index(tmp_path / "idx", s.patient_id)
    proc = next(e for e in idx.stored.record.events if e.kind is EventKind.PROCEDURE)
    for retriever in ("hybrid", "bm25"):
        hits, plan = search(
            idx, "Which procedures were performed between 2014-01-01 and 2014-01-31?", k=20, retriever=retriever
        )
        assert plan.fallback is None
        assert proc.event_id in hits[0].chunk.event_ids
        assert all(h.chunk.start is not None and h.chunk.start.year == 2014 and h.chunk.start.month == 1 for h in hits)
    # a window where nothing is about the concept still falls back, and says so
    hits, plan = search(idx, "Which procedures were performed between 2014-03-01 and 2014-03-31?", k=5)
    assert plan.fallback and "nearest dated evidence" in plan.fallback and hits


def test_series_tables_matching_only_incidental_words_are_not_about_the_concept():
    """'When was empagliflozin 10 MG Oral Tablet first prescribed?': a lab table holding a
    "10" scores a little for that question, far below the medication's day chunk; ordered
    oldest first it came before the drug. Series count as relevant only when their best is
    within the fraction of the other chunks' best."""
    from ragehr.index.search import relevant_ids

    scores = {"med-day": 9.0, "other-day": 1.0, "lab-series-a": 1.5, "lab-series-b": 1.2}
    series = {"lab-series-a", "lab-series-b"}
    assert relevant_ids(scores, 0.5, series) == {"med-day"}
    # a concept whose table scores high (a short table naming it once) keeps both populations
    scores = {"k-day-1": 4.0, "k-day-2": 3.0, "k-series": 9.0, "other-series": 1.0}
    assert relevant_ids(scores, 0.5, {"k-series", "other-series"}) == {"k-day-1", "k-day-2", "k-series"}


def test_the_vectorised_filter_agrees_with_overlaps_chunk_by_chunk(idx):
    """``PatientIndex.allowed`` (arrays, once per index) against the reference
    :func:`allowed_ids` (``overlaps`` per chunk) and a row-by-row series check, on random
    windows: instants, calendar days, open ends, kinds."""
    from ragehr.index.search import allowed_ids
    from ragehr.retrieval.timefilter import overlaps

    rng = random.Random(3)
    chunks = idx.stored.chunks
    kinds_choices = [None, {EventKind.LAB}, {EventKind.NOTE, EventKind.MEDICATION}]
    for _ in range(200):
        a = START + timedelta(days=rng.uniform(-30, 760), hours=rng.uniform(0, 24))
        b = a + timedelta(days=rng.choice([0, 0.2, 1, 14, 90, 400]))
        since, until = rng.choice([(a, b), (a, None), (None, b), (None, None)])
        kinds = rng.choice(kinds_choices)
        by_date = rng.random() < 0.5
        got = idx.allowed(since, until, kinds, by_date=by_date)
        assert got == allowed_ids(chunks, since, until, kinds, by_date=by_date)
        if got is None or (since is None and until is None):
            continue
        rows = idx.allowed(since, until, kinds, by_date=by_date, series_rows=True)
        want = {
            cid
            for cid in got
            if idx.chunk(cid).concept is None
            or any(overlaps(t, t, since, until, by_date=by_date) for t in idx.row_times(idx.chunk(cid)))
        }
        assert rows == want
