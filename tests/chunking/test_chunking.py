from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragehr.chunking import chunk_record, split_sections
from ragehr.config import ChunkingConfig
from ragehr.ehr import load_record
from ragehr.tokens import EstimateCounter
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
T0 = datetime(2020, 1, 1, tzinfo=UTC)

words = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), max_codepoint=0x24F), min_size=1, max_size=25)
sentences = st.lists(words, min_size=1, max_size=40).map(lambda ws: " ".join(ws) + ".")
note_texts = st.lists(
    st.one_of(sentences, st.just("Assessment:"), st.just("PLAN"), st.just("Plan: continue aspirin.")),
    min_size=0,
    max_size=30,
).map("\n".join)


@st.composite
def events(draw):
    kind = draw(st.sampled_from(list(EventKind)))
    offset = draw(st.one_of(st.none(), st.integers(0, 3000)))
    start = None if offset is None else T0 + timedelta(hours=offset)
    if kind is EventKind.NOTE:
        text = draw(note_texts) or "x"
    else:
        text = draw(st.one_of(words, sentences))
    value = draw(st.one_of(st.none(), st.integers(-5, 500), st.floats(0, 1000, allow_nan=False)))
    return Event(
        kind=kind,
        start=start,
        text=text,
        value=None if kind is EventKind.NOTE else value,
        code=draw(st.one_of(st.none(), st.sampled_from(["8480-6", "I63.5", "313782"]))),
        system="LOINC",
        source=SourceLocator(file="f.xml", path=f"/e[{draw(st.integers(0, 10**6))}]"),
    )


records = st.lists(events(), min_size=0, max_size=40).map(
    lambda evs: PatientRecord(patient_id="p1", format="medalign-xml", events=tuple(evs))
)
configs = st.builds(ChunkingConfig, max_tokens=st.integers(24, 300), overlap_tokens=st.integers(0, 40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, configs)
def test_every_event_lands_in_a_chunk_and_chunks_fit(record, config):
    chunks = chunk_record(record, config)
    covered = {eid for c in chunks for eid in c.event_ids}
    assert {e.event_id for e in record.events} <= covered
    counter = EstimateCounter()
    for c in chunks:
        assert c.n_tokens == counter.count(c.text)
        assert c.n_tokens <= config.max_tokens, c.text
        assert c.patient_id == "p1"
    assert len({c.chunk_id for c in chunks}) == len(chunks)


@settings(max_examples=60, deadline=None)
@given(records, configs)
def test_chunk_ids_stable(record, config):
    a = chunk_record(record, config)
    b = chunk_record(PatientRecord.model_validate(record.model_dump()), config.model_copy())
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert a == b


def test_chunk_ids_change_with_config():
    rec = load_record(SAMPLE)
    a = {c.chunk_id for c in chunk_record(rec, ChunkingConfig(max_tokens=128))}
    b = {c.chunk_id for c in chunk_record(rec, ChunkingConfig(max_tokens=256))}
    assert a.isdisjoint(b)


def test_day_kind_groups_state_their_date():
    rec = load_record(SAMPLE)
    chunks = chunk_record(rec)
    vitals = [c for c in chunks if c.kind is EventKind.VITAL and c.concept is None]
    # 256 tokens holds a day's vitals in one chunk: one per visit day.
    assert [c.text.splitlines()[0] for c in vitals] == [
        "Vital signs on 2018-10-08:",
        "Vital signs on 2018-10-20:",
        "Vital signs on 2022-05-15:",
    ]
    assert "Systolic blood pressure: 165" in vitals[0].text
    assert all(line.startswith("2018-10-08") for line in vitals[0].text.splitlines()[1:])


def test_note_chunks_keep_note_metadata():
    rec = load_record(SAMPLE)
    chunks = chunk_record(rec, ChunkingConfig(max_tokens=64, overlap_tokens=16))
    ed = [c for c in chunks if c.note_type == "emergency department note"]
    assert len(ed) > 2
    assert all(c.text.startswith("2018-10-08 20:10 | note | emergency department note\n") for c in ed)
    assert all(c.visit_id == "visit-1" and c.start == ed[0].start for c in ed)
    assert [c.ordinal for c in ed] == list(range(len(ed)))
    assert all(c.sources == ed[0].sources for c in ed)
    # overlap: some sentence at the end of a chunk opens the next one
    bodies = [c.text.split("\n", 1)[1] for c in ed]
    assert any(b2.split(". ")[0] in b1 for b1, b2 in zip(bodies, bodies[1:]))


def test_split_sections():
    text = "Chief complaint: chest pain.\nHISTORY OF PRESENT ILLNESS\nPain began today.\nPlan:\nAspirin."
    secs = split_sections(text)
    assert [h for h, _ in secs] == [None, "HISTORY OF PRESENT ILLNESS", "Plan"]
