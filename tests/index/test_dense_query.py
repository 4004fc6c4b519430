"""What the dense side embeds: a static (word-averaging) embedder gets a question's content words,
a transformer the question itself; BM25 always scores the question (issue 22)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ragehr.config import IndexConfig
from ragehr.ehr.medalign import write_medalign_xml
from ragehr.embeddings.hashing import HashingEmbedder
from ragehr.embeddings.static import StaticEmbedder
from ragehr.index.build import build_indexes
from ragehr.index.search import dense_query_text, load_patient_index, search
from ragehr.types import Event, EventKind, PatientRecord, SourceLocator

QUESTION = "What was the result of the patient's amylase test?"


class Recording:
    """The hashing embedder, remembering the single texts (queries) it embeds."""

    def __init__(self, content_words: bool) -> None:
        self.inner = HashingEmbedder()
        self.model_id, self.dim = self.inner.model_id, self.inner.dim
        self.query_content_words = content_words
        self.queries: list[str] = []

    def embed(self, texts, *, batch_size=64, progress=None) -> np.ndarray:
        if len(texts) == 1:
            self.queries.append(texts[0])
        return self.inner.embed(texts, batch_size=batch_size, progress=progress)


def _record() -> PatientRecord:
    """Twelve notes full of the question's generic words, and one amylase line that has none."""
    t0 = datetime(2021, 3, 1, 9, tzinfo=UTC)
    events = [
        Event(
            kind=EventKind.NOTE,
            start=t0 + timedelta(days=10 * i),
            note_type="progress note",
            text=f"What was the test result? The patient was told the result of the test {i}. "
            "The patient's test was reviewed with the patient.",
            source=SourceLocator(file="t", path=f"note/{i}"),
        )
        for i in range(12)
    ]
    events.append(
        Event(
            kind=EventKind.LAB,
            start=t0 + timedelta(days=50, hours=3),
            text="Amylase",
            value=310.0,
            unit="U/L",
            source=SourceLocator(file="t", path="lab/amylase"),
        )
    )
    events.sort(key=lambda e: e.start)
    return PatientRecord(patient_id="generic", format="medalign-xml", events=tuple(events))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("dense-query")
    path = d / "generic.xml"
    path.write_text(write_medalign_xml(_record()), encoding="utf-8")
    [s] = build_indexes([path], d / "idx", IndexConfig(embedder="hashing"))
    assert s.status == "built", s
    amylase = next(
        e.event_id
        for e in load_patient_index(d / "idx", s.patient_id, need_dense=False).stored.record.events
        if e.text == "Amylase"
    )
    return d / "idx", s.patient_id, amylase


def test_the_static_embedder_asks_for_content_words_and_others_do_not(tmp_path):
    assert StaticEmbedder.query_content_words is True  # a class attribute: no model is loaded
    assert not hasattr(HashingEmbedder(), "query_content_words")
    assert dense_query_text(StaticEmbedder(models_dir=tmp_path), QUESTION) == "amylase"
    assert dense_query_text(HashingEmbedder(), QUESTION) == QUESTION


@pytest.mark.parametrize("content_words", [True, False])
def test_the_dense_side_embeds_what_the_embedder_asks_for(built, content_words):
    folder, pid, _ = built
    emb = Recording(content_words)
    idx = load_patient_index(folder, pid, embedder=emb)
    search(idx, QUESTION, retriever="hybrid")
    assert emb.queries == (["amylase"] if content_words else [QUESTION])


def test_content_words_put_the_amylase_line_first_where_generic_words_bury_it(built):
    """The regression the rule fixes: averaged in, "result", "patient", "test" rank every
    generic note above the one chunk about amylase."""
    folder, pid, amylase = built
    ranks = {}
    for content_words in (True, False):
        idx = load_patient_index(folder, pid, embedder=Recording(content_words))
        hits, _ = search(idx, QUESTION, retriever="dense", k=50)
        ranks[content_words] = next((i for i, h in enumerate(hits) if amylase in h.chunk.event_ids), len(hits))
    assert ranks[True] == 0
    assert ranks[False] >= 10  # out of the top 10, as static's dense side did on the small record


def test_bm25_still_scores_the_whole_question(built):
    folder, pid, _ = built
    emb = Recording(True)
    idx = load_patient_index(folder, pid, embedder=emb)
    hits_bm25, _ = search(idx, QUESTION, retriever="bm25")
    assert emb.queries == []  # the dense side is not asked at all
    assert hits_bm25


def test_the_embedders_dense_weight_scales_the_dense_side(built):
    """Weighted fusion sums min-max normalised scores: the amylase chunk is BM25's best (1.0),
    so its fused score is 1 + w x its normalised dense score, w the embedder's dense weight."""
    assert StaticEmbedder.dense_weight == 0.75
    folder, pid, amylase = built
    top = {}
    for weight in (0.0, 0.5, 1.0):
        emb = Recording(True)
        emb.dense_weight = weight
        idx = load_patient_index(folder, pid, embedder=emb)
        hits, _ = search(idx, "amylase result reviewed", retriever="hybrid", k=5)
        assert amylase in hits[0].chunk.event_ids
        top[weight] = hits[0].hit.score
    dense = top[1.0] - 1.0
    assert dense > 0.1
    assert top[0.0] == pytest.approx(1.0)
    assert top[0.5] == pytest.approx(1.0 + 0.5 * dense)
