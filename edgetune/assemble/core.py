"""The assembling section: PT → MT (K modules) → FT against end-to-end training of the same model at the same
training cost (FLOPs, the meta model counted), at several shares of the training data."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from edgetune.assemble.config import AssemblingConfig
from edgetune.assemble.model import Division, assemble
from edgetune.assemble.train import AssembleConfig, data, evaluate, load_run, run
from edgetune.profiles import pick_device
from edgetune.runs import RunResult, cached
from edgetune.runs.stages import stage_key


def _common(cfg: AssemblingConfig, fraction: float) -> dict:
    return {**cfg.phase_fields(fraction), "checkpoint_every": 10_000}


def pipeline(cfg: AssemblingConfig, fraction: float, force: bool = False) -> dict[str, RunResult]:
    """All runs at one data share: PT, MT 0..K−1, FT, then E2E with as many steps as the assembling total costs.

    Each run is one cached stage (`runs/cache/assembling-<phase>-<hash>/`) keyed by its own phase config and the
    keys of the runs it starts from (MT from PT, FT from every MT, E2E from the cost of all three), so changing
    `ft_steps` retrains FT and E2E only, and every data share has its own runs."""
    common = _common(cfg, fraction)
    runs, folders = {}, {}

    def phase(name: str, config: AssembleConfig, upstream: tuple[str, ...]) -> None:
        runs[name], folders[name] = _phase(config, {u: folders[u].name for u in upstream}, force)

    phase("PT", AssembleConfig("PT", "", steps=cfg.pt_steps, **common), ())
    modules = [f"MT{i}" for i in range(len(cfg.depths))]
    for i, name in enumerate(modules):
        phase(name, AssembleConfig("MT", "", idx=i, meta=str(folders["PT"]), steps=cfg.mt_steps, **common), ("PT",))
    mt_dirs = tuple(str(folders[name]) for name in modules)
    phase("FT", AssembleConfig("FT", "", incubation=mt_dirs, steps=cfg.ft_steps, **common), tuple(modules))
    spent = sum(r.flops for r in runs.values())
    per_step = runs["FT"].flops / cfg.ft_steps  # E2E trains the same model as FT: the same cost per step
    e2e = AssembleConfig("E2E", "", steps=max(1, round(spent / per_step)), **common)
    phase("E2E", e2e, ("PT", *modules, "FT"))  # its length follows their cost
    runs["assembled"] = _assembled_accuracy(cfg, common, mt_dirs)
    return runs


def _phase(phase: AssembleConfig, upstream: dict[str, str], force: bool) -> tuple[RunResult, Path]:
    """One phase through the cache. Its key (`stage_key`): the phase's own config without its folders (the runs it
    starts from enter through their cache keys, `upstream`) and the version of the scene generator."""
    how = ("out_dir", "meta", "incubation", "workers", "compile")  # where and how it runs, not what it computes
    config = {k: v for k, v in asdict(phase).items() if k not in how}
    key = stage_key(config, upstream, versions=("scenes_version", "evaluation"))
    return cached(
        f"assembling-{phase.phase.lower()}", key, lambda folder: run(replace(phase, out_dir=str(folder))), force=force
    )


def _assembled_accuracy(cfg: AssemblingConfig, common: dict, mt_dirs: tuple[str, ...]) -> RunResult:
    """Accuracy of the stitched model right after assembling, before any fine-tuning."""
    ft_cfg = AssembleConfig("FT", "unused", incubation=mt_dirs, steps=1, **common)
    model = assemble([load_run(Path(d), ft_cfg) for d in mt_dirs], Division(cfg.depths), ft_cfg.shape, cfg.num_classes)
    _, test = data(ft_cfg)
    device = pick_device("auto")
    scores = evaluate(model.to(device), test, device, cfg.workers)
    return RunResult(stage="assemble-stitched", config={}, seed=cfg.seed, metrics=scores, flops=0.0)


def cost_table(all_runs: dict[float, dict[str, RunResult]]) -> pd.DataFrame:
    """Per data share and method: final accuracy and training cost (TFLOPs), the assembling cost split by phase."""
    rows = []
    for fraction, runs in all_runs.items():
        for name, r in runs.items():
            if name in ("E2E", "assembled"):
                continue
            phase = "MT" if name.startswith("MT") else name
            rows.append(
                {
                    "data": fraction,
                    "method": "assembling",
                    "phase": phase,
                    "tflops": r.flops / 1e12,
                    "accuracy": runs["FT"].metrics["accuracy"],
                }
            )
        rows.append(
            {
                "data": fraction,
                "method": "E2E",
                "phase": "E2E",
                "tflops": runs["E2E"].flops / 1e12,
                "accuracy": runs["E2E"].metrics["accuracy"],
            }
        )
    table = pd.DataFrame(rows)
    return table.groupby(["data", "method", "phase"], as_index=False, sort=False).agg(
        tflops=("tflops", "sum"), accuracy=("accuracy", "first")
    )


def convergence(runs: dict[str, RunResult]) -> pd.DataFrame:
    """Test accuracy against cumulative training cost: E2E from zero, assembling's FT after PT + MT."""
    offset = sum(r.flops for n, r in runs.items() if n == "PT" or n.startswith("MT"))
    rows = []
    for method, r, start in (("E2E", runs["E2E"], 0.0), ("assembling (FT)", runs["FT"], offset)):
        per_step = r.flops / len(r.history)
        rows += [
            {
                "method": method,
                "step": h["step"],
                "tflops": (start + per_step * h["step"]) / 1e12,
                "accuracy": h["accuracy"],
            }
            for h in r.history
            if "accuracy" in h
        ]
    return pd.DataFrame(rows)


def speedup(curve: pd.DataFrame, e2e_final: float) -> float:
    """E2E's total cost over the cost at which assembling first reaches E2E's final accuracy (nan if never)."""
    e2e_cost = curve[curve.method == "E2E"].tflops.max()
    reached = curve[(curve.method == "assembling (FT)") & (curve.accuracy >= e2e_final)]
    return float(e2e_cost / reached.tflops.min()) if len(reached) else float("nan")


def summary(all_runs: dict[float, dict[str, RunResult]]) -> pd.DataFrame:
    """Per data share: E2E and assembling accuracy, the gain, accuracy right after assembling, and costs."""
    rows = []
    for fraction, runs in all_runs.items():
        parts = [r for n, r in runs.items() if n not in ("E2E", "assembled")]
        assembling_cost = sum(r.flops for r in parts)
        rows.append(
            {
                "data": fraction,
                "e2e_accuracy": runs["E2E"].metrics["accuracy"],
                "assembling_accuracy": runs["FT"].metrics["accuracy"],
                "gain_pp": 100 * (runs["FT"].metrics["accuracy"] - runs["E2E"].metrics["accuracy"]),
                "assembled_before_ft": runs["assembled"].metrics["accuracy"],
                "assembling_tflops": assembling_cost / 1e12,
                "e2e_tflops": runs["E2E"].flops / 1e12,
                "assembling_seconds": sum(r.wall_time_s for r in parts),
                "e2e_seconds": runs["E2E"].wall_time_s,
            }
        )
    return pd.DataFrame(rows)
