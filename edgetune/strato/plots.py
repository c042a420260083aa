"""Figures of the PEFT section; each takes a measured table and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from edgetune.strato.spec import MODULES


def pareto_figure(table: pd.DataFrame, x: str, xlabel: str) -> plt.Figure:
    """Test score (mean ± std over seeds) against a cost per method, one panel per task."""
    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.2), squeeze=False)
    methods = list(dict.fromkeys(table.method))
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = table[table.task == task]
        for r in rows.itertuples():
            ax.errorbar(
                getattr(r, x),
                r.score,
                yerr=r.score_std,
                fmt="o",
                color=palette[r.method],
                label=r.method,
                capsize=2,
                ms=5,
            )
        ax.set(xscale="log", xlabel=xlabel, ylabel="test score (points)", title=task)
    axes[0][0].legend(frameon=False, fontsize=6)
    fig.tight_layout()
    return fig


def rank_heatmaps(ranks: pd.DataFrame) -> plt.Figure:
    """Per-layer, per-module ranks: rows are (method, stage), columns are tasks."""
    ranks = ranks.assign(what=ranks.method + np.where(ranks.stage == "initial", " (controller)", ""))
    whats = list(dict.fromkeys(ranks.sort_values("stage", ascending=False).what))
    tasks = list(dict.fromkeys(ranks.task))
    vmax = max(1, int(ranks["rank"].max()))
    fig, axes = plt.subplots(len(whats), len(tasks), figsize=(2.6 * len(tasks), 1.5 * len(whats)), squeeze=False)
    for i, what in enumerate(whats):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            rows = ranks[(ranks.what == what) & (ranks.task == task)]
            grid = rows.pivot_table(index="layer", columns="module", values="rank", aggfunc="first", observed=False)
            grid = grid.reindex(columns=list(MODULES)).fillna(0)
            sns.heatmap(
                grid.iloc[::-1],
                ax=ax,
                vmin=0,
                vmax=vmax,
                cmap="viridis",
                cbar=j == len(tasks) - 1,
                annot=True,
                fmt=".0f",
                annot_kws={"fontsize": 5},
            )
            ax.set(xlabel="", ylabel="layer" if j == 0 else "")
            ax.set_title(f"{what} · {task}", fontsize=7)
            ax.tick_params(labelsize=5)
    fig.tight_layout()
    return fig


def learning_curves(curves: pd.DataFrame) -> plt.Figure:
    """Training loss (top) and dev proxy score (bottom) against steps, mean over seeds, per task."""
    tasks = list(dict.fromkeys(curves.task))
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.3 * len(tasks), 5.0), squeeze=False, sharex=True)
    for j, task in enumerate(tasks):
        rows = curves[curves.task == task]
        sns.lineplot(rows, x="step", y="loss", hue="method", ax=axes[0][j], errorbar=None, legend=j == 0)
        axes[0][j].set(title=task, yscale="log")
        proxy = rows.dropna(subset=["dev_proxy"]) if "dev_proxy" in rows else rows.iloc[:0]
        if len(proxy):
            sns.lineplot(
                proxy, x="step", y="dev_proxy", hue="method", ax=axes[1][j], errorbar=None, marker="o", legend=False
            )
        axes[1][j].set(ylabel="dev answer-token accuracy (%)")
    if axes[0][0].get_legend() is not None:
        axes[0][0].legend(frameon=False, fontsize=6)
    fig.tight_layout()
    return fig


def overhead_figure(overhead: pd.DataFrame) -> plt.Figure:
    """Wall time of the LoRA run beside STRATO's run, its controller and rank schedule (and, hatched, the proxy
    fine-tunes of its search)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    x = np.arange(len(overhead))
    ax.bar(x - 0.2, overhead.lora_train_s, width=0.4, color="C0", label="LoRA run")
    bottom = np.zeros(len(overhead))
    for column, colour, label in (
        ("strato_train_s", "C2", "STRATO run"),
        ("controller_s", "C3", "controller (PPO)"),
        ("schedule_s", "C1", "rank schedule"),
    ):
        ax.bar(x + 0.2, overhead[column], bottom=bottom, width=0.4, color=colour, label=label)
        bottom += overhead[column].to_numpy()
    for k, r in enumerate(overhead.itertuples()):
        ax.text(k + 0.2, bottom[k], f"+{r.overhead_vs_lora:.1%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, overhead.task)
    ax.set(ylabel="wall time (s)", title="Controller + rank schedule vs the LoRA run (medians over seeds)")
    ax.legend(frameon=False, fontsize=6)
    return fig
