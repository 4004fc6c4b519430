"""Fusion: hand-worked RRF, weights, and properties (order-independent, pure, ties by id)."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.retrieval.fusion import rrf, weighted
from ragehr.types.retrieval import Hit, ScoredId


def _run(*pairs: tuple[str, float]) -> list[ScoredId]:
    return [ScoredId(chunk_id=c, score=s) for c, s in pairs]


def _ids(hits: list[Hit]) -> list[str]:
    return [h.chunk_id for h in hits]


# ---------------------------------------------------------------- worked examples


def test_rrf_hand_worked() -> None:
    runs = {"bm25": _run(("a", 9.0), ("b", 5.0), ("c", 1.0)), "dense": _run(("c", 0.9), ("a", 0.8))}
    hits = rrf(runs, k=60)
    assert _ids(hits) == ["a", "c", "b"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert hits[1].score == pytest.approx(1 / 63 + 1 / 61)
    assert hits[2].score == pytest.approx(1 / 62)
    assert hits[0].components == {"bm25": 9.0, "dense": 0.8}
    assert hits[2].components == {"bm25": 5.0}


def test_rrf_weights_respected() -> None:
    runs = {"bm25": _run(("a", 9.0), ("b", 5.0)), "dense": _run(("b", 0.9), ("a", 0.8))}
    # equal weights: a and b tie (1/61 + 1/62 each) -> broken by id
    assert _ids(rrf(runs)) == ["a", "b"]
    assert _ids(rrf(runs, weights={"dense": 2.0})) == ["b", "a"]
    assert _ids(rrf(runs, weights={"bm25": 3.0, "dense": 1.0})) == ["a", "b"]
    hits = rrf(runs, weights={"bm25": 0.0})
    assert hits[0].score == pytest.approx(1 / 61) and _ids(hits) == ["b", "a"]


def test_rrf_dedups_by_chunk_id_keeping_first() -> None:
    run = _run(("a", 3.0), ("b", 2.0), ("a", 1.0), ("c", 0.5))
    hits = rrf({"r": run}, k=60)
    assert _ids(hits) == ["a", "b", "c"]
    assert hits[0].components == {"r": 3.0}
    assert hits[2].score == pytest.approx(1 / 63)  # ranks are taken after de-duplication


def test_weighted_hand_worked() -> None:
    runs = {"bm25": _run(("a", 10.0), ("b", 6.0), ("c", 2.0)), "dense": _run(("c", 0.9), ("b", 0.5))}
    # bm25 -> a 1, b .5, c 0 ; dense -> c 1, b 0
    hits = weighted(runs)
    assert {h.chunk_id: h.score for h in hits} == pytest.approx({"a": 1.0, "b": 0.5, "c": 1.0})
    assert _ids(hits) == ["a", "c", "b"]
    hits = weighted(runs, weights={"dense": 2.0})
    assert _ids(hits) == ["c", "a", "b"]
    assert hits[0].score == pytest.approx(2.0)
    assert hits[0].components == {"bm25": 2.0, "dense": 0.9}
    raw = weighted(runs, normalize="none")
    assert {h.chunk_id: h.score for h in raw} == pytest.approx({"a": 10.0, "b": 6.5, "c": 2.9})


def test_weighted_constant_run_normalises_to_one() -> None:
    hits = weighted({"r": _run(("b", 4.0), ("a", 4.0))})
    assert [(h.chunk_id, h.score) for h in hits] == [("a", 1.0), ("b", 1.0)]


def test_empty_inputs() -> None:
    assert rrf({}) == [] and weighted({}) == []
    assert rrf({"a": [], "b": []}) == [] and weighted({"a": []}) == []


def test_bad_arguments() -> None:
    runs = {"bm25": _run(("a", 1.0))}
    with pytest.raises(ValueError):
        rrf(runs, weights={"dnese": 1.0})
    with pytest.raises(ValueError):
        weighted(runs, weights={"bm25": -1.0})
    with pytest.raises(ValueError):
        rrf(runs, k=-1)
    with pytest.raises(ValueError):
        weighted(runs, normalize="zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        weighted({"r": _run(("a", math.nan))})


# ---------------------------------------------------------------- properties

_IDS = st.sampled_from([f"d{i}" for i in range(12)])
_SCORE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def _sorted_run(draw: st.DrawFn) -> list[ScoredId]:
    pairs = draw(st.lists(st.tuples(_IDS, _SCORE), max_size=10))
    pairs.sort(key=lambda p: -p[1])
    return _run(*pairs)


_RUNS = st.dictionaries(st.sampled_from(["bm25", "dense", "splade", "x"]), _sorted_run(), max_size=4)
_FUSERS = [
    pytest.param(lambda runs, w: rrf(runs, weights=w), id="rrf"),
    pytest.param(lambda runs, w: rrf(runs, k=1, weights=w), id="rrf-k1"),
    pytest.param(lambda runs, w: weighted(runs, weights=w), id="weighted"),
    pytest.param(lambda runs, w: weighted(runs, weights=w, normalize="none"), id="weighted-raw"),
]
_WEIGHTS = st.sampled_from([None, "random"])


def _weights_for(runs: dict[str, list[ScoredId]], draw_w: st.DataObject | None) -> dict[str, float] | None:
    if draw_w is None:
        return None
    return {n: draw_w.draw(st.floats(min_value=0, max_value=5)) for n in sorted(runs)}


@pytest.mark.parametrize("fuse", _FUSERS)
@settings(max_examples=100, deadline=None)
@given(runs=_RUNS, data=st.data(), use_w=st.booleans())
def test_independent_of_run_order_and_pure(fuse, runs, data, use_w) -> None:  # type: ignore[no-untyped-def]
    w = _weights_for(runs, data if use_w else None)
    before = copy.deepcopy(runs)
    before_w = copy.deepcopy(w)
    out = fuse(runs, w)
    assert runs == before and w == before_w  # nothing mutated
    shuffled = dict(data.draw(st.permutations(list(runs.items()))))
    w_shuffled = None if w is None else dict(reversed(list(w.items())))
    assert fuse(shuffled, w_shuffled) == out


@pytest.mark.parametrize("fuse", _FUSERS)
@settings(max_examples=100, deadline=None)
@given(runs=_RUNS)
def test_every_id_once_ranked_and_ties_by_id(fuse, runs) -> None:  # type: ignore[no-untyped-def]
    out = fuse(runs, None)
    ids = _ids(out)
    assert len(ids) == len(set(ids))
    assert set(ids) == {h.chunk_id for run in runs.values() for h in run}
    assert [h.rank for h in out] == list(range(1, len(out) + 1))
    assert [(-h.score, h.chunk_id) for h in out] == sorted((-h.score, h.chunk_id) for h in out)
    for h in out:
        assert set(h.components) == {n for n, run in runs.items() if any(x.chunk_id == h.chunk_id for x in run)}
        for n, s in h.components.items():
            assert s == next(x.score for x in runs[n] if x.chunk_id == h.chunk_id)  # first occurrence


@settings(max_examples=100, deadline=None)
@given(run=_sorted_run(), k=st.integers(min_value=0, max_value=100))
def test_rrf_single_run_preserves_order(run: list[ScoredId], k: int) -> None:
    seen: list[str] = []
    for h in run:
        if h.chunk_id not in seen:
            seen.append(h.chunk_id)
    assert _ids(rrf({"only": run}, k=k)) == seen


@settings(max_examples=100, deadline=None)
@given(run=_sorted_run())
def test_weighted_single_run_scores_in_unit_interval(run: list[ScoredId]) -> None:
    out = weighted({"only": run})
    assert all(0.0 <= h.score <= 1.0 for h in out)
    if out:
        assert out[0].score == 1.0


def test_identical_text_different_ids_stay_separate() -> None:
    """De-duplication is by chunk id, never by text (two identical lines from two dates)."""
    hits = rrf({"bm25": _run(("2019-01-01#bp", 2.0), ("2020-01-01#bp", 2.0))})
    assert _ids(hits) == ["2019-01-01#bp", "2020-01-01#bp"]


# ---------------------------------------------------------------- fuse_rows == weighted / rrf

_ROW_IDS = [f"c{i:02d}" for i in range(12)]
_ROW_RUN = st.lists(
    st.tuples(
        st.integers(0, len(_ROW_IDS) - 1),
        st.one_of(st.floats(-5, 5, allow_nan=False), st.sampled_from([0.0, 1.0, 2.5])),
    ),
    max_size=10,
)


def _tie_rank(ids: list[str]):
    import numpy as np

    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    return rank


@settings(max_examples=300, deadline=None)
@given(
    runs=st.dictionaries(st.sampled_from(["bm25", "dense", "x"]), _ROW_RUN, max_size=3),
    wts=st.lists(st.sampled_from([0.0, 0.75, 1.0, 2.0]), min_size=3, max_size=3),
    method=st.sampled_from(["weighted", "rrf"]),
    normalize=st.sampled_from(["minmax", "none"]),
    shuffle=st.randoms(use_true_random=False),
)
def test_fuse_rows_is_the_record_fusion_to_the_bit(runs, wts, method, normalize, shuffle) -> None:
    """The array fusion of the query path gives the same ids, in the same order, with the same
    float scores as the record-based functions it stands in for (repeats, ties, zero weights)."""
    import numpy as np

    from ragehr.retrieval.fusion import fuse_rows

    ids = list(_ROW_IDS)
    shuffle.shuffle(ids)  # row order is not id order: ties must still break by chunk id
    weights = dict(zip(sorted(runs), wts, strict=False))
    record_runs = {name: _run(*[(ids[r], s) for r, s in run]) for name, run in runs.items()}
    row_runs = {
        name: (np.array([r for r, _ in run], dtype=np.int64), np.array([s for _, s in run], dtype=np.float64))
        for name, run in runs.items()
    }
    if method == "rrf":
        want = rrf(record_runs, k=60, weights=weights)
    else:
        want = weighted(record_runs, weights=weights, normalize=normalize)
    rows, scores = fuse_rows(row_runs, _tie_rank(ids), method=method, weights=weights, normalize=normalize, k=60)
    assert [ids[r] for r in rows.tolist()] == _ids(want)
    assert scores.tolist() == [h.score for h in want]  # exactly, not approximately


def test_fuse_rows_adversarial() -> None:
    import numpy as np

    from ragehr.retrieval.fusion import fuse_rows

    rank = _tie_rank(["b", "a", "c"])
    # a span too wide for a float, equal scores, a repeated row at a worse place
    runs = {
        "bm25": (np.array([0, 1, 0]), np.array([1e308, -1e308, 0.0])),
        "dense": (np.array([2, 1]), np.array([0.5, 0.5])),
    }
    rows, scores = fuse_rows(runs, rank)
    want = weighted({"bm25": _run(("b", 1e308), ("a", -1e308), ("b", 0.0)), "dense": _run(("c", 0.5), ("a", 0.5))})
    assert rows.tolist() == [{"b": 0, "a": 1, "c": 2}[h.chunk_id] for h in want]
    assert scores.tolist() == [h.score for h in want]
    with pytest.raises(ValueError, match="non-finite"):
        fuse_rows({"bm25": (np.array([0]), np.array([math.inf]))}, rank)
    with pytest.raises(ValueError, match="weights name runs"):
        fuse_rows({"bm25": (np.array([0]), np.array([1.0]))}, rank, weights={"dense": 1.0})
    with pytest.raises(ValueError, match="one length"):
        fuse_rows({"bm25": (np.array([0, 1]), np.array([1.0]))}, rank)
    with pytest.raises(ValueError, match="method"):
        fuse_rows({}, rank, method="sum")  # type: ignore[arg-type]
    empty_rows, empty_scores = fuse_rows({"bm25": (np.array([], dtype=np.int64), np.array([]))}, rank)
    assert empty_rows.size == 0 and empty_scores.size == 0
