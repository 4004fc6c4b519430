"""Confidence intervals and paired comparisons for per-item evaluation scores.

Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) over items: resample item indices with
replacement, recompute the statistic, read the interval off the quantiles of the resampled
statistics. Randomness comes only from ``numpy.random.default_rng(seed)``, so a result is a
function of (values, n_resamples, alpha, seed). Missing values (``None`` or NaN) are dropped
before resampling (for paired data, the whole pair).

This module does not correct for multiple comparisons, and does not compute BCa or studentised
intervals; with few items (say under 30) percentile intervals are too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_diff"]

_NAN3 = (math.nan, math.nan, math.nan)


def _present(v: Any) -> TypeGuard[float]:
    return v is not None and not (isinstance(v, (float, np.floating)) and math.isnan(v))


def _check(n_resamples: int, alpha: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    values: Sequence[float | None],
    *,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Callable[[np.ndarray], Any] = np.mean,
) -> tuple[float, float, float]:
    """``(point, low, high)``: ``statistic`` of the values and its ``1 - alpha`` percentile
    bootstrap interval.

    ``None`` and NaN values are dropped first; no values left gives ``(nan, nan, nan)``.
    Each of ``n_resamples`` resamples draws ``n`` indices uniformly with replacement (one
    ``rng.integers(0, n, size=(n_resamples, n))`` draw per call, in blocks to bound memory);
    ``low``/``high`` are the ``alpha/2`` and ``1 - alpha/2`` quantiles (numpy's default linear
    interpolation) of the resampled statistics. ``statistic`` is called on a 1-d float array and
    must return a number. A constant sample gives a degenerate interval at the constant."""
    _check(n_resamples, alpha)
    x = np.asarray([float(v) for v in values if _present(v)], dtype=np.float64)
    if x.size == 0:
        return _NAN3
    point = float(statistic(x))
    rng = np.random.default_rng(seed)
    n = x.size
    stats = np.empty(n_resamples, dtype=np.float64)
    block = max(1, min(n_resamples, 4_000_000 // n))
    done = 0
    while done < n_resamples:
        m = min(block, n_resamples - done)
        idx = rng.integers(0, n, size=(m, n))
        samples = x[idx]
        for i in range(m):
            stats[done + i] = float(statistic(samples[i]))
        done += m
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def paired_bootstrap_diff(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """``(mean_diff, low, high, p_value)`` for paired per-item scores of two conditions.

    ``a[i]`` and ``b[i]`` are the same item under conditions A and B; a pair with a missing
    (``None``/NaN) side is dropped. ``mean_diff = mean(a - b)``. Item indices are resampled
    jointly (so each resample keeps pairs together) and the mean difference recomputed;
    ``low``/``high`` are its ``alpha/2`` and ``1 - alpha/2`` percentiles.

    ``p_value`` is a two-sided bootstrap p: twice the share of resampled mean differences on
    the other side of 0 from the observed one (counting those equal to 0), capped at 1.
    Concretely ``min(1, 2 * P*(d* <= 0))`` when ``mean_diff > 0``, ``min(1, 2 * P*(d* >= 0))``
    when it is negative, and 1.0 when it is exactly 0 (identical inputs give 1.0). It is 0.0
    when no resample crosses 0, which means ``p < 2 / n_resamples``, not ``p = 0``; report it
    as such.

    Unequal lengths raise ``ValueError``; no complete pair gives all NaN."""
    _check(n_resamples, alpha)
    if len(a) != len(b):
        raise ValueError(f"paired values must have equal lengths, got {len(a)} and {len(b)}")
    d = np.asarray(
        [float(x) - float(y) for x, y in zip(a, b) if _present(x) and _present(y)],
        dtype=np.float64,
    )
    if d.size == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    mean_diff = float(d.mean())
    rng = np.random.default_rng(seed)
    n = d.size
    diffs = np.empty(n_resamples, dtype=np.float64)
    block = max(1, min(n_resamples, 4_000_000 // n))
    done = 0
    while done < n_resamples:
        m = min(block, n_resamples - done)
        idx = rng.integers(0, n, size=(m, n))
        diffs[done : done + m] = d[idx].mean(axis=1)
        done += m
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    if mean_diff > 0:
        other = float(np.mean(diffs <= 0))
    elif mean_diff < 0:
        other = float(np.mean(diffs >= 0))
    else:
        other = 1.0
    p = min(1.0, 2.0 * other)
    return mean_diff, float(low), float(high), p
