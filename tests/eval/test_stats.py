"""Bootstrap intervals: degenerate and textbook cases, determinism, missing values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.eval.stats import bootstrap_ci, paired_bootstrap_diff


def test_constant_vector_gives_degenerate_interval() -> None:
    point, low, high = bootstrap_ci([0.7] * 50)
    assert point == pytest.approx(0.7) and low == pytest.approx(0.7) and high == pytest.approx(0.7)


def test_bernoulli_interval_width() -> None:
    # n = 10000 draws of Bernoulli(0.5): the 95% interval of the mean is about
    # 2 * 1.96 * sqrt(0.25 / 10000) = 0.0196 wide
    x = np.random.default_rng(123).integers(0, 2, size=10_000).astype(float)
    point, low, high = bootstrap_ci(x)
    assert point == pytest.approx(x.mean())
    assert low < point < high
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 10_000), rel=0.15)


def test_deterministic_for_a_seed() -> None:
    x = list(np.random.default_rng(1).normal(size=40))
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)
    assert paired_bootstrap_diff(x, x[::-1], seed=3) == paired_bootstrap_diff(x, x[::-1], seed=3)


def test_missing_values_dropped_and_empty() -> None:
    assert bootstrap_ci([1.0, None, float("nan"), 3.0], seed=0)[0] == 2.0
    assert bootstrap_ci([1.0, None, 3.0]) == bootstrap_ci([1.0, 3.0])
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in bootstrap_ci([None, float("nan")]))


def test_other_statistic_and_alpha() -> None:
    x = list(range(101))
    point, low, high = bootstrap_ci(x, statistic=np.median)
    assert point == 50.0 and low <= 50.0 <= high
    _, low90, high90 = bootstrap_ci(x, alpha=0.10)
    _, low95, high95 = bootstrap_ci(x, alpha=0.05)
    assert low95 <= low90 and high90 <= high95  # same seed, same resamples: nested quantiles
    with pytest.raises(ValueError):
        bootstrap_ci(x, alpha=0.0)
    with pytest.raises(ValueError):
        bootstrap_ci(x, n_resamples=0)


def test_paired_identical_is_exactly_zero() -> None:
    a = list(np.random.default_rng(2).random(30))
    assert paired_bootstrap_diff(a, a) == (0.0, 0.0, 0.0, 1.0)


def test_paired_clear_difference() -> None:
    rng = np.random.default_rng(5)
    b = rng.random(200)
    a = b + 0.1 + rng.normal(0, 0.01, size=200)  # A is better on every item
    diff, low, high, p = paired_bootstrap_diff(list(a), list(b))
    assert diff == pytest.approx(float(np.mean(a - b)))
    assert 0.09 < low < diff < high < 0.11
    assert p == 0.0  # no resample crosses 0: p < 1/2000
    diff2, low2, high2, p2 = paired_bootstrap_diff(list(b), list(a))
    assert diff2 == pytest.approx(-diff) and high2 < 0 and p2 == 0.0


def test_paired_drops_incomplete_pairs_and_checks_lengths() -> None:
    full = paired_bootstrap_diff([1.0, 0.0, 1.0], [0.0, 0.0, 1.0])
    assert paired_bootstrap_diff([1.0, 0.0, None, 1.0], [0.0, 0.0, 1.0, float("nan")]) != full
    assert paired_bootstrap_diff([1.0, 0.0, None, 1.0], [0.0, 0.0, 1.0, 1.0]) == full
    assert all(math.isnan(v) for v in paired_bootstrap_diff([None], [1.0]))
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0, 2.0])


def test_paired_p_value_hand_worked() -> None:
    # two items with diffs (+1, 0): a resample of 2 indices has mean 1 (both +1, prob 1/4),
    # 0.5 (prob 1/2) or 0 (both 0, prob 1/4). Observed mean 0.5 > 0, so
    # p = 2 * P*(d* <= 0) ~= 2 * 1/4 = 0.5
    _, _, _, p = paired_bootstrap_diff([1.0, 0.0], [0.0, 0.0], n_resamples=20_000)
    assert p == pytest.approx(0.5, abs=0.03)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30))
def test_interval_contains_point_for_mean(xs: list[float]) -> None:
    point, low, high = bootstrap_ci(xs, n_resamples=200)
    assert low - 1e-9 <= high + 1e-9
    assert min(xs) - 1e-9 <= low and high <= max(xs) + 1e-9
    _, _, _, p = paired_bootstrap_diff(xs, [0.0] * len(xs), n_resamples=200)
    assert 0.0 <= p <= 1.0


def test_breakdown_tables_list_groups_in_order_whatever_arm_comes_first():
    """Evidence-age rows go youngest to oldest and question types a-z, even when the first
    arm (``full``, only on short records) lacks some groups (a run printed '1-3 years' after
    '> 10 years')."""
    from ragehr.eval.report import pivot_markdown

    def row(strategy, budget, age, cat):
        return {
            "condition": f"d|{strategy}|{budget}",
            "dataset": "d",
            "strategy": strategy,
            "budget": budget,
            "retriever": None,
            "backend": "b",
            "order": "chronological",
            "category": cat,
            "evidence_age_days": age,
            "accuracy": 1.0,
            "evidence_recall": 1.0,
            "abstained": 0.0,
        }

    rows = [row("full", None, 10, "z_type"), row("full", None, 5000, "a_type")]
    rows += [
        row("recent", 2048, age, cat)
        for age, cat in ((5000, "m_type"), (500, "a_type"), (10, "z_type"), (200, "b_type"))
    ]
    age = [
        ln.split("|")[1].strip()
        for ln in pivot_markdown(rows, "age", 2048, "accuracy").splitlines()
        if ln.startswith("| ") and "age |" not in ln
    ]
    assert age == ["< 3 months", "3-12 months", "1-3 years", "> 10 years"]
    cats = [
        ln.split("|")[1].strip()
        for ln in pivot_markdown(rows, "category", 2048, "accuracy").splitlines()
        if ln.startswith("| ") and "category |" not in ln
    ]
    assert cats == ["a_type", "b_type", "m_type", "z_type"]
