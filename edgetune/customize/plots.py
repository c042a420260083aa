"""Figures of the customization section. Each takes a measured table and returns a matplotlib figure; the notebook
saves it with `edgetune.figures.save_figure` beside exactly that table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
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
    """Backbone selectors compared on predicted accuracy, normalized size and energy, trade-off and, where the
    table has it, selection time (the notebook leaves the host's timing out of the tracked figure)."""
    metrics = [
        ("accuracy", "predicted accuracy"),
        ("size", "normalized size"),
        ("energy", "normalized energy"),
        ("seconds", "selection time (s)"),
        ("tradeoff", "trade-off acc − ½(size + energy)"),
    ]
    metrics = [(column, label) for column, label in metrics if column in selection.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(13, 2.8))
    for ax, (column, label) in zip(axes, metrics, strict=True):
        ax.bar(selection.method, selection[column], color=[f"C{i}" for i in range(len(selection))])
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    return fig


def _panels_with_colorbar(n: int, panel_width: float, height: float) -> tuple[plt.Figure, list[plt.Axes], plt.Axes]:
    """`n` heatmap panels in a row and one narrow axes on the right for the colour scale they all share."""
    fig, axes = plt.subplots(
        1, n + 1, figsize=(panel_width * n + 0.6, height), gridspec_kw={"width_ratios": [1] * n + [0.05]}
    )
    return fig, list(axes[:-1]), axes[-1]


def header_size_figure(sizes: pd.DataFrame) -> plt.Figure:
    """Header accuracy over cells per layer (B) × layers (U), at the smallest and the full backbone, on one shared
    colour scale."""
    backbones = list(dict.fromkeys(sizes.backbone))
    fig, axes, cax = _panels_with_colorbar(len(backbones), 3.8, 3)
    vmin, vmax = float(sizes.accuracy.min()), float(sizes.accuracy.max())
    for k, (ax, name) in enumerate(zip(axes, backbones, strict=True)):
        table = sizes[sizes.backbone == name].pivot(index="nodes", columns="layers", values="accuracy")
        _shared_heatmap(
            table, ax, cax if k == len(backbones) - 1 else None, (vmin, vmax), "top-1 accuracy", ".3f", "mako"
        )
        ax.set(title=f"backbone {name}", xlabel="layers U", ylabel="cells per layer B" if k == 0 else "")
    fig.tight_layout()
    return fig


def _shared_heatmap(table, ax, cax, limits, label: str, fmt: str, cmap: str, fontsize: float | None = None) -> None:
    """One annotated panel of a row that shares a colour scale (`limits`); the colorbar is drawn where `cax` is
    given (the last panel)."""
    sns.heatmap(
        table,
        annot=True,
        fmt=fmt,
        cmap=cmap,
        ax=ax,
        vmin=limits[0],
        vmax=limits[1],
        cbar=cax is not None,
        cbar_ax=cax,
        cbar_kws={"label": label},
        annot_kws={"fontsize": fontsize} if fontsize else None,
    )


def similarity_figure(weights: dict[str, pd.DataFrame]) -> plt.Figure:
    """The edge's device-mixing matrices W under EMD and JS (row-softmax of similarities), on one colour scale over
    a weight's whole range, 0 to 1, so near-uniform mixing (every weight ≈ 1/devices) looks uniform."""
    fig, axes, cax = _panels_with_colorbar(len(weights), 3.8, 3.2)
    vmax = max(1.0, *(float(table.to_numpy().max()) for table in weights.values()))
    devices = max(table.shape[1] for table in weights.values())
    label = f"mixing weight (uniform = 1/{devices} = {1 / devices:.3f})"
    for k, (ax, (name, table)) in enumerate(zip(axes, weights.items(), strict=True)):
        _shared_heatmap(table, ax, cax if k == len(weights) - 1 else None, (0, vmax), label, ".4f", "rocket_r", 7)
        ax.set(title=f"W ({name})", xlabel="device", ylabel="device" if k == 0 else "")
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
    """Bytes per direction and payload, ACME against a centralized system that uploads the devices' data; the total
    of each bar written at its end."""
    table = traffic.groupby(["system", "direction", "what"], as_index=False)["bytes"].sum()
    table["bar"] = table.system + " " + table.direction
    wide = table.pivot(index="bar", columns="what", values="bytes").fillna(0) / 1e6
    colours = dict(zip(wide.columns, plt.get_cmap("tab20")(np.linspace(0, 1, len(wide.columns))), strict=True))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    y = np.arange(len(wide))
    left = np.zeros(len(wide))
    for what in wide.columns:
        width = wide[what].to_numpy()
        shown = width > 0  # a zero-width segment would still pin the axis limit to its edge
        ax.barh(y[shown], width[shown], left=left[shown], height=0.7, color=colours[what], label=what)
        left += width
    for k, total in enumerate(left):
        ax.text(total, k, f" {total:.3g} MB", va="center", ha="left", fontsize=7)
    ax.set_xlim(0, left.max() * 1.18)
    ax.set_yticks(y, wide.index)
    ax.set(xlabel="MB transmitted", ylabel="", title="Communication: ACME vs centralized")
    ax.legend(frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig
