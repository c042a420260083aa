"""Figures of the customization section. Each takes a measured table and returns a matplotlib figure; the notebook
saves it with `edgetune.figures.save_figure` beside exactly that table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def surface_figure(grid: pd.DataFrame) -> plt.Figure:
    """Accuracy over width × depth, and its two cross-sections at width 0.75 and depth 0.75 (ACME's 3-D plots)."""
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    table = grid.pivot(index="depth", columns="width", values="accuracy").sort_index(ascending=False)
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", ax=ax0, cbar_kws={"label": "top-1 accuracy"})
    ax0.set(title="Elastic supernet: accuracy over width × depth", xlabel="width ratio", ylabel="depth ratio")
    for ax, fixed, vary in ((ax1, "depth", "width"), (ax2, "width", "depth")):
        cut = grid[grid[fixed] == 0.75].sort_values(vary)
        ax.plot(cut[vary], cut.accuracy, "o-")
        ax.set(xlabel=f"{vary} ratio", ylabel="top-1 accuracy", title=f"{fixed} = 0.75", xticks=cut[vary])
    fig.tight_layout()
    return fig


def header_figure(comparison: pd.DataFrame) -> plt.Figure:
    """Header accuracy against backbone size for each header (ACME's header comparison)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(
        comparison, x="backbone_params_m", y="accuracy", hue="head", style="head", markers=True, ax=ax, errorbar=None
    )
    ax.set(xlabel="sub-backbone parameters (M)", ylabel="top-1 accuracy", title="Headers across backbone sizes")
    ax.legend(frameon=False, fontsize=7)
    return fig


def pfg_figure(selection: pd.DataFrame) -> plt.Figure:
    """Backbone selectors compared on predicted accuracy, normalized size and energy, time and trade-off."""
    metrics = [
        ("accuracy", "predicted accuracy"),
        ("size", "normalized size"),
        ("energy", "normalized energy"),
        ("seconds", "selection time (s)"),
        ("tradeoff", "trade-off acc − ½(size + energy)"),
    ]
    fig, axes = plt.subplots(1, len(metrics), figsize=(13, 2.8))
    for ax, (column, label) in zip(axes, metrics, strict=True):
        ax.bar(selection.method, selection[column], color=[f"C{i}" for i in range(len(selection))])
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    return fig


def header_size_figure(sizes: pd.DataFrame) -> plt.Figure:
    """Header accuracy over cells per layer (B) × layers (U), at the smallest and the full backbone."""
    backbones = list(dict.fromkeys(sizes.backbone))
    fig, axes = plt.subplots(1, len(backbones), figsize=(4 * len(backbones), 3))
    for ax, name in zip(axes, backbones, strict=True):
        table = sizes[sizes.backbone == name].pivot(index="nodes", columns="layers", values="accuracy")
        sns.heatmap(table, annot=True, fmt=".3f", cmap="mako", ax=ax, cbar=False)
        ax.set(title=f"backbone {name}", xlabel="layers U", ylabel="cells per layer B")
    fig.tight_layout()
    return fig


def similarity_figure(weights: dict[str, pd.DataFrame]) -> plt.Figure:
    """The edge's device-mixing matrices W under EMD and JS (row-softmax of similarities)."""
    fig, axes = plt.subplots(1, len(weights), figsize=(4 * len(weights), 3.2))
    for ax, (name, table) in zip(axes, weights.items(), strict=True):
        sns.heatmap(table, annot=True, fmt=".3f", cmap="rocket_r", ax=ax, cbar=False)
        ax.set(title=f"W ({name})", xlabel="device", ylabel="device")
    fig.tight_layout()
    return fig


def personalization_figure(gains: pd.DataFrame) -> plt.Figure:
    """Mean device accuracy gain over the no-pruning reference, per method and split."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.barplot(gains, x="split", y="gain_pp", hue="method", ax=ax, errorbar=None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel="accuracy gain over no pruning (pp)", title="Personalized pruning of the header")
    ax.legend(frameon=False, fontsize=7)
    return fig


def communication_figure(traffic: pd.DataFrame) -> plt.Figure:
    """Bytes per direction and payload, ACME against a centralized system that uploads the devices' data."""
    table = traffic.groupby(["system", "direction", "what"], as_index=False)["bytes"].sum()
    table["bar"] = table.system + " " + table.direction
    wide = table.pivot(index="bar", columns="what", values="bytes").fillna(0) / 1e6
    fig, ax = plt.subplots(figsize=(7, 3.4))
    wide.plot.barh(stacked=True, ax=ax, colormap="tab20", width=0.7)
    ax.set(xlabel="MB transmitted", ylabel="", title="Communication: ACME vs centralized")
    ax.legend(frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig
