"""STRATO's search: the PPO controller picks per-layer placement and ranks; every configuration it proposes is
trained once for a short proxy run and scored on dev; the best (by reward) becomes the final run's allocation.

Reward = normalized score gain − λ · normalized cost, where the gain is relative to what uniform LoRA gains over
the base model in the same proxy run, and the cost is a weighted sum of trainable parameters, training FLOPs and
modelled memory, each relative to uniform LoRA's. The uniform-LoRA reference is the archive's first cell, so the
controller never retrains it. Departure from the original: its reward (metric − 0.1·cost + 0.05·metric/cost) was
dominated by the efficiency term; here both terms are on the same scale (1.0 = LoRA).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from edgetune.runs import RunResult, cached, write_json
from edgetune.runs.stages import stage_key
from edgetune.strato import controller, cost, lm, methods
from edgetune.strato.config import RunConfig, keyed
from edgetune.strato.spec import ATTENTION, MODULES, Allocation, module_shapes
from edgetune.strato.train import train_adapters


def sensitivities(model, batches: list[dict], device) -> np.ndarray:
    """(layers, 2) gradient sensitivity |W ⊙ ∂L/∂W| of the attention and MLP projections of the frozen base model,
    averaged over a few batches and normalized to mean 1 (the controller's per-layer observation)."""
    layers = model.model.layers
    weights = {
        (i, name): mod.weight
        for i, layer in enumerate(layers)
        for name, mod in layer.named_modules()
        if name.split(".")[-1] in MODULES
    }
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    model.train()
    for batch in batches:
        model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
    out = np.zeros((len(layers), 2))
    counts = np.zeros((len(layers), 2))
    for (i, name), w in weights.items():
        group = 0 if name.split(".")[-1] in ATTENTION else 1
        out[i, group] += float((w.detach() * w.grad).abs().mean())
        counts[i, group] += 1
        w.grad = None
    for p, flag in flags.items():
        p.requires_grad_(flag)
    out = out / counts
    return out / out.mean()


def search_key(config: RunConfig) -> dict:
    """What a search depends on: the base model, the task, the optimisation, the rank and the controller. Not the
    run's seed when `search_seed` is set, so seeds can share one search."""
    s = config.peft.strato
    files = keyed({"model": dataclasses.asdict(config.model), "task": dataclasses.asdict(config.task)})
    own = {
        "model": files["model"],
        "task": files["task"],
        "training": {
            k: getattr(config.training, k)
            for k in ("batch_size", "lr", "warmup_frac", "weight_decay", "gradient_accumulation_steps")
        },
        "mixed_precision": config.device.mixed_precision,  # the proxy fine-tunes run under the run's autocast
        "peft": {
            "rank": config.peft.rank,
            "alpha_per_rank": config.peft.alpha_per_rank,
            "dropout": config.peft.dropout,
        },
        "strato": dataclasses.asdict(s),
        "seed": config.seed if s.search_seed is None else s.search_seed,
    }
    return stage_key(own, versions=("tasks", "tokenizer"))


def find_allocation(config: RunConfig, model, loop, *, force: bool = False) -> tuple[Allocation, dict]:
    """The searched allocation for `config` (cached per search key) and the search's numbers for the run's result."""
    key = search_key(config)
    result, folder = cached("strato-search", key, lambda f: _search(config, model, loop, key["seed"], f), force=force)
    allocation = Allocation(tuple(tuple(row) for row in json.loads(Path(result.artifacts["allocation"]).read_text())))
    found = {f"search_{k}": v for k, v in result.metrics.items()}
    return allocation, found


def _search(config: RunConfig, model, loop, seed: int, folder: Path) -> RunResult:
    s = config.peft.strato
    shapes, layers = module_shapes(model.config), model.config.num_hidden_layers
    size = loop.batch_size
    probe = [
        lm.encode(loop.train[i : i + size], loop.tokenizer, loop.context)
        for i in range(0, min(len(loop.train), 2 * size), size)
    ]
    sens = sensitivities(model, probe, loop.device)
    lengths = [int(b["attention_mask"].sum(1).float().mean()) for b in probe]
    seq = max(1, int(np.mean(lengths)))
    weights = {"params": s.cost_params, "flops": s.cost_flops, "memory": s.cost_memory}
    total = sum(weights.values())
    weights = {k: v / total for k, v in weights.items()}

    def cost_of(allocation: Allocation) -> float:
        c = cost.allocation_cost(model.config, allocation, tokens=loop.batch_size * seq, seq=seq)
        return c.normalized(reference_cost, weights)

    spec = methods.MethodSpec(
        method="strato", rank=config.peft.rank, alpha_per_rank=config.peft.alpha_per_rank, dropout=config.peft.dropout
    )
    proxy = dataclasses.replace(
        loop, steps=s.proxy_steps, eval_every=0, schedule=None, writer=None, progress=False, spec=spec, seed=seed
    )

    def evaluate(allocation: Allocation) -> controller.Evaluation:
        candidate = methods.wrap(copy.deepcopy(model), spec, total_step=s.proxy_steps, allocation=allocation)
        train_adapters(candidate, proxy)
        score = lm.answer_token_accuracy(candidate, loop.dev, loop.tokenizer, context=loop.context, device=loop.device)
        return controller.Evaluation(score=score, cost=cost_of(allocation))

    reference = Allocation.uniform(layers, config.peft.rank)
    reference_cost = cost.allocation_cost(model.config, reference, tokens=loop.batch_size * seq, seq=seq)
    base_score = lm.answer_token_accuracy(model, loop.dev, loop.tokenizer, context=loop.context, device=loop.device)
    start = time.perf_counter()
    reference_eval = evaluate(reference)
    reference_s = time.perf_counter() - start
    reward = controller.RewardSpec(base_score=base_score, reference_score=reference_eval.score, lam=s.lam)
    archive = controller.Archive()
    archive.add(reference, reference_eval, reward.reward(reference_eval))
    found = controller.search(
        layers,
        sens,
        evaluate,
        cost_of,
        reward,
        controller.ControllerConfig(
            episodes=s.episodes, n_steps_per_update=s.episodes_per_update, hidden=s.hidden, p_return=s.p_return
        ),
        seed=seed,
        archive=archive,
        progress=loop.progress,
    )
    write_json(folder / "allocation.json", [list(row) for row in found.best.ranks])
    write_json(
        folder / "archive.json",
        {"rows": found.archive.to_rows(), "rewards": found.rewards, "sensitivities": sens.tolist()},
    )
    metrics = {
        "evaluations": found.evaluations + 1,  # the LoRA reference included
        "controller_s": found.controller_seconds,
        "evaluate_s": found.evaluate_seconds + reference_s,
        "controller_parameters": found.controller_parameters,
        "best_reward": found.reward,
        "best_proxy": found.evaluation.score,
        "best_cost": found.evaluation.cost,
        "base_proxy": base_score,
        "reference_proxy": reference_eval.score,
        "best_params": found.best.parameters(shapes),
        "reference_params": reference.parameters(shapes),
    }
    return RunResult(
        stage="strato-search",
        config={"key": search_key(config)},
        seed=seed,
        metrics=metrics,
        params_trainable=found.best.parameters(shapes),
        wall_time_s=time.perf_counter() - start,
        device=str(loop.device),
        artifacts={"allocation": str(folder / "allocation.json"), "archive": str(folder / "archive.json")},
    )
