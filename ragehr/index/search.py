"""Searching a patient's index: BM25, dense, or both fused, under time and kind filters.

``PatientIndex`` is an opened index with its retrievers; ``search`` is the one entry point
the CLI, the packer and the adapters call. The question is first read into a plan
(:func:`ragehr.retrieval.intent.plan_question`: intent, time window, concept). Then:

1. the retrievers rank chunks for the concept text (the question without its time phrase)
   under the kind filter and the time window (calendar windows compare chunk dates);
2. for time-shaped intents, the chunks *about* the concept (BM25 score at least
   ``relevant_fraction`` of the best: :func:`relevant_ids`) are ordered by time
   (:func:`order_by_intent`): newest first for "latest", oldest first for "first", state at
   the record's end for "current", per-concept series chunks first for "series";
3. when a window holds nothing about the concept, the nearest dated relevant evidence is used
   and the plan says so (``plan.fallback``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ragehr.config import RetrievalConfig
from ragehr.errors import ConfigError, StaleIndexError
from ragehr.index.store import StoredIndex, open_index, reindex_hint
from ragehr.retrieval.concepts import RecordLexicon, resolve
from ragehr.retrieval.fusion import fuse_rows
from ragehr.retrieval.intent import QuestionPlan, concept_text, plan_question
from ragehr.retrieval.timefilter import TimeWindow, overlaps
from ragehr.types import Chunk, EventKind, Hit, Status

_STATE_KINDS = (EventKind.MEDICATION, EventKind.CONDITION, EventKind.ALLERGY)
_CURRENT_KINDS = (EventKind.MEDICATION, EventKind.CONDITION, EventKind.ALLERGY, EventKind.NOTE)


class RetrievedChunk(BaseModel):
    """A hit with its chunk: what ``ragehr retrieve`` prints and the packer consumes."""

    model_config = ConfigDict(frozen=True)

    hit: Hit
    chunk: Chunk

    def to_json(self) -> dict:
        c = self.chunk
        return {
            "chunk_id": c.chunk_id,
            "rank": self.hit.rank,
            "score": self.hit.score,
            "kind": c.kind.value,
            "start": c.start.isoformat() if c.start else None,
            "end": c.end.isoformat() if c.end else None,
            "text": c.text,
            "source": c.sources[0] if c.sources else None,
            "sources": list(c.sources),
            "event_ids": list(c.event_ids),
            "components": self.hit.components,
        }


_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _micros(t: datetime) -> int:
    """Microseconds since the epoch, exactly (naive times against a naive epoch: the order
    is the one ``<`` gives, which never mixes naive and aware times)."""
    return (t - (_EPOCH_NAIVE if t.tzinfo is None else _EPOCH_AWARE)) // _US


@dataclass(frozen=True)
class _TimeTable:
    """The chunks' times and kinds as arrays in ``ids`` order, so a time or kind filter is a
    few vector comparisons instead of a Python call per chunk (same answers as
    :func:`ragehr.retrieval.timefilter.overlaps`)."""

    ids: tuple[str, ...]
    dated: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray
    start_day: np.ndarray
    end_day: np.ndarray
    kinds: np.ndarray
    series_owner: np.ndarray
    """For every row of every series chunk, in one array: the chunk's position in ``ids``..."""
    series_us: np.ndarray
    series_day: np.ndarray
    """... and the row's time (microseconds, day ordinal): a window's test over every series
    row at once."""
    is_series: np.ndarray

    @classmethod
    def of(cls, chunks: Sequence[Chunk], event_start: dict[str, datetime | None]) -> _TimeTable:
        n = len(chunks)
        dated = np.zeros(n, dtype=bool)
        start_us = np.zeros(n, dtype=np.int64)
        end_us = np.zeros(n, dtype=np.int64)
        start_day = np.zeros(n, dtype=np.int64)
        end_day = np.zeros(n, dtype=np.int64)
        is_series = np.zeros(n, dtype=bool)
        kinds = np.array([c.kind.value for c in chunks], dtype=object)
        owner: list[int] = []
        row_times: list[datetime] = []
        for i, c in enumerate(chunks):
            if c.start is not None:
                end = c.end or c.start
                dated[i] = True
                start_us[i], end_us[i] = _micros(c.start), _micros(end)
                start_day[i], end_day[i] = c.start.date().toordinal(), end.date().toordinal()
            if c.concept is not None:
                is_series[i] = True
                times = [t for t in (event_start.get(e) for e in c.event_ids) if t is not None]
                owner += [i] * len(times)
                row_times += times
        return cls(
            tuple(c.chunk_id for c in chunks),
            dated,
            start_us,
            end_us,
            start_day,
            end_day,
            kinds,
            np.array(owner, dtype=np.int64),
            np.array([_micros(t) for t in row_times], dtype=np.int64),
            np.array([t.date().toordinal() for t in row_times], dtype=np.int64),
            is_series,
        )

    def series_in(self, since: datetime | None, until: datetime | None, by_date: bool) -> np.ndarray:
        """Mask over ``ids``: the chunks that are not series chunks, and the series chunks one
        of whose rows lies in [since, until], every row tested at once."""
        t = self.series_day if by_date else self.series_us
        hit = np.ones(len(t), dtype=bool)
        if since is not None:
            hit &= t >= (since.date().toordinal() if by_date else _micros(since))
        if until is not None:
            hit &= t <= (until.date().toordinal() if by_date else _micros(until))
        ok = ~self.is_series
        ok[self.series_owner[hit]] = True
        return ok

    def mask(
        self, since: datetime | None, until: datetime | None, kinds: Collection[EventKind] | None, by_date: bool = False
    ) -> np.ndarray:
        ok = np.ones(len(self.ids), dtype=bool)
        if kinds:
            ok &= np.isin(self.kinds, [k.value for k in kinds])
        if since is not None or until is not None:
            ok &= self.dated
            lo, hi = (self.start_day, self.end_day) if by_date else (self.start_us, self.end_us)
            if since is not None:
                ok &= hi >= (since.date().toordinal() if by_date else _micros(since))
            if until is not None:
                ok &= lo <= (until.date().toordinal() if by_date else _micros(until))
        return ok


@dataclass(frozen=True)
class IdFilter:
    """The chunks passing a time or kind filter, as a boolean mask over the rows of the BM25
    side, read as a collection of chunk ids (``in``, ``len``, iteration): the query path keeps
    the mask for the retrievers and asks "is this chunk in?" without building a set of
    thousands of ids."""

    mask: np.ndarray
    ids: tuple[str, ...]
    pos: dict[str, int]

    def __contains__(self, chunk_id: object) -> bool:
        i = self.pos.get(chunk_id)  # type: ignore[call-overload]
        return i is not None and bool(self.mask[i])

    def __len__(self) -> int:
        return int(np.count_nonzero(self.mask))

    def __iter__(self) -> Iterator[str]:
        ids = self.ids
        return (ids[i] for i in np.flatnonzero(self.mask).tolist())


@dataclass
class PatientIndex:
    """An opened index: stored chunks plus ready retrievers. Load once, query many times."""

    stored: StoredIndex
    bm25: Any  # BM25Index (retrieval/bm25.py, loaded lazily)
    dense: Any | None  # DenseIndex (retrieval/dense.py, faiss), None when opened without it
    embedder: Any | None
    _chunks: dict[str, Chunk] = field(default_factory=dict)
    memo: dict[object, Any] = field(default_factory=dict)
    """Derived views of the record that later layers compute once per opened index (the
    long-context baselines' pieces, the visit documents)."""

    @property
    def patient_id(self) -> str:
        return self.stored.manifest.patient_id

    @property
    def last_time(self) -> datetime | None:
        t = self.stored.manifest.last_time
        return datetime.fromisoformat(t) if t else None

    def chunk(self, chunk_id: str) -> Chunk:
        if not self._chunks:
            self._chunks = self.stored.chunk_by_id()
        return self._chunks[chunk_id]

    def latest_note_ids(self, allowed: Collection[str] | None = None) -> set[str]:
        """The chunks of the newest dated note (under ``allowed``, when given)."""
        notes = [
            c
            for c in self.stored.chunks
            if c.kind is EventKind.NOTE and c.start is not None and (allowed is None or c.chunk_id in allowed)
        ]
        if not notes:
            return set()
        newest = max(c.start for c in notes)  # type: ignore[type-var]
        return {c.chunk_id for c in notes if c.start == newest}

    def row_times(self, c: Chunk) -> list[datetime]:
        """A series chunk's row times (one per event, in row order); empty for other chunks."""
        if c.concept is None:
            return []
        times = self._event_starts()
        return [t for t in (times.get(eid) for eid in c.event_ids) if t is not None]

    def _event_starts(self) -> dict[str, datetime | None]:
        """Event id -> start time (computed once per opened index)."""
        times = self.memo.get("event-starts")
        if times is None:
            times = self.memo["event-starts"] = {e.event_id: e.start for e in self.stored.record.events}
        return times

    def time_table(self) -> _TimeTable:
        """The chunks' times and kinds as arrays (computed once per opened index)."""
        got = self.memo.get("time-table")
        if got is None:
            got = self.memo["time-table"] = _TimeTable.of(self.stored.chunks, self._event_starts())
        return got

    def allowed(
        self,
        since: datetime | None,
        until: datetime | None,
        kinds: Collection[EventKind] | None,
        *,
        by_date: bool = False,
        series_rows: bool = False,
    ) -> set[str] | None:
        """:func:`allowed_ids` over this index's chunks, vectorised. With ``series_rows`` a
        series chunk passes a time filter only when one of its rows does (its span may
        straddle a gap)."""
        got = self.allowed_filter(since, until, kinds, by_date=by_date, series_rows=series_rows)
        return None if got is None else set(got)

    def allowed_filter(
        self,
        since: datetime | None,
        until: datetime | None,
        kinds: Collection[EventKind] | None,
        *,
        by_date: bool = False,
        series_rows: bool = False,
    ) -> IdFilter | None:
        """:meth:`allowed` as an :class:`IdFilter` over the BM25 side's rows (no set built)."""
        if since is None and until is None and not kinds:
            return None
        table = self.time_table()
        ok = table.mask(since, until, kinds, by_date)
        if series_rows and (since is not None or until is not None):
            ok &= table.series_in(since, until, by_date)
        ids, pos, to_bm25 = self._bm25_rows()
        if to_bm25 is not None:
            mask = np.zeros(len(ids), dtype=bool)
            mask[to_bm25[ok]] = True
            ok = mask
        return IdFilter(ok, ids, pos)

    def _bm25_rows(self) -> tuple[tuple[str, ...], dict[str, int], np.ndarray | None]:
        """The BM25 side's ids and positions, and the time table's row -> BM25 row (``None``
        when the orders agree, as in every index ragehr builds); made once."""
        got = self.memo.get("bm25-rows")
        if got is None:
            ids = tuple(self.bm25.ids)
            pos = {cid: i for i, cid in enumerate(ids)}
            table_ids = self.time_table().ids
            to_bm25 = None if table_ids == ids else np.array([pos[cid] for cid in table_ids], dtype=np.int64)
            got = self.memo["bm25-rows"] = (ids, pos, to_bm25)
        return got

    def lexicon(self) -> RecordLexicon:
        """The record's concepts (:class:`ragehr.retrieval.concepts.RecordLexicon`), built
        once per opened index."""
        got = self.memo.get("lexicon")
        if got is None:
            got = self.memo["lexicon"] = RecordLexicon.of(self.stored.record)
        return got

    def series_ids(self) -> frozenset[str]:
        """Ids of the per-concept series chunks (computed once per opened index)."""
        got = self.memo.get("series-chunks")
        if got is None:
            got = self.memo["series-chunks"] = frozenset(
                c.chunk_id for c in self.stored.chunks if c.concept is not None
            )
        return got

    def ongoing_ids(self) -> frozenset[str]:
        """Chunks holding a medication, condition or allergy marked active with no end: state
        that still holds at the record's end (computed once per opened index). An order with
        no status is not assumed to last (a one-off dose in the emergency room has none)."""
        key = "ongoing-chunks"
        got = self.memo.get(key)
        if got is None:
            live = {
                e.event_id
                for e in self.stored.record.events
                if e.kind in _STATE_KINDS and e.end is None and e.status is Status.ACTIVE
            }
            got = self.memo[key] = frozenset(c.chunk_id for c in self.stored.chunks if live.intersection(c.event_ids))
        return got


def load_patient_index(
    index_dir: str | Path, patient_id: str, *, need_dense: bool = True, embedder=None, verify: bool = True
) -> PatientIndex:
    """Open a patient's index and its retrievers. The dense side loads the embedder recorded
    in the manifest (or checks the one given against it)."""
    from ragehr.retrieval.bm25 import BM25Index

    stored = open_index(Path(index_dir), patient_id, verify=verify)
    bm25 = BM25Index.load(stored.folder / "bm25")
    dense = emb = None
    if need_dense:
        from ragehr.retrieval.dense import DenseIndex

        dense = DenseIndex.load(stored.folder / "dense", expected_model_id=stored.manifest.embedder_id)
        if embedder is None:
            from ragehr.embeddings import QueryLRU, load_embedder
            from ragehr.embeddings.static import default_models_dir

            embedder = QueryLRU(
                load_embedder(
                    stored.manifest.config.get("embedder", "minilm"), models_dir=default_models_dir(index_dir)
                )
            )
        if embedder.model_id != stored.manifest.embedder_id:
            raise StaleIndexError(
                f"index of {patient_id!r} was embedded with {stored.manifest.embedder_id}, "
                f"but the embedder now loaded is {embedder.model_id}; {reindex_hint(stored.manifest, patient_id)}"
            )
        emb = embedder
    return PatientIndex(stored=stored, bm25=bm25, dense=dense, embedder=emb)


def allowed_ids(
    chunks: Sequence[Chunk],
    since: datetime | None,
    until: datetime | None,
    kinds: Collection[EventKind] | None,
    *,
    by_date: bool = False,
) -> set[str] | None:
    """Chunk ids passing the time and kind filters, or ``None`` when there is no filter: the
    plain per-chunk definition, for any list of chunks. An opened index filters with
    :meth:`PatientIndex.allowed` (the same answers from arrays; a test checks them against
    this)."""
    if since is None and until is None and not kinds:
        return None
    return {
        c.chunk_id
        for c in chunks
        if (not kinds or c.kind in kinds) and overlaps(c.start, c.end, since, until, by_date=by_date)
    }


def relevant_ids(scores: dict[str, float], fraction: float, series: Collection[str] = ()) -> set[str]:
    """The chunks about the question's concept: a score at least ``fraction`` of the best
    positive score of their population. Series chunks (ids in ``series``) and the others are
    two populations: a short table that names a concept once scores far above a long day
    chunk that holds it among thirty results, and both are about it. Empty when nothing
    scores above zero."""
    out: set[str] = set()
    best_of: dict[bool, float] = {}
    for in_series in (True, False):
        pop = {cid: s for cid, s in scores.items() if (cid in series) is in_series}
        best = best_of[in_series] = max(pop.values(), default=0.0)
        if best > 0:
            out.update(cid for cid, s in pop.items() if s >= best * fraction)
    if best_of[True] < best_of[False] * fraction:
        # The series tables' best is far below the other chunks': they match the question's
        # incidental words ("10", "MG"), not its concept (a drug has no series table).
        out -= set(series)
    return out


def _when(c: Chunk, newest: bool) -> float:
    t = (c.end or c.start) if newest else c.start
    return t.timestamp() if t is not None else (float("-inf") if newest else float("inf"))


def _window_distance(start: datetime | None, end: datetime | None, window: TimeWindow) -> float:
    """Days from [start, end]'s dates to the window (0 inside; undated: infinitely far)."""
    if start is None:
        return float("inf")
    lo, hi = start.date(), (end or start).date()
    if window.since is not None and hi < window.since.date():
        return float((window.since.date() - hi).days)
    if window.until is not None and lo > window.until.date():
        return float((lo - window.until.date()).days)
    return 0.0


def order_by_intent(
    plan: QuestionPlan,
    relevant: Sequence[Chunk],
    score: dict[str, float],
    *,
    end_time: datetime | None = None,
    ongoing: Collection[str] = (),
) -> list[Chunk]:
    """The chunks about the concept, in the order the intent asks for (pure; ties by score,
    then chunk id). ``end_time`` and ``ongoing`` serve "current": a chunk with state still
    active at the end counts as of ``end_time``."""

    def s(c: Chunk) -> float:
        return -score.get(c.chunk_id, 0.0)

    if plan.intent == "latest":
        return sorted(relevant, key=lambda c: (-_when(c, True), s(c), c.chunk_id))
    if plan.intent == "first":
        return sorted(relevant, key=lambda c: (_when(c, False), s(c), c.chunk_id))
    if plan.intent == "current":
        end = end_time.timestamp() if end_time is not None else float("inf")

        def as_of(c: Chunk) -> float:
            return end if c.chunk_id in ongoing else _when(c, True)

        # notes and state kinds first, newest first; then anything else about the concept
        return sorted(relevant, key=lambda c: (c.kind not in _CURRENT_KINDS, -as_of(c), s(c), c.ordinal, c.chunk_id))
    if plan.intent == "series":
        # Whole series first, concept by concept (the best-scoring concept first), each in
        # time order; then the other chunks about the concept by score.
        best: dict[str, float] = {}
        for c in relevant:
            if c.concept is not None:
                best[c.concept] = min(best.get(c.concept, 0.0), s(c))
        return sorted(
            relevant,
            key=lambda c: (
                c.concept is None,
                best.get(c.concept or "", 0.0),
                c.concept or "",
                _when(c, False),
                s(c),
                c.chunk_id,
            ),
        )
    return sorted(relevant, key=lambda c: (s(c), c.chunk_id))


def search(
    index: PatientIndex,
    question: str,
    *,
    config: RetrievalConfig | None = None,
    k: int | None = None,
    retriever: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[EventKind] | None = None,
    use_question_time: bool = True,
) -> tuple[list[RetrievedChunk], QuestionPlan]:
    """Rank a patient's chunks for a question. Explicit ``since``/``until`` win over time read
    from the question. Returns the hits and the plan that was applied (intent, window,
    ``fallback`` when the window held nothing about the concept)."""
    config = config or RetrievalConfig()
    k = k or config.k
    retriever = retriever or config.retriever
    if retriever not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"unknown retriever {retriever!r}; use hybrid, bm25 or dense")
    plan = plan_question(
        question,
        index.last_time,
        since=since,
        until=until,
        use_question_time=use_question_time,
        day_first=config.day_first,
    )
    if plan.event_anchor is not None:
        plan = _anchor_on_event(index, plan)
    window = plan.window
    text = plan.concept if (plan.intent != "none" or window.span is not None) else question
    plan, text, dense_text = _expand(index, plan, text)
    # A series chunk is inside a window read from the question only when one of its rows is.
    in_window = index.allowed_filter(
        window.since, window.until, kinds, by_date=window.calendar, series_rows=window.is_filter
    )
    kind_ok = index.allowed_filter(None, None, kinds)
    n = max(k, config.candidates)
    fused = _fused(index, text, retriever, config, n, in_window, dense_text=dense_text)
    if plan.intent == "none" and not window.is_filter:
        return _wrap(index, fused.hits(k)), plan

    # Chunks about the concept, by BM25 over the whole record (under the kind filter).
    if retriever == "dense":
        top = max(10, k)
        about = dict(zip(fused.ids[:top], fused.scores[:top]))
        rel_scores = dict(about)
        relevant = set(about)
    else:
        raw = index.bm25.score_all(text)
        keep = raw > 0
        if kind_ok is not None:
            keep &= kind_ok.mask
        nz = np.flatnonzero(keep)
        ids = index.bm25.ids
        rel_scores = dict(zip([ids[i] for i in nz.tolist()], raw[nz].tolist()))
        relevant = relevant_ids(rel_scores, config.relevant_fraction, index.series_ids())
    if plan.intent == "current" and plan.state_list:
        # State at the record's end (or as of the window's end): the latest note then is read
        # whole (its medication list or plan need not use the question's words).
        relevant |= index.latest_note_ids(in_window if in_window is not None else kind_ok)
    if in_window is not None and retriever != "dense":
        # Inside a window, "about the concept" is judged against the window's own best match:
        # a day chunk listing the month's procedures is about "procedures" even when a long
        # note elsewhere in the record scores higher. Only a window where nothing matches the
        # concept at all falls back to the nearest dated evidence.
        window_scores = {cid: sc for cid, sc in rel_scores.items() if cid in in_window}
        relevant |= relevant_ids(window_scores, config.relevant_fraction, index.series_ids())
    fused_score = dict(zip(fused.ids, fused.scores))
    score = {cid: fused_score.get(cid, 0.0) + rel_scores.get(cid, 0.0) * 1e-6 for cid in relevant}
    inside = relevant if in_window is None else {cid for cid in relevant if cid in in_window}
    if window.is_filter and window.span is not None and not inside and relevant:
        # Nothing about the concept in the window read from the question: the nearest dated
        # evidence about it (explicit since/until stay hard filters).
        def nearest(c: Chunk) -> tuple[float, str]:
            """Days outside the window and the date of the chunk's nearest evidence."""
            spans: list[tuple[datetime | None, datetime | None]] = [(t, t) for t in index.row_times(c)] or [
                (c.start, c.end)
            ]
            best = min(spans, key=lambda se: _window_distance(se[0], se[1], window))
            d = _window_distance(best[0], best[1], window)
            return d, (best[0].date().isoformat() if best[0] is not None else "undated")

        near = sorted(
            (index.chunk(cid) for cid in relevant),
            key=lambda c: (nearest(c)[0], -score.get(c.chunk_id, 0.0), c.chunk_id),
        )
        d, when = nearest(near[0])
        plan = plan.with_fallback(
            f"no evidence about {plan.concept!r} within {window.phrase or 'the requested period'!r}; "
            f"the nearest dated evidence is shown ({when}, {d:.0f} days outside)"
        )
        ordered = (
            near
            if plan.intent in ("point", "none")
            else order_by_intent(plan, near[: max(k, 20)], score, end_time=index.last_time, ongoing=index.ongoing_ids())
        )
        return _wrap(index, [_hit(c, i, score) for i, c in enumerate(ordered[:k], 1)]), plan
    first = order_by_intent(
        plan,
        [index.chunk(cid) for cid in inside],
        score,
        end_time=window.until or index.last_time,
        ongoing=index.ongoing_ids(),
    )
    out = [_hit(c, i, score) for i, c in enumerate(first[:k], 1)]
    if len(out) < k:  # then the fused ranking's other chunks, in its order
        seen = {c.chunk_id for c in first}
        rest = (i for i, cid in enumerate(fused.ids) if cid not in seen)
        for i in rest:
            if len(out) == k:
                break
            out.append(fused.hit(i, len(out) + 1))
    return _wrap(index, out), plan


def _expand(index: PatientIndex, plan: QuestionPlan, text: str) -> tuple[QuestionPlan, str, str]:
    """Read the plan's concept text against the record's concepts
    (:func:`ragehr.retrieval.concepts.resolve`): the plan records the matches, and the heads of
    the record's names of concepts reached through a vocabulary (``K`` -> ``Potassium`` of
    ``Potassium [Moles/volume] in Blood``: :attr:`Resolution.query_words`) are added to the text
    BM25 sees; the dense retriever gets the whole names (:attr:`Resolution.expansion`: an
    embedding of a longer text costs nothing more, and the names' words help it). Returns the
    plan and the BM25 and dense texts."""
    from dataclasses import replace

    res = resolve(plan.concept, index.lexicon())
    if not res.matches:
        return plan, text, text
    extra = res.query_words
    plan = replace(plan, concepts=res.matches, expansion=extra)
    full = res.expansion
    return plan, (f"{text} {extra}" if extra else text), (f"{text} {full}" if full else text)


_ANCHOR_KINDS = (EventKind.CONDITION, EventKind.PROCEDURE, EventKind.MEDICATION, EventKind.ENCOUNTER)


def _anchor_on_event(index: PatientIndex, plan: QuestionPlan) -> QuestionPlan:
    """Resolve "since her stroke" / "before starting metformin": the first date of a
    condition, procedure, medication or encounter about those words (BM25, at least half the
    best score) becomes the window's start (or end). Left as is when nothing matches."""
    from dataclasses import replace

    from ragehr.retrieval.timefilter import day_end, day_start

    direction, words = plan.event_anchor  # type: ignore[misc]
    # "since her MI", "before starting Coumadin": the record's own names of what they mean
    extra = resolve(words, index.lexicon()).query_words
    raw = index.bm25.score_all(f"{words} {extra}" if extra else words)
    scores = {
        cid: float(raw[i])
        for i, cid in enumerate(index.bm25.ids)
        if raw[i] > 0 and index.chunk(cid).kind in _ANCHOR_KINDS and index.chunk(cid).start is not None
    }
    about = relevant_ids(scores, 0.5)
    if not about:
        return plan
    first = min((index.chunk(cid) for cid in about), key=lambda c: (c.start, c.chunk_id))
    d = first.start.date()  # type: ignore[union-attr]
    phrase = f"{direction} {words} ({d.isoformat()})"
    if direction == "since":
        window = TimeWindow(since=day_start(d), phrase=phrase, calendar=True, span=(0, 0))
    else:
        window = TimeWindow(until=day_end(d), phrase=phrase, calendar=True, span=(0, 0))
    intent = "series" if plan.intent == "none" and direction == "since" else plan.intent
    return replace(plan, window=window, intent=intent)


def anchor_plan(index: PatientIndex, plan: QuestionPlan) -> QuestionPlan:
    """``plan`` with its event-anchored window ("since her stroke") resolved against the
    record, as :func:`search` resolves it (computed answers read the same window)."""
    return _anchor_on_event(index, plan) if plan.event_anchor is not None else plan


def _hit(c: Chunk, rank: int, score: dict[str, float]) -> Hit:
    sc = float(score.get(c.chunk_id, 0.0))
    return Hit.model_construct(chunk_id=c.chunk_id, rank=rank, score=sc, components={"about": sc})


def _wrap(index: PatientIndex, hits: Sequence[Hit]) -> list[RetrievedChunk]:
    # built from validated parts: no need to validate them again on every query
    return [RetrievedChunk.model_construct(hit=h, chunk=index.chunk(h.chunk_id)) for h in hits]


def dense_query_text(embedder: object, text: str) -> str:
    """What the dense side embeds for ``text``: its content words (:func:`concept_text`: no
    question words, no generic "patient", "result", "test", "value") for an embedder that
    averages word vectors (``query_content_words``: the static model), where those words would
    pull the query towards every chunk; ``text`` itself for a transformer, which reads them in
    context. BM25 always scores ``text``."""
    return concept_text(text) if getattr(embedder, "query_content_words", False) else text


@dataclass(frozen=True)
class _Fused:
    """A fused ranking as the query path holds it: chunk ids and fused scores, best first,
    and each retriever's raw scores; a :class:`Hit` is built only for what is returned."""

    ids: list[str]
    scores: list[float]
    runs: dict[str, dict[str, float]]
    """Retriever name -> chunk id -> that retriever's raw score (names in sorted order)."""

    def hit(self, i: int, rank: int) -> Hit:
        """The ``i``-th chunk of the ranking as a hit at ``rank``."""
        cid = self.ids[i]
        components = {name: run[cid] for name, run in self.runs.items() if cid in run}
        return Hit.model_construct(chunk_id=cid, rank=rank, score=self.scores[i], components=components)

    def hits(self, k: int) -> list[Hit]:
        return [self.hit(i, i + 1) for i in range(min(k, len(self.ids)))]


_NOTHING = _Fused([], [], {})


def _dense_rows(index: PatientIndex, dense: Any) -> np.ndarray | None:
    """Dense row -> BM25 row, when the two sides list the chunks in different orders (``None``
    when they agree, as every index ragehr builds does); made once per opened index."""
    key = "dense-to-bm25-rows"
    if key not in index.memo:
        b_ids, d_ids = index.bm25.ids, dense.ids
        if tuple(b_ids) == tuple(d_ids):
            index.memo[key] = None
        else:
            pos = {cid: i for i, cid in enumerate(b_ids)}
            missing = [cid for cid in d_ids if cid not in pos]
            if missing or len(d_ids) != len(b_ids):
                raise StaleIndexError(
                    f"index of {index.patient_id!r}: its BM25 and dense sides hold different chunks; "
                    f"{reindex_hint(index.stored.manifest, index.patient_id)}"
                )
            index.memo[key] = np.array([pos[cid] for cid in d_ids], dtype=np.int64)
    return index.memo[key]


def _fused(
    index: PatientIndex,
    text: str,
    retriever: str,
    config: RetrievalConfig,
    n: int,
    allowed: IdFilter | None,
    *,
    dense_text: str | None = None,
) -> _Fused:
    """The retrievers' runs for ``text`` (the dense one for ``dense_text`` when given) under
    ``allowed``, fused (one run: as is). The runs stay arrays of rows in the BM25 side's order
    until the fused ranking is read out (:func:`ragehr.retrieval.fusion.fuse_rows`: the same
    scores and order as :func:`~ragehr.retrieval.fusion.weighted` and ``rrf``)."""
    if allowed is not None and not allowed.mask.any():
        return _NOTHING
    bm25 = index.bm25
    mask = None if allowed is None else allowed.mask  # over the BM25 side's rows
    runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if retriever in ("hybrid", "bm25"):
        runs["bm25"] = bm25.search_rows(text, n, allowed=mask)
    if retriever in ("hybrid", "dense"):
        if index.dense is None or index.embedder is None:
            raise ConfigError("this index was opened without its dense side; open it with need_dense=True")
        qv = index.embedder.embed([dense_query_text(index.embedder, dense_text or text)])[0]
        to_bm25 = _dense_rows(index, index.dense)
        if to_bm25 is None:
            runs["dense"] = index.dense.search_rows(qv, n, allowed=mask)
        else:
            rows, scores = index.dense.search_rows(qv, n, allowed=None if mask is None else mask[to_bm25])
            runs["dense"] = (to_bm25[rows], scores)
    ids = bm25.ids
    raw = {
        name: dict(zip([ids[r] for r in rows.tolist()], scores.tolist()))
        for name, (rows, scores) in sorted(runs.items())
    }
    if len(runs) == 1:
        [(name, (rows, scores))] = runs.items()
        return _Fused([ids[r] for r in rows.tolist()], scores.tolist(), raw)
    weights = {name: config.weights.get(name, 1.0) for name in runs}
    if "dense" in weights:  # the embedder's own share of the dense side (static: 0.75; others: 1)
        weights["dense"] *= float(getattr(index.embedder, "dense_weight", 1.0))
    method: Literal["weighted", "rrf"] = "rrf" if config.fusion == "rrf" else "weighted"
    rows, scores = fuse_rows(runs, bm25.id_rank, method=method, weights=weights, k=config.rrf_k)
    return _Fused([ids[r] for r in rows.tolist()], scores.tolist(), raw)
