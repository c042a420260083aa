"""The retraining section's pipeline: offline preparation, simulated retraining runs for the scaling law, the law's
fit, the online stream with its baselines, and the accuracy-vs-budget sweep — each a cached stage — plus the tables
the notebook shows."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from edgetune.data.streaming import first
from edgetune.profiles import pick_device
from edgetune.retrain.config import BUDGET, LAW, ONLINE, RetrainingConfig
from edgetune.retrain.data import Stream, load_stream, simulated_target
from edgetune.retrain.kb import edge_model
from edgetune.retrain.law import ScalingLaw, agreement, choose_form, compare_forms, split_trials
from edgetune.retrain.offline import Offline, prepare
from edgetune.retrain.online import (
    features,
    freeze_head,
    hardest_sample,
    moments,
    run_stream,
    window_stats,
)
from edgetune.retrain.train import retrain
from edgetune.runs import RunResult, describe_device, package_versions, write_text
from edgetune.training import derive_seed

STATS = ("fd", "confidence")


def setup(cfg: RetrainingConfig, force: bool = False) -> tuple[Stream, Offline, torch.device]:
    device = pick_device(cfg.device)
    stream = load_stream(cfg)
    return stream, prepare(cfg, stream, device, force), device


# ---------------------------------------------------------------------------------------------- offline table
def offline_table(offline: Offline) -> pd.DataFrame:
    m = offline.results["knowledge_base"].metrics
    rows = [
        ("fm (LoRA fine-tuned, merged)", m["fm_params"], m["fm_source_accuracy"]),
        ("knowledge base, dense gates", m["kb_params"], m["kb_accuracy_dense"]),
        ("knowledge base, compressed-block sparsity", m["kb_params"], m["kb_accuracy_sparse"]),
        ("knowledge base, max sparsity", m["kb_params"], m["kb_accuracy_max_sparsity"]),
    ]
    table = pd.DataFrame(rows, columns=["model", "parameters", "source_accuracy"])
    table["parameters"] = table["parameters"].astype(int)
    return table


# ---------------------------------------------------------------------------------------------- scaling-law data
def law_points(cfg: RetrainingConfig, offline: Offline, stream: Stream, device, force: bool = False) -> pd.DataFrame:
    """Simulated retraining runs: per trial a random augmentation policy makes a target from source images, a random
    set of blocks is compressed, and the edge model cut from the (offline) kb is retrained for `law_iterations`,
    scored every `eval_every` — (iteration, accuracy) points with the plan and the target's statistics. Trials are
    saved as they finish, so an interrupted run resumes."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (LAW.reads)
        partial = folder / "points.partial.csv"
        rows = pd.read_csv(partial).to_dict("records") if partial.exists() else []
        done = {int(r["trial"]) for r in rows}
        held_out = stream.source_test[0][:]  # the source's held-out images, decoded once (a real dataset's too)
        src = moments(features(offline.kb, first(stream.source[0], cfg.stat_size), device))
        start = time.perf_counter()
        for t in range(cfg.law_trials):
            if t not in done:
                rows += _trial(cfg, offline, stream, held_out, src, t, device)
                write_text(partial, pd.DataFrame(rows).to_csv(index=False))
        points = pd.DataFrame(rows)
        write_text(folder / "points.csv", points.to_csv(index=False))
        return RunResult(
            stage="retraining-law-points",
            config={},  # the stage's key, stamped by Stage.run
            seed=cfg.seed,
            metrics={"trials": cfg.law_trials, "points": len(points)},
            wall_time_s=time.perf_counter() - start,
            device=describe_device(device),
            versions=package_versions(),
            artifacts={"points": "points.csv"},
        )

    _, folder = LAW.run(cfg, compute, force=force)
    return pd.read_csv(folder / "points.csv")


def _trial(cfg, offline: Offline, stream: Stream, held_out: torch.Tensor, src_moments, t: int, device) -> list[dict]:
    seed = derive_seed(cfg.seed, "law trial", t)
    rng = random.Random(seed)
    depth = len(offline.kb.blocks)
    compressed = [False] * depth
    for b in rng.sample(range(depth), rng.randint(0, depth)):
        compressed[b] = True
    pick = torch.randperm(len(stream.source[0]), generator=torch.Generator().manual_seed(seed))[: cfg.window_size]
    target, policy = simulated_target(stream.source[0][pick], seed)
    test = (simulated_target(held_out, seed)[0], stream.source_test[1])
    stats = window_stats(offline.kb, src_moments, target[: cfg.stat_size], device)
    sample = hardest_sample(offline.kb, target[: cfg.batch_size], device)
    small = freeze_head(edge_model(offline.kb, sample, compressed, cfg.sparsity))
    curve = retrain(
        small,
        [p for p in small.parameters() if p.requires_grad],
        stream.source,
        target,
        test,
        steps=cfg.law_iterations,
        batch_size=cfg.batch_size,
        lr=cfg.retrain_lr,
        mmd_weight=cfg.mmd_weight,
        eval_every=cfg.eval_every,
        seed=seed,
        device=device,
    )
    plan = {f"c{b}": int(c) for b, c in enumerate(compressed)}
    return [{"trial": t, "policy": policy, **c, **plan, **stats} for c in curve]


def fit_law(cfg: RetrainingConfig, points: pd.DataFrame, depth: int) -> tuple[dict[str, ScalingLaw], pd.DataFrame, str]:
    """Both forms fitted on the training trials, their fit table, and the form with the lower held-out MAE (the one
    used online)."""
    laws, table = compare_forms(points, depth, STATS, holdout=cfg.law_holdout, seed=cfg.seed)
    return laws, table, choose_form(table)


def law_scatter(laws: dict[str, ScalingLaw], points: pd.DataFrame, cfg: RetrainingConfig) -> pd.DataFrame:
    """Predicted vs measured accuracy of every point, per form, marked train or held-out by trial."""
    train, test = split_trials(points, holdout=cfg.law_holdout, seed=cfg.seed)
    frames = []
    for form, law in laws.items():
        for split, part in (("train", train), ("held-out", test)):
            pred = [_predict_point(law, r) for r in part.to_dict("records")]
            frames.append(
                pd.DataFrame(
                    {
                        "form": form,
                        "split": split,
                        "trial": part.trial.values,
                        "iteration": part.iteration.values,
                        "measured": part.accuracy.values,
                        "predicted": pred,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _predict_point(law: ScalingLaw, r: dict) -> float:
    compressed = np.array([[r[f"c{b}"] for b in range(law.num_blocks)]], dtype=float)
    stats = np.array([r[s] for s in law.stat_names])
    return float(law.predict(np.array([r["iteration"]]), compressed, stats)[0, 0])


# ---------------------------------------------------------------------------------------------- the stream
def online(
    cfg: RetrainingConfig, offline: Offline, law: ScalingLaw, stream: Stream, device, force: bool = False
) -> dict[str, pd.DataFrame]:
    """The whole stream for every method, then the accuracy-vs-budget sweep over the first `budget_domains`."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (ONLINE.reads)
        start = time.perf_counter()
        tables = run_stream(cfg, offline, law, stream, stream.windows, folder / "stream", device)
        return _stream_result(ONLINE.name, cfg.seed, tables, ("rows", "curves"), folder, start, device)

    _, folder = ONLINE.run(cfg, compute, force=force, law=law.to_dict())
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in ("rows", "curves")}
    tables["budget"] = budget_sweep(cfg, offline, law, stream, tables["rows"], device, force)
    return tables


def budget_sweep(cfg, offline, law, stream, rows: pd.DataFrame, device, force: bool = False) -> pd.DataFrame:
    """Mean accuracy after retraining over the first `budget_domains` windows at each budget factor (BlockTrainer and
    the fixed compressed model); factor 1 is the main stream's own first windows, every other factor is a cached
    stage of its own."""
    out = []
    for factor in cfg.budget_factors:
        part = (
            rows[rows.window < cfg.budget_domains]
            if factor == 1.0
            else _budget_rows(cfg, offline, law, stream, factor, device, force)
        )
        for method in ("blocktrainer", "fixed"):
            sel = part[part.method == method]
            out.append(
                {
                    "budget_factor": factor,
                    "method": method,
                    "accuracy": sel.after.mean(),
                    "iterations": sel.iterations.mean(),
                }
            )
    return pd.DataFrame(out)


def _budget_rows(cfg, offline: Offline, law: ScalingLaw, stream: Stream, factor: float, device, force: bool):
    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (BUDGET.reads)
        start = time.perf_counter()
        head = stream.windows[: cfg.budget_domains]
        tables = run_stream(
            cfg,
            offline,
            law,
            stream,
            head,
            folder / "stream",
            device,
            factor=factor,
            methods=("blocktrainer", "fixed"),
            desc=f"budget ×{factor:g}",
        )
        return _stream_result(BUDGET.name, cfg.seed, tables, ("rows",), folder, start, device)

    _, folder = BUDGET.run(cfg, compute, force=force, law=law.to_dict(), factor=factor)
    return pd.read_csv(folder / "rows.csv")


def _stream_result(stage: str, seed: int, tables, names, folder: Path, start: float, device) -> RunResult:
    """A stream stage's result: its `names` tables written as CSV artifacts beside the per-method averages."""
    for name in names:
        write_text(folder / f"{name}.csv", tables[name].to_csv(index=False))
    return RunResult(
        stage=stage,
        config={},  # the stage's key, stamped by Stage.run
        seed=seed,
        metrics=_averages(tables["rows"]),
        wall_time_s=time.perf_counter() - start,
        device=describe_device(device),
        versions=package_versions(),
        artifacts={name: f"{name}.csv" for name in names},
    )


def _averages(rows: pd.DataFrame) -> dict[str, float]:
    return {f"{m}_after": float(g.after.mean()) for m, g in rows.groupby("method")}


# ---------------------------------------------------------------------------------------------- summaries
def average_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean accuracy after each window's retraining, mean over each window's curve, and before."""
    table = rows.groupby("method", sort=False).agg(
        after=("after", "mean"),
        during=("mean", "mean"),
        before=("before", "mean"),
        iterations=("iterations", "mean"),
        domains=("window", "count"),
    )
    return table.reset_index()


def stream_law_quality(curves: pd.DataFrame) -> dict[str, float]:
    """The law's fit on the real stream: BlockTrainer's predicted vs measured curve points."""
    bt = curves[(curves.method == "blocktrainer") & curves.predicted.notna()]
    return agreement(bt.accuracy, bt.predicted)


def planner_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per window: greedy vs exact plan, their objectives, the greedy's relative gap and both solve times."""
    bt = rows[rows.method == "blocktrainer"].copy()
    bt["gap"] = (bt.exact_objective - bt.greedy_objective) / bt.exact_objective.abs().clip(lower=1e-12)
    return bt[
        [
            "window",
            "domain",
            "plan",
            "iterations",
            "exact_plan",
            "exact_iterations",
            "greedy_objective",
            "exact_objective",
            "gap",
            "greedy_ms",
            "exact_ms",
        ]
    ].reset_index(drop=True)
