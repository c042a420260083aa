"""Figures of the assembling section; each takes a measured table and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

PHASE_COLOURS = {"PT": "C2", "MT": "C1", "FT": "C0", "E2E": "C3"}


def cost_figure(costs: pd.DataFrame) -> plt.Figure:
    """Training cost per data share, E2E beside assembling split into PT / MT / FT, with final accuracy on top."""
    shares = list(dict.fromkeys(costs.data))
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for k, share in enumerate(shares):
        for m, method in enumerate(("E2E", "assembling")):
            rows = costs[(costs.data == share) & (costs.method == method)]
            bottom, x = 0.0, k * 3 + m
            for row in rows.itertuples():
                ax.bar(
                    x,
                    row.tflops,
                    bottom=bottom,
                    color=PHASE_COLOURS[row.phase],
                    width=0.9,
                    label=row.phase if k == 0 else None,
                )
                bottom += row.tflops
            ax.text(x, bottom, f"{rows.accuracy.iloc[0]:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([k * 3 + 0.5 for k in range(len(shares))], [f"{s:.0%} data" for s in shares])
    ax.set(ylabel="training cost (TFLOPs)", title="Equal cost: E2E (left) vs assembling (right); top: accuracy")
    ax.legend(frameon=False, fontsize=7)
    return fig


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
