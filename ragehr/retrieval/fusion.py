"""Fusion of ranked runs into one ranking: pure functions over :class:`ScoredId` lists.

What it does: :func:`rrf` (reciprocal rank fusion, Cormack, Clarke and Buettcher, SIGIR 2009)
and :func:`weighted` (weighted sum of per-run min-max normalised scores). Both take runs by
name, each already sorted best first, and return :class:`Hit` records carrying each run's raw
score in ``components``. Results are deterministic: runs are visited in name order (so the
order a mapping lists them in never matters), the final order is ``(-fused score,
chunk_id)``, and a chunk id repeated within a run counts once, at its first (best) place.
Documents are identified by chunk id only, never by text, so two identical lines from
different dates stay two hits.

:func:`fuse_rows` is the same two fusions over runs given as arrays of row numbers in one shared
row space (what the query path holds after BM25 and the dense scan): identical scores and
order (a test checks it against :func:`weighted` and :func:`rrf` on random runs), without a
record per candidate.

What it does not do: retrieve, cut to a top ``k`` (slice the result), re-sort or mutate the
runs it is given, or call anything outside this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from ragehr.types.retrieval import Hit, ScoredId

Normalize = Literal["minmax", "none"]


def rrf(
    runs: Mapping[str, Sequence[ScoredId]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[Hit]:
    """Reciprocal rank fusion: ``score(d) = sum_r w_r / (k + rank_r(d))``.

    ``rank_r(d)`` is d's 1-based position in run r after de-duplication (a later repeat of a
    chunk id is dropped and does not take a rank). A run that did not return d adds nothing.
    ``weights`` default to 1.0 per run; a weight for a run not in ``runs`` is an error."""
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    w = _weights(runs, weights)
    fused: dict[str, float] = {}
    components: dict[str, dict[str, float]] = {}
    for name in sorted(runs):
        for rank, hit in enumerate(_dedup(runs[name]), start=1):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + w[name] / (k + rank)
            components.setdefault(hit.chunk_id, {})[name] = hit.score
    return _ranked(fused, components)


def weighted(
    runs: Mapping[str, Sequence[ScoredId]],
    weights: Mapping[str, float] | None = None,
    normalize: Normalize = "minmax",
) -> list[Hit]:
    """Weighted score fusion: ``score(d) = sum_r w_r * norm_r(score_r(d))``.

    With ``normalize="minmax"`` each run's scores map to ``(s - min) / (max - min)`` over that
    run (after de-duplication); a run whose scores are all equal maps each of its documents
    to 1.0. ``"none"`` uses raw scores. A run that did not return d adds 0. ``weights``
    default to 1.0 per run; scores must be finite."""
    if normalize not in ("minmax", "none"):
        raise ValueError(f"normalize must be 'minmax' or 'none', got {normalize!r}")
    w = _weights(runs, weights)
    fused: dict[str, float] = {}
    components: dict[str, dict[str, float]] = {}
    for name in sorted(runs):
        run = _dedup(runs[name])
        raw = [hit.score for hit in run]
        if not all(math.isfinite(s) for s in raw):
            raise ValueError(f"run {name!r} has a non-finite score")
        norm = _minmax(raw) if normalize == "minmax" else raw
        for hit, s in zip(run, norm, strict=True):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + w[name] * s
            components.setdefault(hit.chunk_id, {})[name] = hit.score
    return _ranked(fused, components)


def fuse_rows(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tie_rank: np.ndarray,
    *,
    method: Literal["weighted", "rrf"] = "weighted",
    weights: Mapping[str, float] | None = None,
    normalize: Normalize = "minmax",
    k: int = 60,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`weighted` (or :func:`rrf`) over runs of ``(rows, scores)`` arrays, each best
    first, rows being positions in one shared list of chunk ids; ``tie_rank[row]`` is that
    row's place in the sorted chunk ids. Returns the fused rows and their fused scores, best
    first, ties by chunk id: the same numbers and order as the record-based functions, whose
    arithmetic it repeats operation for operation (runs in name order, a repeated row counts
    at its first place)."""
    if method not in ("weighted", "rrf"):
        raise ValueError(f"method must be 'weighted' or 'rrf', got {method!r}")
    if method == "weighted" and normalize not in ("minmax", "none"):
        raise ValueError(f"normalize must be 'minmax' or 'none', got {normalize!r}")
    if method == "rrf" and k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    w = _weights(runs, weights)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for name in sorted(runs):
        rows = np.asarray(runs[name][0], dtype=np.int64)
        raw = np.asarray(runs[name][1], dtype=np.float64)
        if rows.shape != raw.shape or rows.ndim != 1:
            raise ValueError(f"run {name!r}: rows and scores must be 1-D arrays of one length")
        if rows.size:
            _, first = np.unique(rows, return_index=True)
            if first.size < rows.size:  # a repeated row counts once, at its first place
                keep = np.sort(first)
                rows, raw = rows[keep], raw[keep]
        if method == "rrf":
            part = w[name] / (k + np.arange(1, rows.size + 1, dtype=np.float64))
        else:
            if not np.isfinite(raw).all():
                raise ValueError(f"run {name!r} has a non-finite score")
            part = w[name] * (_minmax_array(raw) if normalize == "minmax" else raw)
        parts.append((rows, part))
    if not parts or not sum(r.size for r, _ in parts):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    every = np.unique(np.concatenate([r for r, _ in parts]))
    fused = np.zeros(every.size, dtype=np.float64)
    for rows, part in parts:
        # 0.0 + a, then + b, in run order: the same float sums the dict-based fusions make
        fused[np.searchsorted(every, rows)] += part
    order = np.lexsort((tie_rank[every], -fused))
    return every[order], fused[order]


def _minmax_array(scores: np.ndarray) -> np.ndarray:
    """:func:`_minmax` over an array, with the same float operations."""
    if not scores.size:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    if hi == lo:
        return np.ones_like(scores)
    span = hi - lo
    if math.isinf(span):
        return (scores / 2 - lo / 2) / (hi / 2 - lo / 2)
    return (scores - lo) / span


def _weights(runs: Mapping[str, object], weights: Mapping[str, float] | None) -> dict[str, float]:
    given = dict(weights or {})
    unknown = sorted(set(given) - set(runs))
    if unknown:
        raise ValueError(f"weights name runs that are not given: {unknown}")
    out = {name: float(given.get(name, 1.0)) for name in runs}
    bad = sorted(n for n, v in out.items() if not (math.isfinite(v) and v >= 0))
    if bad:
        raise ValueError(f"weights must be finite and >= 0: {bad}")
    return out


def _dedup(run: Sequence[ScoredId]) -> list[ScoredId]:
    """The run with later repeats of a chunk id dropped (first, best, occurrence kept)."""
    seen: set[str] = set()
    out: list[ScoredId] = []
    for hit in run:
        if hit.chunk_id not in seen:
            seen.add(hit.chunk_id)
            out.append(hit)
    return out


def _minmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0] * len(scores)
    span = hi - lo
    if math.isinf(span):  # e.g. -1e308 and 1e308: halve first so the span stays finite
        return [(s / 2 - lo / 2) / (hi / 2 - lo / 2) for s in scores]
    return [(s - lo) / span for s in scores]


def _ranked(fused: dict[str, float], components: dict[str, dict[str, float]]) -> list[Hit]:
    order = sorted(fused, key=lambda cid: (-fused[cid], cid))
    # the fields are built here from checked floats and ids: skip pydantic's validation, which
    # cost more than the fusion itself on a query's 200 candidates
    return [
        Hit.model_construct(chunk_id=cid, rank=i, score=float(fused[cid]), components=components[cid])
        for i, cid in enumerate(order, start=1)
    ]
