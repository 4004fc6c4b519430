"""Agreement between a metric and human ratings of the same items (Kendall's tau-b)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["kendall_tau"]


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def kendall_tau(metric_values: Sequence[float | None], human_ratings: Sequence[float | None]) -> tuple[float, float]:
    """Kendall's tau-b between a metric and human ratings of the same items, with its two-sided
    p-value, from ``scipy.stats.kendalltau`` (``variant="b"``, which corrects for ties on
    either side: ``(C - D) / sqrt((n0 - n1)(n0 - n2))``). Pairs where either value is ``None``
    or NaN are dropped first. Fewer than two pairs, or a constant side, give ``(nan, nan)``.
    Imports scipy."""
    if len(metric_values) != len(human_ratings):
        raise ValueError(f"{len(metric_values)} metric values but {len(human_ratings)} ratings")
    pairs = [
        (float(m), float(h))
        for m, h in zip(metric_values, human_ratings)
        if m is not None and h is not None and not _is_missing(m) and not _is_missing(h)
    ]
    if len(pairs) < 2:
        return math.nan, math.nan
    from scipy.stats import kendalltau

    x, y = zip(*pairs)
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    res = kendalltau(x, y, variant="b")
    return float(res.statistic), float(res.pvalue)
