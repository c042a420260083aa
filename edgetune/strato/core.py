"""The PEFT section's pipeline: every (task, seed, method) run through the cache, then the tables the notebook shows —
scores and costs per run, their mean and spread across seeds, the success criteria against LoRA, the controller's
overhead, ranks per layer and learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from edgetune.progress import progress
from edgetune.strato import recipe, train
from edgetune.strato.config import PeftComparisonConfig
from edgetune.strato.spec import MODULES

LABELS = {
    "lora": "LoRA",
    "rslora": "rsLoRA",
    "lora_mlp": "LoRA (MLP only)",
    "adalora": "AdaLoRA",
    "dora": "DoRA",
    "strato": "STRATO",
}


def run_all(cfg: PeftComparisonConfig, *, force: bool = False) -> pd.DataFrame:
    """One row per (task, seed, method) with the run's score, costs and timings (each run cached).

    The base model is pretrained first, in this process; then STRATO's searching runs, then every other run, each
    phase spread over `cfg.workers` processes (small models leave cores and a GPU mostly idle, so parallel runs are
    nearly free). Runs never share state: each is one cached stage keyed by its own config.
    """
    configs = {(t, s, m): cfg.run_config(t, s, m) for t in cfg.tasks for s in cfg.seeds for m in cfg.methods}
    first = next(iter(configs.values()))
    train.base_model(first, train.resolve_device(first.device.device_type))  # pretrain (or load) once, here
    searching = [k for k in configs if k[2] == "strato" and (cfg.search_every_seed or k[1] == cfg.seeds[0])]
    done = _run_jobs([configs[k] for k in searching], cfg.workers, force)
    rest = [k for k in configs if k not in searching]
    done += _run_jobs([configs[k] for k in rest], cfg.workers, force)
    by_key = dict(zip(searching + rest, done, strict=True))
    return pd.DataFrame([_row(*k, *by_key[k]) for k in configs])


def _job(config, force: bool, threads: int) -> tuple[dict, str]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    result, folder = recipe.run(config, force=force)
    return result.metrics, str(folder)


def _run_jobs(configs: list, workers: int, force: bool) -> list[tuple[dict, str]]:
    if workers <= 1 or len(configs) <= 1:
        return [_job(c, force, 0) for c in progress(configs, desc="PEFT runs")]
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_job, c, force, threads) for c in configs]
        return [f.result() for f in progress(futures, desc=f"PEFT runs ({workers} processes)")]


def _row(task: str, seed: int, method: str, m: dict, folder: str) -> dict:
    return {
        "task": task,
        "seed": seed,
        "method": LABELS[method],
        "score": m["test_score"],
        "items": m["test_items"],  # the number of items behind the score
        "score_flexible": m["test_score_flexible"],  # GSM8K's lenient match beside the official strict score
        "params": m["params_adapter_final"],
        "params_training": m["params_trainable_peak"],
        "train_flops": m["train_flops"],
        "flops_per_step": m["flops_per_step"],
        "memory_mb": m["step_memory_bytes"] / 2**20,
        "train_s": m["train_s"],
        "schedule_s": m["schedule_s"],
        "controller_s": m.get("search_controller_s", 0.0),
        "search_s": m.get("search_evaluate_s", 0.0),
        "search_evaluations": m.get("search_evaluations", 0),
        "controller_parameters": m.get("search_controller_parameters", 0),
        "resizes": m["resizes"],
        "folder": folder,
    }


def item_scores(runs: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Per (task, method): which test items each seed got right, in points — an array (seeds, items) of 0 or 100,
    seeds in the same order for every method (so methods pair item by item and seed by seed)."""
    out = {}
    for (task, method), group in runs.sort_values("seed").groupby(["task", "method"], sort=False):
        rows = []
        for folder in group.folder:
            metrics = json.loads((Path(folder) / "result.json").read_text())["metrics"]
            if "test_correct" not in metrics:
                raise ValueError(f"{folder}: a run from before per-item scores were recorded; rerun with force=True")
            rows.append(metrics["test_correct"])
        out[task, method] = 100.0 * np.asarray(rows, dtype=float)
    return out


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (across seeds, ddof 1) per task and method, the number of items each score is
    measured on, and costs relative to LoRA's. `score` is each task's official metric (GSM8K: the strict match
    after "####"); `score_flexible` GSM8K's lenient match, empty for the other tasks."""
    grouped = runs.groupby(["task", "method"], sort=False)
    table = grouped.agg(
        score=("score", "mean"),
        score_std=("score", "std"),
        items=("items", "first"),
        score_flexible=("score_flexible", "mean"),
        params=("params", "mean"),
        params_training=("params_training", "mean"),
        train_flops=("train_flops", "mean"),
        memory_mb=("memory_mb", "mean"),
        train_s=("train_s", "median"),
        seeds=("seed", "nunique"),
    ).reset_index()
    lora = table[table.method == "LoRA"].set_index("task")
    table["params_vs_lora"] = table.params / table.task.map(lora.params)
    table["flops_vs_lora"] = table.train_flops / table.task.map(lora.train_flops)
    table["score_vs_lora"] = table.score - table.task.map(lora.score)
    return table.fillna({"score_std": 0.0})


def _all_three(efficiency: bool, accuracy: bool, stability: bool | None) -> bool | None:
    if not (efficiency and accuracy) or stability is False:
        return False
    return None if stability is None else True


def criteria(table: pd.DataFrame) -> pd.DataFrame:
    """STRATO-PEFT's own success criteria per task: parameters ≤ 0.7× LoRA or training FLOPs ≤ 0.8× LoRA; score
    ≥ LoRA − 0.5 points; standard deviation across seeds ≤ 0.4 points (None, n/a, with one seed). `all_three` is
    False once one criterion fails, None while stability is n/a and the others are met."""
    s = table[table.method == "STRATO"].set_index("task")
    lora = table[table.method == "LoRA"].set_index("task")
    out = pd.DataFrame(
        {
            "params_vs_lora": s.params_vs_lora,
            "flops_vs_lora": s.flops_vs_lora,
            "efficiency": (s.params_vs_lora <= 0.7) | (s.flops_vs_lora <= 0.8),
            "strato_score": s.score,
            "lora_score": lora.score,
            "score_gap": s.score - lora.score,
            "accuracy": s.score >= lora.score - 0.5,
            "strato_std": s.score_std,
            "seeds": s.seeds,
            # one seed has no spread to judge: n/a (None), not "not met"
            "stability": [bool(std <= 0.4) if n >= 2 else None for std, n in zip(s.score_std, s.seeds, strict=True)],
        }
    )
    out["all_three"] = [_all_three(*row) for row in zip(out.efficiency, out.accuracy, out.stability, strict=True)]
    return out.reset_index()


def overhead(runs: pd.DataFrame) -> pd.DataFrame:
    """The controller and the rank schedule against the LoRA run they tune, side by side (medians over seeds).

    `controller_s` is the PPO controller's own time (policy, rollouts, updates), without the proxy fine-tunes it
    asks for; those are `search_s`, reported beside it as the search's training cost."""
    med = runs.groupby(["task", "method"]).median(numeric_only=True)
    rows = []
    for task in runs.task.unique():
        lora, strato = med.loc[(task, "LoRA")], med.loc[(task, "STRATO")]
        rows.append(
            {
                "task": task,
                "lora_train_s": lora.train_s,
                "strato_train_s": strato.train_s,
                "controller_s": strato.controller_s,
                "schedule_s": strato.schedule_s,
                "overhead_vs_lora": (strato.controller_s + strato.schedule_s) / lora.train_s,
                "search_s": strato.search_s,
                "search_vs_lora": strato.search_s / lora.train_s,
                "search_evaluations": strato.search_evaluations,
            }
        )
    return pd.DataFrame(rows)


def ranks(runs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Long table of adapter ranks per (task, method, stage, layer, module): LoRA's, AdaLoRA's after its allocator,
    STRATO's from the controller (initial) and after the rank schedule (final)."""
    rows = []
    for r in runs[runs.seed == seed].itertuples():
        stored = json.loads((Path(r.folder) / "ranks.json").read_text())
        stages = {"final": stored["final"]}
        if r.method == "STRATO":
            stages["initial"] = stored["initial"]
        for stage, names in stages.items():
            for name, rank in names.items():
                parts = name.split(".")
                rows.append(
                    {
                        "task": r.task,
                        "method": r.method,
                        "stage": stage,
                        "layer": int(parts[2]),
                        "module": parts[-1],
                        "rank": rank,
                    }
                )
    out = pd.DataFrame(rows)
    out["module"] = pd.Categorical(out.module, categories=list(MODULES), ordered=True)
    return out


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Training loss and dev proxy score per step of every run."""
    frames = []
    for r in runs.itertuples():
        history = json.loads((Path(r.folder) / "result.json").read_text())["history"]
        frame = pd.DataFrame(history)
        frames.append(frame.assign(task=r.task, seed=r.seed, method=r.method))
    return pd.concat(frames, ignore_index=True)
