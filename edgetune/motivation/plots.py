"""Figures of the motivation section. Each function takes the measured table and returns a matplotlib figure;
the notebook saves it with `edgetune.figures.save_figure` beside exactly that table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def depth_figure(curve: pd.DataFrame) -> plt.Figure:
    """(a) Accuracy of the exit after each block, and ACME's modelled energy, against depth."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.plot(curve.blocks, curve.accuracy, "o-", color="C0", label="accuracy (early exit)")
    ax.set(xlabel="number of transformer blocks", ylabel="top-1 accuracy", ylim=(0, 1.02), xticks=curve.blocks)
    twin = ax.twinx()
    twin.plot(curve.blocks, curve.energy_ratio, "s--", color="C3", label="energy ratio (ACME model)")
    twin.set(ylabel="energy / energy of the full model", ylim=(0, 1.05))
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right", frameon=False)
    ax.set_title("Accuracy saturates while energy grows super-linearly")
    return fig


def device_figure(fit: pd.DataFrame, family: pd.DataFrame, devices) -> plt.Figure:
    """(b) Model sizes against device memory budgets, and modelled latency per device × model."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
    left.bar(family.model, family.size_mb, color="C0")
    left.set_yscale("log")
    for i, d in enumerate(devices):
        left.axhline(d.memory_mb, color=f"C{i + 1}", lw=0.8, ls=":")
        left.text(len(family) - 0.5, d.memory_mb, d.name, fontsize=6, va="bottom", ha="right", color=f"C{i + 1}")
    left.set(ylabel="fp32 weights (MB, log)", title="Model size vs device memory")
    left.tick_params(axis="x", rotation=45)
    latency = fit.pivot(index="device", columns="model", values="latency_ms").loc[[d.name for d in devices]]
    fits = fit.pivot(index="device", columns="model", values="fits").loc[latency.index]
    latency, fits = latency[family.model], fits[family.model]
    labels = latency.map(lambda v: f"{v:.3g}") + fits.map(lambda ok: "" if ok else "\n✗")
    sns.heatmap(
        np.log10(latency.clip(lower=1e-3)),
        annot=labels,
        fmt="",
        cmap="rocket_r",
        cbar_kws={"label": "log10 modelled latency (ms)"},
        ax=right,
        annot_kws={"fontsize": 6},
    )
    right.set(xlabel="", ylabel="", title="Modelled latency (ms); ✗ = over the memory or latency budget")
    right.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def splits_figure(hist: pd.DataFrame) -> plt.Figure:
    """(c) Label distribution of each client under every split, all on one colour scale (0 to the largest count)
    with one colour bar."""
    names = list(dict.fromkeys(hist.split))
    fig = plt.figure(figsize=(7.4, 0.75 * len(names) + 0.8))
    grid = fig.add_gridspec(len(names), 2, width_ratios=[1, 0.025])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[i, 0], sharex=axes[0]) for i in range(1, len(names))]
    cax = fig.add_subplot(grid[:, 1])
    vmax = float(hist["count"].max())
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        table = hist[hist.split == name].pivot(index="client", columns="label", values="count")
        last = k == len(names) - 1
        sns.heatmap(
            table,
            cmap="mako_r",
            vmin=0,
            vmax=vmax,
            cbar=last,
            cbar_ax=cax if last else None,
            cbar_kws={"label": "samples"},
            ax=ax,
            xticklabels=5 if table.shape[1] > 20 else 1,
        )
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_xlabel("")
        ax.tick_params(axis="y", labelsize=6)
        if not last:
            ax.tick_params(axis="x", bottom=False, labelbottom=False)
    axes[-1].set_xlabel("label")
    axes[0].set_title("Samples per client and label (rows: clients 0–4)")
    fig.tight_layout()
    return fig


def stream_figure(acc: pd.DataFrame) -> plt.Figure:
    """(d) Accuracy of the clear-trained model on each domain of the stream."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    colours = ["C2" if i == 0 else "C0" for i in acc["index"]]
    ax.bar(acc["index"], acc.accuracy, color=colours)
    ax.axhline(acc.accuracy.iloc[0], color="C2", ls="--", lw=1, label="clear (training domain)")
    ax.axhline(acc.accuracy.iloc[1:].mean(), color="C3", ls=":", lw=1, label="mean over shifted domains")
    ax.set_xticks(acc["index"], acc.domain, rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="top-1 accuracy", ylim=(0, 1.02), title="A model trained on clear scenes, across the domain stream")
    ax.legend(frameon=False, fontsize=7)
    return fig


def gap_figure(gap: pd.DataFrame) -> plt.Figure:
    """(e) Accuracy after retraining the full model vs a fixed half-width compressed model, per domain."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    sns.barplot(gap, x="domain", y="after", hue="model", ax=ax, palette=["C0", "C1"], errorbar=None)
    before = gap.pivot(index="domain", columns="model", values="before").loc[list(dict.fromkeys(gap.domain))]
    ax.scatter(range(len(before)), before["full"], marker="_", s=200, color="k", label="full, before retraining")
    ax.set(
        ylabel="top-1 accuracy after retraining",
        xlabel="",
        ylim=(0, 1.02),
        title="Retraining the full model vs a fixed compressed model (same steps)",
    )
    ax.tick_params(axis="x", rotation=45, labelsize=6)
    ax.legend(frameon=False, fontsize=7)
    return fig
