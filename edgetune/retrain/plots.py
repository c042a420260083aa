"""Figures of the retraining section (docs/blocktrainer.md#figures-and-claims); each takes a measured table and
returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from edgetune.retrain.online import LABELS as METHOD_NAMES

ORDER = ["blocktrainer", "blocktrainer-fm", "fixed", "fixed-lora", "fm"]
# Spelled-out legend names ("fm" is BlockTrainer's foundation model: the large model the edge models are cut from).
LABELS = {
    **METHOD_NAMES,
    "blocktrainer": "BlockTrainer edge model (retrained)",
    "blocktrainer-fm": "foundation model, BlockTrainer updates merged",
    "fixed": "fixed compressed model, full retraining",
    "fixed-lora": "fixed compressed model, LoRA retraining",
    "fm": "foundation model, never retrained",
}
# Top panel: the small models retrained every window; bottom: the foundation model, with and without the merges.
EDGE, FOUNDATION = ("blocktrainer", "fixed", "fixed-lora"), ("blocktrainer-fm", "fm")
STYLE = {  # BlockTrainer in front and bold, the baselines thin and light behind it
    "blocktrainer": {"color": "C0", "lw": 1.8, "alpha": 1.0, "zorder": 3},
    "fixed": {"color": "C2", "lw": 0.9, "alpha": 0.75, "zorder": 2},
    "fixed-lora": {"color": "C3", "lw": 0.9, "alpha": 0.75, "zorder": 2},
    "blocktrainer-fm": {"color": "C0", "lw": 1.6, "alpha": 1.0, "zorder": 3, "marker": "o", "ms": 3.5},
    "fm": {"color": "0.45", "lw": 0.9, "alpha": 0.9, "zorder": 2, "marker": "s", "ms": 3, "ls": "--"},
}


def stream_figure(curves: pd.DataFrame, rows: pd.DataFrame) -> plt.Figure:
    """Accuracy over the stream in two panels sharing the window axis. Top: the edge models retrained in each window,
    each window's curve drawn on its own (x = window + share of its iterations); BlockTrainer bold, the fixed
    compressed baselines thin. Bottom: the foundation model after each window's merge vs never retrained (one point
    per window)."""
    present = set(rows.method)
    n = int(rows.window.max()) + 1
    panels = [
        (group, title)
        for group, title in (
            (EDGE, "Edge models, retrained in every window at the same per-window budget"),
            (FOUNDATION, "Foundation model (fm): BlockTrainer's merged updates vs none"),
        )
        if present & set(group)
    ]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, 2.0 + 1.6 * len(panels)),
        sharex=True,
        sharey=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1.6 if group == EDGE else 1 for group, _ in panels]},
    )
    for ax, (group, title) in zip(axes[:, 0], panels, strict=True):
        for method in (m for m in ORDER if m in present and m in group):
            style = {"color": f"C{ORDER.index(method)}", "lw": 1.0, **STYLE.get(method, {})}
            part = curves[curves.method == method].sort_values(["window", "iteration"]) if len(curves) else curves
            if len(part):
                span = part.groupby("window").iteration.transform("max").clip(lower=1)
                x = part.window + 0.9 * part.iteration / span
                # a gap between windows: each window's retraining reads as its own curve
                breaks = np.flatnonzero(part.window.ne(part.window.shift()).to_numpy()[1:]) + 1
                xs = np.insert(x.to_numpy().astype(float), breaks, np.nan)
                ys = np.insert(part.accuracy.to_numpy().astype(float), breaks, np.nan)
                ax.plot(xs, ys, label=LABELS.get(method, method), **style)
            else:
                r = rows[rows.method == method].sort_values("window")
                ax.plot(r.window + 0.45, r.after, label=LABELS.get(method, method), **style)
        for w in range(1, n):
            ax.axvline(w - 0.05, color="0.88", lw=0.6, zorder=0)
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set(ylabel="held-out accuracy")
        ax.set_title(title, fontsize=9)
    last = axes[-1, 0]
    last.set_xticks(np.arange(n) + 0.45, [str(i) for i in range(n)], fontsize=6)
    last.set(xlabel="window (target domain) over time", xlim=(-0.15, n))
    fig.suptitle("Accuracy over the domain stream", fontsize=10)
    fig.tight_layout()
    return fig


def average_figure(averages: pd.DataFrame) -> plt.Figure:
    long = averages.melt(id_vars="method", value_vars=["after", "during"], var_name="measure", value_name="accuracy")
    long["method"] = long.method.map(LABELS)
    long["measure"] = long.measure.map({"after": "after each window's retraining", "during": "mean over the window"})
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.barplot(long, y="method", x="accuracy", hue="measure", ax=ax, errorbar=None)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=6, padding=2)
    ax.set(ylabel="", xlabel="average accuracy over the stream", title="Average retraining accuracy")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    return fig


def law_figure(scatter: pd.DataFrame, stream: pd.DataFrame | None = None) -> plt.Figure:
    """Predicted vs measured accuracy for each functional form (train and held-out trials), plus the online
    stream's points for the form used online."""
    forms = list(dict.fromkeys(scatter.form))
    fig, axes = plt.subplots(1, len(forms), figsize=(4 * len(forms), 3.6), sharex=True, sharey=True, squeeze=False)
    for ax, form in zip(axes[0], forms, strict=True):
        part = scatter[scatter.form == form]
        sns.scatterplot(part, x="measured", y="predicted", hue="split", s=10, ax=ax, linewidth=0)
        if stream is not None and form == stream.attrs.get("form"):
            ax.scatter(stream.accuracy, stream.predicted, s=8, marker="x", color="C3", label="online stream")
        lo, hi = 0, 1
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        ax.set(title=f"{form} law", xlim=(lo, hi), ylim=(lo, hi))
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle("Retraining scaling law: predicted vs measured accuracy", fontsize=10)
    return fig


def plan_figure(rows: pd.DataFrame) -> plt.Figure:
    """Per window: which blocks the planner kept full (dark) or compressed, and the iterations it bought."""
    bt = rows[rows.method == "blocktrainer"].sort_values("window")
    grid = np.array([[ch == "F" for ch in plan] for plan in bt.plan], dtype=float).T  # (blocks, windows)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 3.8), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.imshow(grid, aspect="auto", cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
    ax.set(ylabel="block", title="Plan per window: full (dark) vs compressed blocks")
    ax2.bar(np.arange(len(bt)), bt.iterations, color="C1")
    ax2.set(xlabel="window", ylabel="iterations")
    return fig


def budget_figure(budget: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    data = budget.assign(method=budget.method.map(LABELS))
    sns.lineplot(data, x="budget_factor", y="accuracy", hue="method", marker="o", ax=ax, errorbar=None)
    ax.set(
        xscale="log",
        xlabel="per-window budget (× default)",
        ylabel="mean accuracy after retraining",
        title="Accuracy vs budget",
    )
    ax.set_xticks(sorted(set(budget.budget_factor)), [f"{f:g}×" for f in sorted(set(budget.budget_factor))])
    ax.xaxis.set_minor_locator(ticker.NullLocator())  # log-axis minor labels (6×10⁻¹) collided with 0.5×
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return fig
