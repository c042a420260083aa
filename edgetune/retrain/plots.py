"""Figures of the retraining section (PAPERS.md §2); each takes a measured table and returns a matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from edgetune.retrain.online import LABELS

ORDER = ["blocktrainer", "blocktrainer-fm", "fixed", "fixed-lora", "fm"]


def stream_figure(curves: pd.DataFrame, rows: pd.DataFrame) -> plt.Figure:
    """Accuracy over the stream: each window's retraining curve laid end to end (x = window + share of its
    iterations), methods without retraining as one point per window — BlockTrainer's Fig. (eval_result) layout."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for k, method in enumerate(m for m in ORDER if m in set(rows.method)):
        colour = f"C{k}"
        part = curves[curves.method == method]
        if len(part):
            span = part.groupby("window").iteration.transform("max").clip(lower=1)
            ax.plot(part.window + 0.9 * part.iteration / span, part.accuracy, color=colour, lw=1, label=LABELS[method])
        else:
            r = rows[rows.method == method]
            ax.plot(r.window + 0.45, r.after, color=colour, lw=1, ls="--", marker=".", label=LABELS[method])
    n = rows.window.max() + 1
    ax.set_xticks(np.arange(n) + 0.45, [str(i) for i in range(n)], fontsize=6)
    ax.set(
        xlabel="window (target domain) over time",
        ylabel="held-out accuracy",
        title="Accuracy over the domain stream, every method at the same per-window budget",
    )
    ax.legend(frameon=False, fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.2))
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
    ax.legend(frameon=False, fontsize=7)
    return fig
