"""STRATO-PEFT's controller: a PPO policy (stable-baselines3) that decides, layer by layer from the top, whether and at
which rank LoRA adapters go on the attention projections and on the MLP projections, with a Go-Explore archive
(Ecoffet et al., "First return, then explore", Nature 2021) that caches every configuration it has trained.

Deliberate departures from the public scaffold (`phiark/STATRO-PEFT`; docs/strato-peft.md#departures-from-the-original):
the policy really is updated (SB3's PPO, not a fallback branch that skips the gradient step); one step decides exactly
one layer, so every action is reachable (no logits taken modulo an action count); the reward is a normalized gain minus
λ·normalized cost, with no metric/cost term that swamps accuracy or flips sign; the allocation an episode ends with is
the one trained and scored; and the archive both refuses to train a configuration twice and is *returned to* before
exploring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from edgetune.strato.spec import ATTENTION, MLP, Allocation

RANKS = (0, 2, 4, 8, 16)
MAX_PARAMETERS = 500_000  # the controller's size cap
RETURN_SHARPNESS = 4.0  # softmax over reward percentiles: the best cell is e^4 ≈ 55x likelier than the worst
# What the policy sees at each step, in order (layer = the one being decided; "above" = the one decided just before).
OBSERVATION = ("position", "attention sensitivity", "mlp sensitivity", "cost so far", "attention rank above")
OBSERVATION += ("mlp rank above", "fraction adapted", "best reward")


@dataclass(frozen=True)
class Evaluation:
    """One trained allocation: `score` its dev score in points (higher is better), `cost` its normalized cost
    (1.0 = the LoRA reference)."""

    score: float
    cost: float

    def __post_init__(self):
        if not (np.isfinite(self.score) and np.isfinite(self.cost)) or self.cost < 0:
            raise ValueError(f"score {self.score} and cost {self.cost} must be finite and the cost non-negative")


@dataclass(frozen=True)
class RewardSpec:
    """reward = (score − base)/(reference − base) − λ·cost: 0 at the untuned model's score, 1 at the LoRA reference's,
    less λ times the normalized cost. Replaces the scaffold's `metric − 0.1·cost + 0.05·metric/cost`."""

    base_score: float
    reference_score: float
    lam: float = 0.5

    def __post_init__(self):
        if not np.isfinite([self.base_score, self.reference_score, self.lam]).all() or self.lam < 0:
            raise ValueError(f"{self}: scores must be finite and lam a non-negative cost weight")

    def reward(self, ev: Evaluation) -> float:
        span = self.reference_score - self.base_score
        gain = (ev.score - self.base_score) / (span if span > 1e-6 else 100.0)  # degenerate span: points/100
        return float(gain - self.lam * ev.cost)

    @property
    def invalid(self) -> float:
        """The reward of an episode that adapts nothing (untrainable): no gain and a full unit of cost."""
        return -1.0 - self.lam


@dataclass
class _Cell:
    allocation: Allocation
    evaluation: Evaluation
    reward: float
    order: int
    visits: int = 0


class Archive:
    """The Go-Explore archive: one cell per trained allocation (keyed by `Allocation.key()`) with its evaluation,
    reward, visit count and order of discovery. A key is added once, so no configuration is trained twice."""

    def __init__(self):
        self._cells: dict[str, _Cell] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def get(self, allocation: Allocation) -> Evaluation | None:
        cell = self._cells.get(allocation.key())
        return None if cell is None else cell.evaluation

    def add(self, allocation: Allocation, evaluation: Evaluation, reward: float) -> None:
        key = allocation.key()
        if key in self._cells:
            raise ValueError(f"allocation {key} is already archived; reuse get() instead of training it again")
        self._cells[key] = _Cell(allocation, evaluation, float(reward), len(self._cells))

    def visit(self, allocation: Allocation) -> None:
        key = allocation.key()
        if key not in self._cells:
            raise KeyError(f"allocation {key} is not archived; add() it before visiting")
        self._cells[key].visits += 1

    def visits(self, allocation: Allocation) -> int:
        cell = self._cells.get(allocation.key())
        return 0 if cell is None else cell.visits

    def best(self, k: int = 1) -> list[tuple[Allocation, Evaluation, float]]:
        """The k highest-reward cells, earliest discovered first among ties."""
        cells = sorted(self._cells.values(), key=lambda c: (-c.reward, c.order))[:k]
        return [(c.allocation, c.evaluation, c.reward) for c in cells]

    def choose_return(self, rng: np.random.Generator) -> Allocation | None:
        """Go-Explore's "return": a cell drawn with weight softmax(sharpness · reward percentile) / sqrt(1 + visits)."""
        if not self._cells:
            return None
        cells = list(self._cells.values())
        rewards = np.array([c.reward for c in cells])
        percentile = np.searchsorted(np.sort(rewards), rewards) / max(len(cells) - 1, 1)  # (N,) in [0, 1], ties equal
        weights = np.exp(RETURN_SHARPNESS * (percentile - 1)) / np.sqrt(1 + np.array([c.visits for c in cells]))
        return cells[rng.choice(len(cells), p=weights / weights.sum())].allocation

    def to_rows(self) -> list[dict]:
        """One row per cell in order of discovery; `attention`/`mlp` list each layer's q_proj/gate_proj rank."""
        a, m = 0, len(ATTENTION)  # the first module of each group
        return [
            dict(
                key=c.allocation.key(),
                attention=[row[a] for row in c.allocation.ranks],
                mlp=[row[m] for row in c.allocation.ranks],
                score=c.evaluation.score,
                cost=c.evaluation.cost,
                reward=c.reward,
                visits=c.visits,
                order=c.order,
            )
            for c in sorted(self._cells.values(), key=lambda c: c.order)
        ]


class AllocationEnv(gym.Env):
    """One episode builds one Allocation from the top layer down: step t sets layer L−1−t's (attention, mlp) ranks.

    The reward is 0 until the last step, which evaluates the allocation once through the archive (a cached key is
    reused and visited, a new one is trained by `evaluate` and added). An all-zero allocation earns `invalid` unscored.
    On reset, with probability `p_return` and a non-empty archive, the episode returns to an archived cell and replays
    its top k decisions (k uniform in 1..L−1) before the agent acts. All randomness comes from the env's `np_random`.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        num_layers: int,
        sensitivities,
        evaluate: Callable[[Allocation], Evaluation],
        cost_of: Callable[[Allocation], float],
        reward_spec: RewardSpec,
        archive: Archive,
        *,
        p_return: float = 0.3,
    ):
        sens = np.asarray(sensitivities, dtype=np.float64)
        if num_layers < 2:
            raise ValueError(f"num_layers={num_layers}; the controller needs at least 2 layers")
        if sens.shape != (num_layers, 2) or not np.isfinite(sens).all() or (sens < 0).any() or sens.mean() <= 0:
            raise ValueError(f"sensitivities must be a finite non-negative ({num_layers}, 2) array, not all zero")
        if not 0.0 <= p_return <= 1.0:
            raise ValueError(f"p_return={p_return} must be a probability in [0, 1]")
        self.num_layers, self.sensitivities = num_layers, sens / sens.mean()  # (L, 2), mean 1 over the model
        self.evaluate, self.cost_of, self.reward_spec, self.archive = evaluate, cost_of, reward_spec, archive
        self.p_return = p_return
        self.action_space = gym.spaces.MultiDiscrete([len(RANKS), len(RANKS)])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(OBSERVATION),), dtype=np.float32)
        self.episode_rewards: list[float] = []
        self.start()

    @property
    def layer(self) -> int:
        """The layer the next step decides; −1 once every layer is decided."""
        return self.num_layers - 1 - self._decided

    def partial(self) -> Allocation | None:
        """The layers decided so far, rank 0 elsewhere; None while nothing is adapted."""
        if not any(self._attention + self._mlp):
            return None
        return Allocation.from_groups(self._attention, self._mlp)

    def start(self, cell: Allocation | None = None, k: int = 0) -> np.ndarray:
        """Begin at the top layer, or k layers below it with those layers' ranks copied from `cell`."""
        if cell is not None and cell.num_layers != self.num_layers:
            raise ValueError(f"archived cell has {cell.num_layers} layers; this env has {self.num_layers}")
        self._attention, self._mlp, self._decided = [0] * self.num_layers, [0] * self.num_layers, k
        for layer in range(self.num_layers - k, self.num_layers):
            self._attention[layer], self._mlp[layer] = cell.rank(layer, ATTENTION[0]), cell.rank(layer, MLP[0])
        return self._observation()

    def decide(self, action) -> np.ndarray:
        self._attention[self.layer], self._mlp[self.layer] = (RANKS[int(i)] for i in action)
        self._decided += 1
        return self._observation()

    def _observation(self) -> np.ndarray:
        L, layer = self.num_layers, self.layer
        here = self.sensitivities[layer] if layer >= 0 else (0.0, 0.0)
        above = (self._attention[layer + 1], self._mlp[layer + 1]) if layer + 1 < L else (0, 0)
        partial, best = self.partial(), self.archive.best(1)
        adapted = sum(1 for a, m in zip(self._attention, self._mlp, strict=True) if a or m)
        return np.array(
            [
                max(layer, 0) / (L - 1),
                *here,
                0.0 if partial is None else self.cost_of(partial),
                above[0] / RANKS[-1],
                above[1] / RANKS[-1],
                adapted / L,
                np.clip(best[0][2], -2.0, 2.0) if best else 0.0,
            ],
            dtype=np.float32,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cell, k = None, 0
        if len(self.archive) and self.np_random.random() < self.p_return:
            cell, k = self.archive.choose_return(self.np_random), int(self.np_random.integers(1, self.num_layers))
        return self.start(cell, k), {"returned": None if cell is None else cell.key(), "replayed": k}

    def step(self, action):
        obs = self.decide(action)
        if self.layer >= 0:
            return obs, 0.0, False, False, {}
        allocation, info = self.partial(), {}
        if allocation is None:
            reward = self.reward_spec.invalid
        else:
            evaluation = self.archive.get(allocation)
            info["cached"] = evaluation is not None
            if evaluation is None:
                evaluation = self.evaluate(allocation)
                self.archive.add(allocation, evaluation, self.reward_spec.reward(evaluation))
            self.archive.visit(allocation)  # visits = episodes that ended in this cell, the first one included
            reward, info["evaluation"] = self.reward_spec.reward(evaluation), evaluation
        self.episode_rewards.append(reward)
        return obs, reward, True, False, info | {"allocation": allocation}


@dataclass(frozen=True)
class ControllerConfig:
    """PPO settings; `n_steps_per_update` is in episodes (a rollout holds num_layers · n_steps_per_update steps, so
    Go-Explore's shortened episodes make an update span more episodes)."""

    episodes: int = 24
    n_steps_per_update: int = 4
    hidden: int = 64
    lr: float = 3e-4
    n_epochs: int = 4
    clip: float = 0.2
    gamma: float = 1.0
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    p_return: float = 0.3

    def __post_init__(self):
        for name in ("episodes", "n_steps_per_update", "hidden", "n_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.lr <= 0 or self.clip <= 0 or self.ent_coef < 0:
            raise ValueError(f"lr={self.lr} and clip={self.clip} must be positive, ent_coef={self.ent_coef} >= 0")
        for name in ("gamma", "gae_lambda", "p_return"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")


@dataclass
class SearchResult:
    """What `search` found: the archive's best cell, the archive itself, and where the time went."""

    best: Allocation
    evaluation: Evaluation
    reward: float
    archive: Archive
    evaluations: int  # unique configurations trained in this search
    controller_parameters: int
    controller_seconds: float  # learn() time less the time inside evaluate
    evaluate_seconds: float
    rewards: list[float]  # per episode, in order
    greedy: Allocation | None = None  # the trained policy's deterministic allocation (not evaluated)


@contextmanager
def _torch_threads(n: int):
    """Run the block with n intra-op threads, then restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Timed:
    """`evaluate` with a stopwatch, a call counter, and the caller's torch thread count (the policy runs on one)."""

    def __init__(self, evaluate: Callable[[Allocation], Evaluation]):
        self.evaluate, self.calls, self.seconds, self.threads = evaluate, 0, 0.0, torch.get_num_threads()

    def __call__(self, allocation: Allocation) -> Evaluation:
        start = time.perf_counter()
        try:
            with _torch_threads(self.threads):
                return self.evaluate(allocation)
        finally:
            self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - start


class _StopAfterEpisodes(BaseCallback):
    def __init__(self, env: AllocationEnv, episodes: int, progress: bool):
        super().__init__()
        self.env, self.episodes = env, episodes
        if progress:
            from edgetune.progress import progress as progress_bar

            self.bar = progress_bar(total=episodes, desc="STRATO controller", unit="episode")
        else:
            self.bar = None

    def _on_step(self) -> bool:
        done = len(self.env.episode_rewards)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        return done < self.episodes


def controller_parameters(policy) -> int:
    """Parameters of an SB3 policy (or of the model holding it)."""
    return sum(p.numel() for p in getattr(policy, "policy", policy).parameters())


def greedy_allocation(model: PPO, env: AllocationEnv) -> Allocation | None:
    """The policy's deterministic allocation from the top layer, with no return and no evaluation; None if all zero."""
    obs = env.start()
    while env.layer >= 0:
        action, _ = model.predict(obs, deterministic=True)
        obs = env.decide(action)
    return env.partial()


def search(
    num_layers: int,
    sensitivities,
    evaluate: Callable[[Allocation], Evaluation],
    cost_of: Callable[[Allocation], float],
    reward_spec: RewardSpec,
    config: ControllerConfig,
    *,
    seed: int,
    archive: Archive | None = None,
    progress: bool = False,
) -> SearchResult:
    """Run `config.episodes` episodes of PPO over allocations and return the archive's best.

    The policy (~10k parameters) runs on one torch thread: more only add synchronization, 20-40x slower on a busy
    2-core host; `evaluate` gets the caller's thread count back. Note: SB3's `seed=` reseeds the global `random`,
    NumPy and torch generators as a side effect.
    """
    archive = Archive() if archive is None else archive
    timed = _Timed(evaluate)
    env = AllocationEnv(num_layers, sensitivities, timed, cost_of, reward_spec, archive, p_return=config.p_return)
    steps, hidden = num_layers * config.n_steps_per_update, [config.hidden, config.hidden]
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=steps,
        batch_size=steps,
        n_epochs=config.n_epochs,
        learning_rate=config.lr,
        clip_range=config.clip,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        policy_kwargs=dict(net_arch=dict(pi=hidden, vf=hidden)),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    size = controller_parameters(model.policy)
    if size > MAX_PARAMETERS:
        raise ValueError(f"the controller has {size:,} parameters, over the {MAX_PARAMETERS:,} cap; lower hidden")
    callback = _StopAfterEpisodes(env, config.episodes, progress)
    start = time.perf_counter()
    with _torch_threads(1):
        model.learn(total_timesteps=config.episodes * num_layers, callback=callback)  # every episode has <= L steps
        learn_seconds = time.perf_counter() - start
        greedy = greedy_allocation(model, env)
    if callback.bar is not None:
        callback.bar.close()
    if not len(archive):
        raise RuntimeError(f"no trainable allocation in {config.episodes} episodes; raise episodes")
    ((best, evaluation, reward),) = archive.best(1)
    return SearchResult(
        best,
        evaluation,
        reward,
        archive,
        evaluations=timed.calls,
        controller_parameters=size,
        controller_seconds=learn_seconds - timed.seconds,
        evaluate_seconds=timed.seconds,
        rewards=env.episode_rewards[: config.episodes],
        greedy=greedy,
    )
