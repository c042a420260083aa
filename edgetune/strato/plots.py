"""Figures of the PEFT section; each takes a measured table and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from edgetune.strato.spec import MODULES
from edgetune.strato.tasks import CHOICES, KINDS

# The score a model gets by guessing, in points, per task kind: one of the letters for multiple choice; nothing for
# exact-match numbers (GSM8K) and pass@1 code (HumanEval).
CHANCE = {"choice": 100.0 / len(CHOICES), "number": 0.0, "code": 0.0}


def chance_score(task: str) -> float | None:
    """Chance level of `task` in points, or None when the task's kind is unknown."""
    return CHANCE.get(KINDS.get(task, ""))


def _log_cost_axis(ax: plt.Axes, values: pd.Series) -> None:
    """A log x axis whose labels never collide: over less than a decade, a few round linear ticks in engineering
    notation (20k, 80G) instead of matplotlib's labelled minor ticks; over more, decades only."""
    ax.set_xscale("log")
    lo, hi = float(values.min()), float(values.max())
    if lo > 0 and hi / lo < 10:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=4, min_n_ticks=2))
    else:
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, numticks=5))
    ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.margins(x=0.08)


def pareto_figure(table: pd.DataFrame, x: str, xlabel: str) -> plt.Figure:
    """Test score (mean ± std over seeds) against a cost per method, one panel per task, with the task's chance
    score as a dashed line; one legend for all panels, below them."""
    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.2), squeeze=False)
    methods = list(dict.fromkeys(table.method))
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    handles: dict[str, object] = {}
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = table[table.task == task]
        for r in rows.itertuples():
            handles[r.method] = ax.errorbar(
                getattr(r, x),
                r.score,
                yerr=r.score_std,
                fmt="o",
                color=palette[r.method],
                label=r.method,
                capsize=2,
                ms=5,
            )
        chance = chance_score(task)
        if chance is not None:
            handles["chance"] = ax.axhline(chance, color="0.45", ls="--", lw=0.9, zorder=0, label="chance")
        _log_cost_axis(ax, rows[x])
        items = ", ".join(str(n) for n in dict.fromkeys(rows["items"]))  # one count unless a run was cut short
        ax.set(xlabel=xlabel, ylabel="test score (points)", title=f"{task} (n = {items})")
    labels = [m for m in (*methods, "chance") if m in handles]
    fig.tight_layout()
    fig.legend(
        [handles[m] for m in labels],
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(labels),
        frameon=False,
        fontsize=7,
    )
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
    """Wall time of the LoRA run beside STRATO's run with its controller and rank schedule stacked on top, and
    (hatched) the proxy fine-tunes of STRATO's search, each labelled relative to the LoRA run."""
    search = "search_s" in overhead
    width = 0.27 if search else 0.4
    offsets = (-width, 0.0, width) if search else (-width / 2, width / 2)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    x = np.arange(len(overhead))
    ax.bar(x + offsets[0], overhead.lora_train_s, width=width, color="C0", label="LoRA run")
    bottom = np.zeros(len(overhead))
    for column, colour, label in (
        ("strato_train_s", "C2", "STRATO run"),
        ("controller_s", "C3", "controller (PPO)"),
        ("schedule_s", "C1", "rank schedule"),
    ):
        ax.bar(x + offsets[1], overhead[column], bottom=bottom, width=width, color=colour, label=label)
        bottom += overhead[column].to_numpy()
    for k, r in enumerate(overhead.itertuples()):
        ax.text(k + offsets[1], bottom[k], f"+{r.overhead_vs_lora:.1%}", ha="center", va="bottom", fontsize=7)
    title = f"STRATO vs the LoRA run: controller + rank schedule ≤ +{overhead.overhead_vs_lora.max():.1%}"
    if search:
        runs = overhead.get("search_evaluations", pd.Series(dtype=float)).dropna().unique()
        what = f"{int(runs[0])} proxy fine-tunes" if len(runs) == 1 else "proxy fine-tunes"
        ax.bar(
            x + offsets[2],
            overhead.search_s,
            width=width,
            color="white",
            edgecolor="C4",
            hatch="///",
            label=f"STRATO search ({what})",
        )
        for k, r in enumerate(overhead.itertuples()):
            ax.text(k + offsets[2], r.search_s, f"{r.search_vs_lora:.1f}×", ha="center", va="bottom", fontsize=7)
        lo, hi = overhead.search_vs_lora.min(), overhead.search_vs_lora.max()
        span = f"{lo:.1f}–{hi:.1f}×" if f"{lo:.1f}" != f"{hi:.1f}" else f"{hi:.1f}×"
        title += f",\nbut its search costs {span} the LoRA run"
    ax.margins(y=0.1)
    ax.set_xticks(x, overhead.task)
    ax.set(ylabel="wall time (s, medians over seeds)", title=title)
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    return fig
