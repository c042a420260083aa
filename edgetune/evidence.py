"""Estimates with uncertainty, and verdicts decided by the interval rather than by a point estimate.

Every estimate is a statistic of per-item scores (test items, each averaged over the seeds that scored it), with a
95 % bootstrap confidence interval from `scipy.stats.bootstrap` under a fixed random state. Scores that span several
tasks are passed as one sample per task: scipy resamples each sample on its own, so the bootstrap is stratified by
task, and the statistic is the mean of the per-task statistics (every task weighs the same, as the papers' averages).

A verdict compares the interval with the claim's threshold, set before the measurement:

* **holds**: the whole interval lies on the claimed side of the threshold;
* **refuted**: the whole interval lies on the other side;
* **inconclusive**: the interval straddles it; the half-width says how large an effect the measurement could have
  resolved (`Estimate.resolution`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 4_000
SEED = 0
VERDICTS = ("holds", "refuted", "inconclusive")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    items: int  # test items, over every task
    seeds: int
    confidence: float = CONFIDENCE

    @property
    def resolution(self) -> float:
        """Half the interval's width: an effect smaller than this cannot be told from noise at this sample size."""
        return (self.high - self.low) / 2


def _per_item(scores) -> np.ndarray:
    """(seeds, items) or (items,) → per-item means over seeds."""
    array = np.asarray(scores, dtype=float)
    if array.ndim not in (1, 2) or array.shape[-1] < 2:
        raise ValueError(f"scores must be (items,) or (seeds, items) with at least 2 items, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite")
    return array.mean(axis=0) if array.ndim == 2 else array


def _seeds(scores) -> int:
    array = np.asarray(scores)
    return array.shape[0] if array.ndim == 2 else 1


def _estimate(samples: list[np.ndarray], statistic, seeds: int, confidence: float, seed: int, combine=None) -> Estimate:
    def stratified(*parts, axis=-1):
        per_sample = [statistic(p, axis=axis) for p in parts]
        return combine(per_sample) if combine else np.mean(per_sample, axis=0)

    value = float(stratified(*samples))
    if all(np.ptp(s) == 0 for s in samples):  # no spread: the interval is the point
        return Estimate(value, value, value, sum(len(s) for s in samples), seeds, confidence)
    result = stats.bootstrap(
        tuple(samples),
        stratified,
        confidence_level=confidence,
        n_resamples=RESAMPLES,
        method="percentile",
        vectorized=True,
        batch=500,  # resamples at a time: bounded memory on large test sets
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Estimate(value, float(low), float(high), sum(len(s) for s in samples), seeds, confidence)


def mean(tasks: Sequence, *, confidence: float = CONFIDENCE, seed: int = SEED) -> Estimate:
    """The mean score over items (per task, then over tasks) with its interval. `tasks`: one score array per task,
    each (items,) or (seeds, items)."""
    samples = [_per_item(t) for t in tasks]
    return _estimate(samples, np.mean, min(_seeds(t) for t in tasks), confidence, seed)


def difference(a: Sequence, b: Sequence, *, confidence: float = CONFIDENCE, seed: int = SEED) -> Estimate:
    """Mean score of group A minus that of group B, each the mean over its own tasks, where A and B were scored on
    different items (e.g. a clear test set against shifted domains): every task resampled on its own."""
    if not a or not b:
        raise ValueError(f"a difference needs tasks on both sides, got {len(a)} and {len(b)}")
    samples = [_per_item(t) for t in (*a, *b)]
    k = len(a)

    def combine(per_sample):
        return np.mean(per_sample[:k], axis=0) - np.mean(per_sample[k:], axis=0)

    seeds = min(_seeds(t) for t in (*a, *b))
    return _estimate(samples, np.mean, seeds, confidence, seed, combine)


def recorded_hits(table, what: str):
    """Which test items a measured table's models got right, as its measurement kept them (`attrs["test_correct"]`);
    a clear error naming the table when it kept none."""
    kept = table.attrs.get("test_correct")
    if not kept:
        raise ValueError(f"the {what} table has no per-item scores (attrs['test_correct']): rerun its measurement")
    return kept


def over_items(n: int, statistic, *, resamples: int = RESAMPLES, confidence=CONFIDENCE, seed=SEED) -> Estimate:
    """`statistic(indices)` of a whole procedure run on the items at `indices` (every item: `np.arange(n)`), with a
    95 % interval from re-running it on resampled items: for estimates that are not a mean of per-item scores (a
    fitted surface and the choice made on it, say)."""
    if n < 2:
        raise ValueError(f"resampling items needs at least 2 items, got {n}")
    value = float(statistic(np.arange(n)))
    low, high = _percentiles(
        np.arange(n), lambda index: statistic(np.asarray(index, dtype=int)), resamples, confidence, seed
    )
    return Estimate(value, low, high, n, seeds=1, confidence=confidence)


def _percentiles(units: np.ndarray, statistic, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """The percentile interval of `statistic` over bootstrap resamples of `units` (scipy's resampling), leaving out
    resamples where the statistic is undefined (an R² of points that do not vary): NaN only if most of them are."""
    with warnings.catch_warnings():  # an undefined resample would make scipy warn about BCa, which is not used here
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (units,),
            lambda index, axis=-1: statistic(index),
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            vectorized=False,
            rng=np.random.default_rng(seed),
        )
    values = np.asarray(result.bootstrap_distribution, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < values.size / 2:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def clustered(clusters: Sequence[tuple[np.ndarray, ...]], statistic, *, confidence=CONFIDENCE, seed=SEED) -> Estimate:
    """`statistic(*arrays)` over every point, with a 95 % interval from resampling whole clusters with replacement
    (the points of a cluster — a simulated run's learning curve, say — are not independent of each other).
    `clusters`: per cluster, a tuple of equal-length arrays (e.g. measured, predicted)."""
    if len(clusters) < 2:
        raise ValueError(f"a clustered interval needs at least 2 clusters, got {len(clusters)}")

    def pooled(index: np.ndarray):
        picked = [clusters[int(i)] for i in index]
        return statistic(*(np.concatenate(parts) for parts in zip(*picked, strict=True)))

    whole = over_items(len(clusters), pooled, confidence=confidence, seed=seed)  # the clusters are the items
    return dataclasses.replace(whole, items=sum(len(c[0]) for c in clusters))


def spread(values: Sequence[float], *, confidence: float = CONFIDENCE) -> Estimate:
    """The sample standard deviation (ddof 1) of a few values (a score over seeds) with its chi-square interval,
    which assumes the values are normally distributed: with 3 seeds the upper end is about 6× the estimate, so a
    spread is only shown small by many seeds or none at all. A bootstrap cannot do this with three values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"a spread needs at least 2 finite values, got {x.tolist()}")
    s, dof = float(x.std(ddof=1)), x.size - 1
    tail = (1 - confidence) / 2
    low = s * np.sqrt(dof / stats.chi2.ppf(1 - tail, dof))
    high = s * np.sqrt(dof / stats.chi2.ppf(tail, dof))
    return Estimate(s, float(low), float(high), items=x.size, seeds=x.size, confidence=confidence)


def exact(value: float) -> Estimate:
    """A quantity with no sampling noise (a count of bytes or parameters, a modelled curve): its interval is the
    point, and no items are resampled."""
    return Estimate(float(value), float(value), float(value), items=0, seeds=1)


def paired_difference(a: Sequence, b: Sequence, **kw) -> Estimate:
    """Mean of A − B over the same items (per task, then over tasks): a method comparison with its interval."""
    return mean([np.asarray(x, dtype=float) - np.asarray(y, dtype=float) for x, y in _paired(a, b)], **kw)


def probability_of_improvement(a: Sequence, b: Sequence, *, confidence: float = CONFIDENCE, seed: int = SEED):
    """P(A > B) on a random item (ties count one half), per task then averaged, with its interval."""
    wins = []
    for x, y in _paired(a, b):
        x, y = _per_item(x), _per_item(y)
        wins.append((x > y) + 0.5 * (x == y))
    return _estimate(wins, np.mean, min(_seeds(t) for t in a), confidence, seed)


def _paired(a: Sequence, b: Sequence):
    if len(a) != len(b):
        raise ValueError(f"A has {len(a)} tasks and B {len(b)}; a paired comparison needs the same tasks")
    for x, y in zip(a, b, strict=True):
        if np.shape(x) != np.shape(y):
            raise ValueError(f"paired scores must have the same shape, got {np.shape(x)} and {np.shape(y)}")
        yield x, y


def verdict(estimate: Estimate, threshold: float, *, higher_is_claimed: bool = True, strict: bool = False) -> str:
    """holds / refuted / inconclusive for the claim "the quantity is at least `threshold`" (at most, with
    `higher_is_claimed=False`; strictly above or below, with `strict`), decided by the whole interval. An interval
    that touches the threshold decides by the claim's own inequality: a sure tie (a zero-width interval at 0) does
    not "beat" (strict: refuted) but is "at least" (holds)."""
    low, high = (estimate.low, estimate.high) if higher_is_claimed else (-estimate.high, -estimate.low)
    t = threshold if higher_is_claimed else -threshold
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if low > t or (not strict and low >= t):
        return "holds"
    if high < t or (strict and high <= t):
        return "refuted"
    return "inconclusive"


def decide(
    estimate: Estimate, threshold: float, *, what: str, unit: str, over: str, digits: int = 1, strict: bool = False
) -> tuple[bool | None, str]:
    """A ledger claim "`what` is at least `threshold`" (strictly above it, with `strict`): True (holds), False
    (refuted) or None (inconclusive), and a note giving the estimate, its interval, what it was resampled over and,
    when inconclusive, the resolution."""
    decided = verdict(estimate, threshold, strict=strict)
    seeds = f"{estimate.seeds} seed{'s' if estimate.seeds != 1 else ''}"
    unit = f" {unit}" if unit else ""
    d = digits
    note = (
        f"{what}: {estimate.value:+.{d}f}{unit}, 95 % bootstrap interval [{estimate.low:+.{d}f}, "
        f"{estimate.high:+.{d}f}] over {estimate.items} {over} ({seeds}); {decided}"
    )
    if decided == "inconclusive":
        line = "0" if threshold == 0 else f"{threshold:+g}"
        note += f": the interval straddles {line} (resolution here ±{estimate.resolution:.{d}f}{unit})"
    return {"holds": True, "refuted": False}.get(decided), note


def within(estimate: Estimate, target: float, tolerance: float) -> str:
    """holds / refuted / inconclusive for the claim "the quantity is `target` ± `tolerance`" (a reproduction of a
    reported number): holds when the interval lies inside the band, refuted when it lies wholly outside."""
    if target - tolerance <= estimate.low and estimate.high <= target + tolerance:
        return "holds"
    if estimate.high < target - tolerance or estimate.low > target + tolerance:
        return "refuted"
    return "inconclusive"
