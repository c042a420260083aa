"""Figures of the assembling section; each takes a measured table and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

PHASE_COLOURS = {"PT": "C2", "MT": "C1", "FT": "C0", "E2E": "C3"}
METHOD_COLOURS = {"E2E": "C3", "assembling": "C4"}


def cost_figure(costs: pd.DataFrame) -> plt.Figure:
    """Left: final test accuracy per data share, E2E beside assembling (the bar height is the accuracy). Right: what
    each run cost, E2E beside assembling split into PT / MT / FT — the budgets the accuracies were bought with."""
    shares = list(dict.fromkeys(costs.data))
    methods = [m for m in ("E2E", "assembling") if m in set(costs.method)]
    fig, (acc_ax, cost_ax) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1.1, 1]})
    width = 0.8 / len(methods)
    x = np.arange(len(shares))
    accuracy = costs.groupby(["data", "method"], sort=False).accuracy.first()
    for m, method in enumerate(methods):
        heights = [accuracy.get((share, method), np.nan) for share in shares]
        bars = acc_ax.bar(
            x + (m - (len(methods) - 1) / 2) * width,
            heights,
            width=width * 0.95,
            color=METHOD_COLOURS[method],
            label=method,
        )
        acc_ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    acc_ax.set_xticks(x, [f"{s:.0%}" for s in shares])
    top = float(costs.accuracy.max())
    acc_ax.set(
        xlabel="share of the training data",
        ylabel="final test accuracy",
        ylim=(0, min(1.0, top * 1.15) if top <= 1 else top * 1.15),
        title="Accuracy at equal training cost",
    )
    acc_ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(methods))

    seen: set[str] = set()
    for k, share in enumerate(shares):
        for m, method in enumerate(methods):
            rows = costs[(costs.data == share) & (costs.method == method)]
            bottom, pos = 0.0, k + (m - (len(methods) - 1) / 2) * width
            for row in rows.itertuples():
                cost_ax.bar(
                    pos,
                    row.tflops,
                    bottom=bottom,
                    color=PHASE_COLOURS.get(row.phase, "C7"),
                    width=width * 0.95,
                    label=None if row.phase in seen else _phase_label(method, row.phase),
                )
                seen.add(row.phase)
                bottom += row.tflops
    cost_ax.set_xticks(x, [f"{s:.0%}" for s in shares])
    cost_ax.set(
        xlabel="share of the training data", ylabel="training cost (TFLOPs)", title="Training cost, split by phase"
    )
    cost_ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    return fig


def _phase_label(method: str, phase: str) -> str:
    return phase if phase == method else f"{method}: {phase}"


def convergence_figure(curve: pd.DataFrame) -> plt.Figure:
    """Test accuracy against cumulative training cost (assembling's curve starts after PT + MT)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(curve, x="tflops", y="accuracy", hue="method", marker="o", ax=ax, errorbar=None)
    ax.set(xlabel="cumulative training cost (TFLOPs)", ylabel="test accuracy", title="Convergence (100 % data)")
    ax.legend(frameon=False, fontsize=7)
    return fig


def assembly_figure(summary: pd.DataFrame) -> plt.Figure:
    """Accuracy right after stitching the modules vs after fine-tuning, per data share."""
    long = summary.melt(
        id_vars="data",
        value_vars=["assembled_before_ft", "assembling_accuracy", "e2e_accuracy"],
        var_name="model",
        value_name="accuracy",
    )
    long["model"] = long.model.map(
        {"assembled_before_ft": "assembled, before FT", "assembling_accuracy": "assembled + FT", "e2e_accuracy": "E2E"}
    )
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    sns.barplot(long, x="data", y="accuracy", hue="model", ax=ax, errorbar=None)
    ax.set(xlabel="share of the training data", ylabel="test accuracy", title="Right after assembling vs after FT")
    ax.legend(frameon=False, fontsize=7)
    return fig
