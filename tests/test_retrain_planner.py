"""BlockTrainer's retraining scaling law (edgetune.retrain.law) and plan optimizer (edgetune.retrain.planner)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from edgetune.retrain.law import FORMS, ScalingLaw, choose_form, compare_forms, fit_quality, split_trials
from edgetune.retrain.planner import BlockCosts, exact, greedy, objective, random_instance

STATS = ("fd", "confidence")
TRUE_LAWS = {
    "additive": ScalingLaw("additive", 4, STATS, [0.8, -0.1, 0.05, -0.4, -0.7, -0.02, -0.05, -0.01, -0.03]),
    "multiplicative": ScalingLaw("multiplicative", 4, STATS, [-0.4, -0.2, 0.1, 0.05, *np.log([0.97, 0.9, 0.99, 0.95])]),
}


def make_points(law: ScalingLaw, trials: int = 30, seed: int = 0) -> pd.DataFrame:
    """Noiseless data points: per trial a random block plan and random statistics, accuracy every 10 iterations."""
    rng = np.random.default_rng(seed)
    q = np.arange(0, 501, 10)
    frames = []
    for trial in range(trials):
        compressed = rng.integers(0, 2, law.num_blocks)
        stats = rng.uniform(0, 1, len(law.stat_names))
        frame = pd.DataFrame({"trial": trial, "iteration": q, "accuracy": law.predict(q, compressed, stats)[0]})
        frame[[f"c{k}" for k in range(law.num_blocks)]] = compressed
        frame[list(law.stat_names)] = stats
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# --- the scaling law ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_fit_recovers_generating_parameters(form):
    truth = TRUE_LAWS[form]
    train, held = split_trials(make_points(truth), holdout=0.25)
    law = ScalingLaw.fit(train, form, 4, STATS)
    np.testing.assert_allclose(law.params, truth.params, atol=1e-6)
    quality = fit_quality(law, held)
    assert quality["r2"] > 0.99 and quality["mae"] < 1e-6 and quality["n"] == len(held)


@pytest.mark.parametrize("form", FORMS)
def test_compare_forms_picks_the_generating_form(form):
    laws, table = compare_forms(make_points(TRUE_LAWS[form]), 4, STATS)
    assert set(laws) == set(FORMS) and len(table) == 4
    assert set(table["split"]) == {"train", "held-out"}
    assert choose_form(table) == form
    held = table[table["split"] == "held-out"].set_index("form")
    assert held.loc[form, "r2"] > 0.99 and held.loc[form, "mae"] < 1e-6
    assert held.drop(form)["mae"].iloc[0] > 1e-3  # the other form cannot fit this shape


def test_predict_shapes_and_values():
    law = TRUE_LAWS["additive"]
    q, stats = np.array([0, 3, 99]), np.array([0.5, 0.2])
    assert law.predict(q, np.ones((5, 4)), stats).shape == (5, 3)
    assert law.predict(q, np.ones(4), stats).shape == (1, 3)
    # θ0 + θ·stats + b·(q+1)^c + Σδ at q = 3, all blocks compressed
    expected = 0.8 - 0.05 + 0.01 - 0.4 * 4**-0.7 - 0.11
    assert law.predict([3], np.ones(4), stats)[0, 0] == pytest.approx(expected, abs=1e-12)
    mult = TRUE_LAWS["multiplicative"]
    expected = np.exp(-0.4 - 0.1 + 0.02) * 4**0.05 * 0.9
    assert mult.predict([3], [0, 1, 0, 0], stats)[0, 0] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_array_equal(law.predictor(stats)(q, np.eye(4)), law.predict(q, np.eye(4), stats))


def test_to_dict_round_trip():
    law = TRUE_LAWS["multiplicative"]
    back = ScalingLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    assert (back.form, back.num_blocks, back.stat_names) == (law.form, law.num_blocks, law.stat_names)
    np.testing.assert_array_equal(back.params, law.params)
    assert law.names[:4] == ("theta0", "theta_fd", "theta_confidence", "gamma")


def test_split_trials_by_trial():
    points = make_points(TRUE_LAWS["additive"], trials=10)
    train, held = split_trials(points, holdout=0.2, seed=3)
    assert set(train["trial"]).isdisjoint(held["trial"]) and len(train) + len(held) == len(points)
    assert held["trial"].nunique() == 2
    assert split_trials(points, holdout=0.0)[1]["trial"].nunique() == 1
    assert split_trials(points, holdout=1.0)[0]["trial"].nunique() == 1


def test_fit_quality_numbers():
    truth = TRUE_LAWS["additive"]
    points = make_points(truth, trials=4)
    shifted = ScalingLaw("additive", 4, STATS, truth.params + np.eye(len(truth.params))[0] * 0.01)  # θ0 + 0.01
    assert fit_quality(truth, points)["mae"] < 1e-12
    assert fit_quality(shifted, points)["mae"] == pytest.approx(0.01, abs=1e-12)


def test_law_errors():
    points = make_points(TRUE_LAWS["additive"], trials=3)
    with pytest.raises(ValueError, match="expected one of"):
        ScalingLaw.fit(points, "power", 4, STATS)
    with pytest.raises(ValueError, match=r"lack columns \['c4', 'entropy'\]"):
        ScalingLaw.fit(points, "additive", 5, ("fd", "entropy"))
    nan = points.assign(accuracy=points["accuracy"].where(points["iteration"] != 20))
    with pytest.raises(ValueError, match="3 data points have a NaN accuracy"):
        ScalingLaw.fit(nan, "additive", 4, STATS)
    with pytest.raises(ValueError, match="at least 2 trials"):
        split_trials(points[points["trial"] == 0])
    with pytest.raises(ValueError, match=r"needs \(9,\)"):
        ScalingLaw("additive", 4, STATS, np.zeros(8))
    with pytest.raises(ValueError, match="stats has shape"):
        TRUE_LAWS["additive"].predict([0], np.ones(4), [0.1])


# --- the planner -------------------------------------------------------------------------------------------------


def one_block(time_full: float, time_comp: float) -> BlockCosts:
    return BlockCosts(np.array([time_full]), np.array([time_comp]), np.array([1.0]), np.array([0.5]))


def test_block_costs():
    costs = BlockCosts(np.array([2.0, 4.0]), np.array([1.0, 1.0]), np.array([8.0, 8.0]), np.array([1.0, 2.0]), 0.5, 3.0)
    np.testing.assert_allclose(costs.iteration_time([[0, 0], [1, 0], [1, 1]]), [6.5, 5.5, 2.5])
    np.testing.assert_allclose(costs.memory([[0, 0], [0, 1], [1, 1]]), [19.0, 13.0, 6.0])
    with pytest.raises(ValueError, match="time_comp has shape"):
        BlockCosts(np.ones(2), np.ones(3), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="mem_full has negative"):
        BlockCosts(np.ones(2), np.ones(2), -np.ones(2), -np.ones(2))
    with pytest.raises(ValueError, match="must not exceed"):
        BlockCosts(np.ones(2), 2 * np.ones(2), np.ones(2), np.ones(2))


def test_objective_is_a_capped_mean():
    predict = lambda q, c: 0.1 * q[None, :] + 0.0 * c[:, :1]  # 0, 0.1, 0.2, 0.3, 0.4
    assert objective(predict, [True], 4) == pytest.approx(0.2)
    assert objective(predict, [True], 4, cap=0.25) == pytest.approx((0 + 0.1 + 0.2 + 0.25 + 0.25) / 5)
    assert objective(predict, [True], 0) == 0.0


def test_budgets_hold_and_exact_dominates_greedy():
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(200):
        n = int(rng.integers(2, 9))
        predict, costs, time_budget, memory_budget = random_instance(rng, n, iterations=rng.uniform(0, 300))
        cap = rng.choice([None, 0.6])
        plans = (
            greedy(predict, costs, time_budget, memory_budget, cap=cap),
            exact(predict, costs, time_budget, memory_budget, cap=cap),
        )
        for plan in plans:
            assert plan.time <= time_budget and plan.memory <= memory_budget
            assert plan.time == pytest.approx(plan.iterations * costs.iteration_time(plan.compressed))
            assert plan.objective == pytest.approx(objective(predict, plan.compressed, plan.iterations, cap))
        assert plans[1].objective >= plans[0].objective - 1e-12
        gaps.append(plans[1].objective - plans[0].objective)
    assert max(gaps) > 0  # greedy is a heuristic: somewhere it loses


def test_exact_matches_brute_force():
    predict, costs, time_budget, memory_budget = random_instance(np.random.default_rng(1), 3, iterations=40)
    best = max(
        objective(predict, c, q)
        for c in itertools.product([False, True], repeat=3)
        if costs.memory(c) <= memory_budget
        for q in range(int(time_budget // costs.iteration_time(c)) + 1)
        if q * costs.iteration_time(c) <= time_budget
    )
    assert exact(predict, costs, time_budget, memory_budget).objective == pytest.approx(best, abs=1e-12)


def test_greedy_is_suboptimal_when_uncompressing_looks_free():
    # acc = 0.04·q, +0.06 if the block is full; full doubles the iteration time. At q = 0 greedy scores
    # "uncompress" 0.06 / 1 against "add 10" mean(0.04·0..10) / 10 = 0.02, uncompresses, and can then afford only
    # 10 iterations: mean(0.06 + 0.04·0..10) = 0.26. Staying compressed for 20 iterations gives mean(0.04·0..20) = 0.4.
    predict = lambda q, c: 0.06 * (1 - c[:, :1]) + 0.04 * q[None, :]
    costs = one_block(2.0, 1.0)
    plan, best = greedy(predict, costs, 20.0, 10.0), exact(predict, costs, 20.0, 10.0)
    assert (plan.compressed, plan.iterations, plan.time) == ((False,), 10, 20.0)
    assert (best.compressed, best.iterations, best.time) == ((True,), 20, 20.0)
    assert plan.objective == pytest.approx(0.26) and best.objective == pytest.approx(0.4)


def test_greedy_and_exact_agree_when_uncompressing_is_free():
    # Compression saves no time here (a zero denominator, scored as +tiny), so both keep every block full.
    predict = lambda q, c: 0.5 - 0.1 * c.sum(axis=1, keepdims=True) + 0.01 * q[None, :]
    costs = BlockCosts(np.ones(2), np.ones(2), np.ones(2), np.full(2, 0.5), base_time=0.5)
    plan, best = greedy(predict, costs, 50.0, 2.0), exact(predict, costs, 50.0, 2.0)
    assert plan == best
    assert (plan.compressed, plan.iterations, plan.objective) == ((False, False), 20, pytest.approx(0.6))
    # Memory for one full block only: both pick block 0 (ties go to the lower index) for 20 iterations.
    plan, best = greedy(predict, costs, 50.0, 1.5), exact(predict, costs, 50.0, 1.5)
    assert plan.objective == pytest.approx(best.objective) == pytest.approx(0.5)
    assert sum(plan.compressed) == 1 and plan.iterations == 20


def test_greedy_charges_the_chosen_block():
    # Compressing block 0 costs 0.45 accuracy from iteration 10 on. Greedy adds 10 iterations (0.5·10/11 / 19 beats
    # 0 / 4), then uncompresses block 0 at q = 10 (0.45/11 / 4 beats 0.05/11 / 19): 10 × (1.9 + 4) = 59 of 100 spent.
    # The original then charged the loop variable's block (0.1 × 10) instead of block 0's (4 × 10) and would end at
    # q = 10 + 80 // 5.9 = 23, time 135.7 > 100; here the leftover buys floor(100 / 5.9) = 16 iterations in all.
    predict = lambda q, c: 0.5 - 0.45 * c[:, :1] * (q[None, :] >= 10)
    costs = BlockCosts(np.array([5.0, 1.0]), np.array([1.0, 0.9]), np.ones(2), np.ones(2))
    plan = greedy(predict, costs, 100.0, 10.0)
    assert (plan.compressed, plan.iterations) == ((False, True), 16)
    assert plan.time == pytest.approx(16 * 5.9) and plan.time <= 100.0


def test_planner_errors():
    predict, costs, time_budget, memory_budget = random_instance(np.random.default_rng(0), 4)
    smallest = costs.memory(np.ones(4))
    for solve in (greedy, exact):
        with pytest.raises(ValueError, match="memory_budget=.* is below the all-compressed plan's memory"):
            solve(predict, costs, time_budget, 0.9 * smallest)
    big = BlockCosts(np.ones(17), np.ones(17), np.ones(17), np.ones(17))
    with pytest.raises(ValueError, match="N=17 > 16"):
        exact(lambda q, c: np.zeros((len(c), len(q))), big, 10.0, 100.0)
    free = BlockCosts(np.zeros(2), np.zeros(2), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="per-iteration time is 0"):
        greedy(lambda q, c: np.zeros((len(c), len(q))), free, 10.0, 100.0)


def test_exact_breaks_ties_toward_the_longest_training():
    costs = BlockCosts(np.full(3, 2.0), np.ones(3), np.full(3, 2.0), np.ones(3))

    def flat(iterations, compressed):  # a law saturated at the cap: every plan and every q predicts 1
        return np.ones((np.atleast_2d(compressed).shape[0], len(iterations)))

    best = exact(flat, costs, time_budget=30.0, memory_budget=10.0, cap=1.0)
    assert best.objective == 1.0 and best.iterations == 10 and all(best.compressed)
