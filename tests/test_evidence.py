"""Verdicts decided by intervals, on cases with known answers: a clear win, a clear loss, and noise."""

import numpy as np
import pytest

from edgetune import evidence


def _scores(p, items, seeds=3, seed=0):
    """(seeds, items) 0/1 scores with success probability p per item."""
    return (np.random.default_rng(seed).random((seeds, items)) < p).astype(float)


def test_a_clear_win_holds_a_clear_loss_is_refuted_and_noise_is_inconclusive():
    strong, weak = _scores(0.8, 400, seed=1), _scores(0.4, 400, seed=2)
    win = evidence.paired_difference([strong], [weak])
    assert win.low > 0.3 and evidence.verdict(win, 0.0) == "holds"
    loss = evidence.paired_difference([weak], [strong])
    assert evidence.verdict(loss, 0.0) == "refuted"
    same_a, same_b = _scores(0.5, 60, seed=3), _scores(0.5, 60, seed=4)
    noise = evidence.paired_difference([same_a], [same_b])
    assert evidence.verdict(noise, 0.0) == "inconclusive" and noise.low < 0 < noise.high
    assert noise.resolution > 0.05  # 60 items cannot resolve a 5-point difference


def test_more_items_narrow_the_interval_and_the_seed_fixes_it():
    small = evidence.mean([_scores(0.6, 50)])
    large = evidence.mean([_scores(0.6, 2_000)])
    assert large.resolution < small.resolution / 4
    assert evidence.mean([_scores(0.6, 50)]) == small  # a fixed random state: the same interval every time
    assert (small.items, small.seeds) == (50, 3)


def test_tasks_are_strata_weighed_alike():
    easy, hard = np.ones(10), np.zeros(1_000)
    est = evidence.mean([easy, hard])
    assert est.value == pytest.approx(0.5) and est.items == 1_010  # the mean of task means, not of all items
    assert evidence.mean([np.full(5, 0.7), np.full(9, 0.7)]) == evidence.Estimate(0.7, 0.7, 0.7, 14, 1)


def test_probability_of_improvement_counts_ties_as_half():
    a = np.array([1.0, 1.0, 0.0, 0.5])
    b = np.array([0.0, 1.0, 1.0, 0.5])
    est = evidence.probability_of_improvement([a], [b])
    assert est.value == pytest.approx((1 + 0.5 + 0 + 0.5) / 4) and est.low <= est.value <= est.high


def test_within_a_reported_number():
    tight = evidence.Estimate(0.81, 0.80, 0.82, 1_000, 3)
    assert evidence.within(tight, 0.81, 0.02) == "holds"
    assert evidence.within(tight, 0.70, 0.02) == "refuted"
    assert evidence.within(evidence.Estimate(0.8, 0.7, 0.9, 50, 1), 0.81, 0.02) == "inconclusive"
    assert evidence.verdict(tight, 0.9, higher_is_claimed=False) == "holds"  # "below 0.9"


def test_bad_scores_are_named():
    with pytest.raises(ValueError, match="at least 2 items"):
        evidence.mean([np.ones(1)])
    with pytest.raises(ValueError, match="finite"):
        evidence.mean([np.array([0.1, np.nan])])
    with pytest.raises(ValueError, match="same tasks"):
        evidence.paired_difference([np.ones(3)], [np.ones(3), np.ones(3)])
    with pytest.raises(ValueError, match="same shape"):
        evidence.paired_difference([np.ones(3)], [np.ones(4)])


def test_a_spread_over_seeds_has_a_chi_square_interval():
    from scipy import stats

    three = evidence.spread([48.0, 50.0, 51.5])
    s = np.std([48.0, 50.0, 51.5], ddof=1)
    assert three.value == pytest.approx(s) and three.seeds == 3
    assert three.high == pytest.approx(s * np.sqrt(2 / stats.chi2.ppf(0.025, 2)))  # ≈ 6.3 × s
    assert evidence.verdict(three, 0.4, higher_is_claimed=False) == "refuted"  # even its low end is above 0.4
    still = evidence.spread([50.0] * 3)
    assert (still.value, still.high) == (0.0, 0.0) and evidence.verdict(still, 0.4, higher_is_claimed=False) == "holds"
    close = evidence.spread([50.0, 50.3, 49.8])  # small, but three seeds cannot show it is below 0.4
    assert close.low < 0.4 < close.high and evidence.verdict(close, 0.4, higher_is_claimed=False) == "inconclusive"
    with pytest.raises(ValueError, match="at least 2 finite values"):
        evidence.spread([1.0])
