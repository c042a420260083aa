"""Per-window retraining plans of BlockTrainer (Zhang, Han, Liu, Acta Electronica Sinica 2025): which blocks of the
edge model to compress and how many iterations q to retrain, so that the mean predicted accuracy over the window is
highest within a time budget (the retraining window) and a memory budget.

`greedy` is the original's heuristic (`methods/edgeta_online_run/heuristic_opt.py::heuristic_solve`): start with
every block compressed and q = 0, and repeatedly take the action with the best ratio of accuracy gain to time —
uncompress one block, or add `quantum` iterations. `exact` enumerates every block choice and every q and is the
yardstick greedy is measured against.

Departures from the original:
* the original subtracts the time of the loop variable's block, not the chosen block's, after an "uncompress"
  (harmless only when all blocks cost the same); here the budget is recomputed from the plan itself;
* the original has no memory budget (its blocks' parameter counts only feed the law); here an action is allowed only
  if the plan's memory fits `memory_budget`;
* costs are any units (profiled seconds in the original, training FLOPs here) and include a per-iteration base cost
  outside the blocks; the accuracy cap (the original's `up_bound_pred_acc = 0.7`) is optional.
* `exact` is not in the original (which has no DP or ILP); it exists to measure greedy's gap.

`predict` is f(iterations (J,) int array, compressed (P, N) 0/1 array) -> (P, J) accuracies, as
`ScalingLaw.predictor` returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgetune.retrain.law import ScalingLaw

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
TINY = 1e-12  # stands in for a zero time difference between a block's full and compressed forms
TIE = 1e-12  # objective values this close count as equal
MAX_EXACT_BLOCKS = 16


@dataclass(frozen=True)
class BlockCosts:
    """Per-block costs of one training iteration (time) and of holding the block (memory), full vs compressed."""

    time_full: np.ndarray  # (N,)
    time_comp: np.ndarray  # (N,) ≤ time_full
    mem_full: np.ndarray  # (N,) bytes
    mem_comp: np.ndarray  # (N,) bytes ≤ mem_full
    base_time: float = 0.0  # per-iteration cost outside the blocks
    base_mem: float = 0.0

    def __post_init__(self):
        shape = np.shape(self.time_full)
        for name in ("time_full", "time_comp", "mem_full", "mem_comp"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.ndim != 1 or value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}; every per-block cost needs shape {shape} (N,)")
            if (value < 0).any():
                raise ValueError(f"{name} has negative entries; costs must be ≥ 0")
            object.__setattr__(self, name, value)
        for name in ("base_time", "base_mem"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; must be ≥ 0")
        if (self.time_comp > self.time_full).any() or (self.mem_comp > self.mem_full).any():
            raise ValueError("time_comp and mem_comp must not exceed time_full and mem_full (compression saves)")

    @property
    def num_blocks(self) -> int:
        return self.time_full.size

    def iteration_time(self, compressed) -> np.ndarray:
        """Cost of one iteration: compressed (..., N) 0/1 -> (...)."""
        saved = self.time_full - self.time_comp
        return self.base_time + self.time_full.sum() - np.asarray(compressed, dtype=float) @ saved

    def memory(self, compressed) -> np.ndarray:
        """Memory of the plan: compressed (..., N) 0/1 -> (...)."""
        saved = self.mem_full - self.mem_comp
        return self.base_mem + self.mem_full.sum() - np.asarray(compressed, dtype=float) @ saved


@dataclass(frozen=True)
class Plan:
    """A block choice (True = compressed) and an iteration count, with what they cost and score."""

    compressed: tuple[bool, ...]
    iterations: int
    objective: float  # the mean capped predicted accuracy over iterations 0..q
    time: float  # iterations × per-iteration cost
    memory: float


def objective(predict: Predict, compressed, iterations: int, cap: float | None = None) -> float:
    """BlockTrainer's objective: the mean over j = 0..iterations of min(predict(j, compressed), cap)."""
    if iterations < 0:
        raise ValueError(f"iterations={iterations}; must be ≥ 0")
    acc = predict(np.arange(iterations + 1), np.asarray(compressed, dtype=float)[None, :])[0]
    return float(_capped(acc, cap).mean())


def _capped(acc: np.ndarray, cap: float | None) -> np.ndarray:
    return acc if cap is None else np.minimum(acc, cap)


def _max_iterations(iteration_time, time_budget: float) -> np.ndarray:
    """The largest q with q × iteration_time ≤ time_budget, exactly in floating point: (...) -> (...) int."""
    t = np.asarray(iteration_time, dtype=float)
    if (t <= 0).any():
        raise ValueError("a plan's per-iteration time is 0; it must be > 0 for a finite plan (set base_time)")
    q = np.floor(time_budget / t)
    q -= q * t > time_budget  # the division may round up or down by one
    q += (q + 1) * t <= time_budget
    return q.astype(int)


def _plan(predict, costs, compressed, iterations, cap) -> Plan:
    compressed = np.asarray(compressed, dtype=bool)
    return Plan(
        compressed=tuple(bool(c) for c in compressed),
        iterations=int(iterations),
        objective=objective(predict, compressed, iterations, cap),
        time=float(iterations * costs.iteration_time(compressed)),
        memory=float(costs.memory(compressed)),
    )


def _check_budgets(costs: BlockCosts, time_budget: float, memory_budget: float) -> None:
    if time_budget < 0:
        raise ValueError(f"time_budget={time_budget}; must be ≥ 0")
    smallest = float(costs.memory(np.ones(costs.num_blocks)))
    if smallest > memory_budget:
        raise ValueError(
            f"memory_budget={memory_budget} is below the all-compressed plan's memory {smallest}; "
            "no plan fits — raise the memory budget or compress the blocks further"
        )


def _candidate_prefix(predict, costs, compressed, time_budget, cap) -> np.ndarray:
    """Prefix sums of capped accuracy for the plan (row 0) and for it with block i uncompressed (row 1+i):
    (N+1, H+2) with column j+1 = Σ_{0..j}, over the horizon H the plan itself can afford."""
    horizon = int(_max_iterations(costs.iteration_time(compressed), time_budget)) + 1
    candidates = np.repeat(compressed[None, :], costs.num_blocks + 1, axis=0)  # (N+1, N)
    candidates[np.arange(1, costs.num_blocks + 1), np.arange(costs.num_blocks)] = False
    acc = _capped(predict(np.arange(horizon + 1), candidates.astype(float)), cap)  # (N+1, H+1)
    return np.concatenate([np.zeros((acc.shape[0], 1)), np.cumsum(acc, axis=1)], axis=1)


def _scores(prefix, costs, compressed, q, time_budget, memory_budget, quantum) -> np.ndarray:
    """Gain-to-time ratios of the N "uncompress block i" actions and of "add quantum iterations" (last); -inf where
    an action is not allowed."""
    saved_time = costs.time_full - costs.time_comp  # (N,)
    avg = prefix[:, q + 1] / (q + 1)  # (N+1,) mean over 0..q
    uncompress = (avg[1:] - avg[0]) / np.where(saved_time > 0, saved_time, TINY)
    t = float(costs.iteration_time(compressed))
    allowed = compressed & (q * (t + saved_time) <= time_budget)
    allowed &= costs.memory(compressed) + costs.mem_full - costs.mem_comp <= memory_budget
    add = -np.inf
    if (q + quantum) * t <= time_budget:
        add = (prefix[0, q + quantum + 1] - prefix[0, q]) / (quantum + 1) / (t * quantum)
    return np.append(np.where(allowed, uncompress, -np.inf), add)


def greedy(
    predict: Predict,
    costs: BlockCosts,
    time_budget: float,
    memory_budget: float,
    *,
    quantum: int = 10,
    cap: float | None = None,
) -> Plan:
    """The original's heuristic_solve (see the module docstring); prefix sums are cached per block choice."""
    _check_budgets(costs, time_budget, memory_budget)
    compressed = np.ones(costs.num_blocks, dtype=bool)
    q = 0
    prefix = _candidate_prefix(predict, costs, compressed, time_budget, cap)
    while True:
        scores = _scores(prefix, costs, compressed, q, time_budget, memory_budget, quantum)
        best = int(np.argmax(scores))
        if scores[best] <= 0:
            break
        if best == costs.num_blocks:
            q += quantum
        else:
            compressed[best] = False
            prefix = _candidate_prefix(predict, costs, compressed, time_budget, cap)
    q = int(_max_iterations(costs.iteration_time(compressed), time_budget))  # spend the leftover on iterations
    return _plan(predict, costs, compressed, q, cap)


def exact(
    predict: Predict, costs: BlockCosts, time_budget: float, memory_budget: float, *, cap: float | None = None
) -> Plan:
    """The best plan over all 2^N block choices that fit memory and every q their time allows (N ≤ 16): one
    predict call on (plans, 0..Q) and running means. Greedy's plan is among them, so this is never worse."""
    if costs.num_blocks > MAX_EXACT_BLOCKS:
        raise ValueError(f"exact enumerates 2^N plans; N={costs.num_blocks} > {MAX_EXACT_BLOCKS}, use greedy")
    _check_budgets(costs, time_budget, memory_budget)
    plans = np.array(list(itertools.product([False, True], repeat=costs.num_blocks)))  # (2^N, N)
    plans = plans[costs.memory(plans) <= memory_budget]
    limits = _max_iterations(costs.iteration_time(plans), time_budget)  # (P,)
    chunks = int(np.clip(len(plans) * (limits.max() + 1) // 2**22, 1, len(plans)))  # bound memory at N = 16
    best_value, best = -np.inf, (plans[0], 0)
    for rows in np.array_split(np.arange(len(plans)), chunks):
        acc = _capped(predict(np.arange(limits.max() + 1), plans[rows].astype(float)), cap)  # (p, Q+1)
        means = np.cumsum(acc, axis=1) / np.arange(1, acc.shape[1] + 1)
        means[np.arange(acc.shape[1])[None, :] > limits[rows, None]] = -np.inf
        # Ties (a law saturating at the cap makes many plans equal) go to the plan that trains longest: unspent
        # budget buys nothing, and greedy would spend it too.
        top = means.max()
        ps, qs = np.nonzero(means >= top - TIE)
        p, q = ps[np.argmax(qs)], int(qs.max())
        if top > best_value + TIE or (top >= best_value - TIE and q > best[1]):
            best_value, best = max(top, best_value), (plans[rows[p]], q)
    return _plan(predict, costs, best[0], best[1], cap)


def random_instance(
    rng: np.random.Generator, num_blocks: int, *, iterations: float = 500.0
) -> tuple[Predict, BlockCosts, float, float]:
    """A random additive-law predictor (per-block penalties, accuracy saturating in q), random costs, a time budget
    of `iterations` all-compressed iterations and a memory budget between the all-compressed and all-full plans."""
    params = np.concatenate(
        [
            [rng.uniform(0.6, 0.9), -rng.uniform(0.2, 0.6), -rng.uniform(0.2, 1.0)],  # θ0, b, c
            -rng.uniform(0.0, 0.06, num_blocks),  # δ_k: accuracy lost by compressing block k
        ]
    )
    predict = ScalingLaw("additive", num_blocks, (), params).predictor(())
    time_full = rng.uniform(0.5, 1.5, num_blocks)
    mem_full = rng.uniform(0.5, 1.5, num_blocks)
    costs = BlockCosts(
        time_full=time_full,
        time_comp=time_full * rng.uniform(0.3, 0.95, num_blocks),
        mem_full=mem_full,
        mem_comp=mem_full * rng.uniform(0.1, 0.5, num_blocks),
        base_time=rng.uniform(0.0, 0.5) * num_blocks,
        base_mem=rng.uniform(0.0, 0.5) * num_blocks,
    )
    time_budget = iterations * float(costs.iteration_time(np.ones(num_blocks)))
    low, high = costs.memory(np.ones(num_blocks)), costs.memory(np.zeros(num_blocks))
    return predict, costs, time_budget, float(low + rng.uniform(0.0, 1.0) * (high - low))
