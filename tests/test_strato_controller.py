"""STRATO's PPO controller and Go-Explore archive, on planted (fake) evaluations that count their calls."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from edgetune.strato import controller
from edgetune.strato.controller import (
    OBSERVATION,
    RANKS,
    Archive,
    ControllerConfig,
    Evaluation,
    RewardSpec,
    search,
)
from edgetune.strato.controller import AllocationEnv as Env
from edgetune.strato.spec import MODULES, Allocation, module_path, module_shapes

SHAPES = module_shapes(
    SimpleNamespace(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
)
SPEC = RewardSpec(base_score=50.0, reference_score=60.0, lam=0.5)


def cost_of(allocation: Allocation) -> float:
    """Analytic parameter fraction of uniform rank-8 LoRA on every module."""
    return allocation.parameters(SHAPES) / Allocation.uniform(allocation.num_layers, 8).parameters(SHAPES)


class Planted:
    """score = 50 + 10 · (fraction of the top half of layers with a rank >= 4 somewhere); records every call."""

    def __init__(self):
        self.keys: list[str] = []

    def __call__(self, allocation: Allocation) -> Evaluation:
        self.keys.append(allocation.key())
        top = range(allocation.num_layers // 2, allocation.num_layers)
        hit = np.mean([max(allocation.ranks[i]) >= 4 for i in top])
        return Evaluation(score=50.0 + 10.0 * hit, cost=cost_of(allocation))


def flat(num_layers: int) -> np.ndarray:
    return np.ones((num_layers, 2))


@functools.cache
def planted_search():
    """60 episodes over 3 layers where only the top layer's MLP helps and the cost penalizes everything."""

    def evaluate(allocation):
        return Evaluation(50.0 + 10.0 * (allocation.rank(2, "gate_proj") >= 2), cost_of(allocation))

    config = ControllerConfig(episodes=60, n_steps_per_update=4)
    return search(3, flat(3), evaluate, cost_of, RewardSpec(50.0, 60.0, lam=1.0), config, seed=1)


def test_reward_spec_arithmetic():
    assert SPEC.reward(Evaluation(score=57.5, cost=0.4)) == pytest.approx(0.75 - 0.2)
    assert SPEC.reward(Evaluation(score=45.0, cost=0.0)) == pytest.approx(-0.5)
    flat_spec = RewardSpec(base_score=50.0, reference_score=50.0, lam=1.0)  # no span: gain in points / 100
    assert flat_spec.reward(Evaluation(score=53.0, cost=0.25)) == pytest.approx(0.03 - 0.25)
    assert SPEC.invalid == -1.5
    with pytest.raises(ValueError, match="lam"):
        RewardSpec(50.0, 60.0, lam=-0.1)


def test_archive_refuses_duplicates_and_keeps_order():
    archive, a = Archive(), Allocation.from_groups([0, 4], [2, 0])
    assert archive.get(a) is None and archive.choose_return(np.random.default_rng(0)) is None
    archive.add(a, Evaluation(55.0, 0.1), 0.45)
    with pytest.raises(ValueError, match="already archived"):
        archive.add(Allocation.from_groups([0, 4], [2, 0]), Evaluation(56.0, 0.1), 0.5)
    archive.add(Allocation.from_groups([8, 8], [8, 8]), Evaluation(60.0, 1.0), 0.5)
    archive.visit(a)
    assert archive.get(a) == Evaluation(55.0, 0.1) and len(archive) == 2 and archive.visits(a) == 1
    assert [r for _, _, r in archive.best(2)] == [0.5, 0.45]
    rows = archive.to_rows()
    assert [r["order"] for r in rows] == [0, 1] and rows[0]["attention"] == [0, 4] and rows[0]["mlp"] == [2, 0]


def test_choose_return_prefers_high_reward_and_few_visits():
    rng, archive = np.random.default_rng(0), Archive()
    cells = [Allocation.from_groups([r, 0], [0, 0]) for r in (2, 4, 8)]
    for cell, reward in zip(cells, (1.0, 0.0, -1.0), strict=True):
        archive.add(cell, Evaluation(50.0, 0.1), reward)
    draws = [archive.choose_return(rng).key() for _ in range(2000)]
    assert draws.count(cells[0].key()) > draws.count(cells[1].key()) > draws.count(cells[2].key())

    tied = Archive()
    tied.add(cells[0], Evaluation(50.0, 0.1), 0.3)
    tied.add(cells[1], Evaluation(50.0, 0.1), 0.3)
    for _ in range(8):
        tied.visit(cells[0])  # weight 1/3 against 1
    draws = [tied.choose_return(rng).key() for _ in range(2000)]
    assert 1.5 * draws.count(cells[0].key()) < draws.count(cells[1].key())


def test_no_configuration_is_trained_twice(monkeypatch):
    monkeypatch.setattr(controller, "RANKS", (0, 2))  # 2 layers x 2 x 2 choices: only 15 valid allocations
    fake = Planted()
    result = search(2, flat(2), fake, cost_of, SPEC, ControllerConfig(episodes=40), seed=0)
    valid = [r for r in result.rewards if r != SPEC.invalid]
    assert len(result.rewards) == 40 and len(valid) > 15
    assert len(fake.keys) == len(set(fake.keys)) == len(result.archive) == result.evaluations <= 15
    assert sum(row["visits"] for row in result.archive.to_rows()) == len(valid)  # repeats were served from the cache
    assert result.best == result.archive.best(1)[0][0] and result.reward == max(valid)
    assert result.controller_seconds > 0 and result.evaluate_seconds >= 0


@pytest.mark.parametrize("num_layers", [2, 5])
def test_controller_parameter_count(num_layers):
    fake, h, d = Planted(), 64, len(OBSERVATION)
    result = search(num_layers, flat(num_layers), fake, cost_of, SPEC, ControllerConfig(episodes=1), seed=0)
    trunk = d * h + h + h * h + h  # two hidden layers, for the policy and for the value function
    assert result.controller_parameters == 2 * trunk + (h * 2 * len(RANKS) + 2 * len(RANKS)) + (h + 1) == 10_187
    with pytest.raises(ValueError, match="cap"):
        search(num_layers, flat(num_layers), fake, cost_of, SPEC, ControllerConfig(episodes=1, hidden=512), seed=0)


@pytest.mark.parametrize("source", ["search", "mixed"])
def test_allocation_builds_matching_peft_model(source):
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    allocation = planted_search().best if source == "search" else Allocation.from_groups([0, 16, 2], [4, 0, 8])
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=allocation.num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = get_peft_model(LlamaForCausalLM(cfg), allocation.to_lora_config())
    for layer in range(allocation.num_layers):
        for name in MODULES:
            module = model.base_model.model.get_submodule(module_path(layer, name))
            rank = allocation.rank(layer, name)
            assert (module.r["default"] if hasattr(module, "lora_A") else 0) == rank, (layer, name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == allocation.parameters(module_shapes(cfg))


def test_all_zero_allocation_is_penalized_without_evaluating():
    fake, archive = Planted(), Archive()
    env = Env(3, flat(3), fake, cost_of, SPEC, archive, p_return=0.0)
    env.reset(seed=0)
    for _ in range(2):
        _, reward, done, _, _ = env.step(np.array([0, 0]))
        assert (reward, done) == (0.0, False)
    _, reward, done, _, info = env.step(np.array([0, 0]))
    assert done and reward == -1.5 and info["allocation"] is None
    assert fake.keys == [] and len(archive) == 0


def test_go_explore_replays_the_archived_cell():
    cell, seen = Allocation.from_groups([2, 4, 8, 16], [16, 8, 0, 2]), set()
    for seed in range(8):
        archive, fake = Archive(), Planted()
        archive.add(cell, Evaluation(58.0, 0.5), 0.55)  # the only cell
        env = Env(4, flat(4), fake, cost_of, SPEC, archive, p_return=1.0)
        obs, info = env.reset(seed=seed)
        k = info["replayed"]
        seen.add(k)
        assert info["returned"] == cell.key() and 1 <= k <= 3
        assert obs[0] == pytest.approx((3 - k) / 3) and obs[0] < 1.0
        assert obs[OBSERVATION.index("cost so far")] > 0 and obs[-1] == pytest.approx(0.55)
        done = False
        while not done:
            _, _, done, _, info = env.step(np.array([1, 1]))  # rank 2 everywhere below the replayed layers
        for layer in range(4):
            expected = cell.ranks[layer] if layer >= 4 - k else (2,) * len(MODULES)
            assert info["allocation"].ranks[layer] == expected
        assert fake.keys == [info["allocation"].key()] and len(archive) == 2
    assert len(seen) > 1


def test_search_finds_the_planted_top_mlp():
    result = planted_search()
    assert result.best.rank(2, "gate_proj") > 0 and result.reward > 0.5


def test_search_is_deterministic():
    runs = []
    for _ in range(2):
        fake = Planted()
        search(
            3,
            np.array([[1.0, 2.0], [0.5, 1.0], [2.0, 0.1]]),
            fake,
            cost_of,
            SPEC,
            ControllerConfig(episodes=16),
            seed=7,
        )
        runs.append(fake.keys)
    assert runs[0] == runs[1] and len(runs[0]) > 4


def test_config_and_env_validation():
    with pytest.raises(ValueError, match="episodes"):
        ControllerConfig(episodes=0)
    with pytest.raises(ValueError, match="p_return"):
        ControllerConfig(p_return=1.5)
    with pytest.raises(ValueError, match="sensitivities"):
        Env(3, np.ones((2, 2)), Planted(), cost_of, SPEC, Archive())
