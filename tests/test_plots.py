"""The section figures: shared colour scales with one colour bar, chance lines, accuracy as bar height, legends and
labels that stay readable. Built from small tables shaped like the committed figures' CSVs; nothing is trained."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from edgetune.assemble import plots as assemble_plots
from edgetune.customize import plots as customize_plots
from edgetune.figures import set_theme
from edgetune.motivation import plots as motivation_plots
from edgetune.retrain import plots as retrain_plots
from edgetune.strato import plots as strato_plots


@pytest.fixture(autouse=True)
def theme():
    set_theme()
    yield
    plt.close("all")


def _meshes(fig: plt.Figure) -> list[QuadMesh]:
    """The heatmaps' meshes (a colour bar draws its own, left out)."""
    return [c for ax in fig.axes if ax not in _colorbars(fig) for c in ax.collections if isinstance(c, QuadMesh)]


def _colorbars(fig: plt.Figure) -> list[plt.Axes]:
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _one_shared_scale(fig: plt.Figure, panels: int) -> tuple[float, float]:
    meshes = _meshes(fig)
    assert len(meshes) == panels
    limits = {(m.norm.vmin, m.norm.vmax) for m in meshes}
    assert len(limits) == 1, f"panels use different colour scales: {limits}"
    assert len(_colorbars(fig)) == 1
    assert sum(m.colorbar is not None for m in meshes) == 1
    return limits.pop()


def _extent(artist, fig) -> tuple[float, float, float, float]:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0, box.y0, box.x1, box.y1


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _visible_tick_labels(ax: plt.Axes) -> list[Text]:
    fig = ax.figure
    fig.canvas.draw()
    ticks = ax.xaxis.get_majorticklabels() + ax.xaxis.get_minorticklabels()
    lo, hi = sorted(ax.get_xlim())
    return [t for t in ticks if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi]


# ------------------------------------------------------------------------------------------------- PEFT
def _pareto_table() -> pd.DataFrame:
    rows = []
    for task, base in (("mmlu", 8.0e10), ("gsm8k", 1.0e11), ("humaneval", 8.5e10)):
        for k, method in enumerate(("LoRA", "rsLoRA", "AdaLoRA", "STRATO")):
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "score": 20.0 + 2 * k,
                    "score_std": 1.0,
                    "items": {"mmlu": 96, "gsm8k": 96, "humaneval": 164}[task],
                    "params": 20000 + 7000 * k,
                    "train_flops": base * (0.92 + 0.06 * k),
                }
            )
    return pd.DataFrame(rows)


def test_pareto_has_a_chance_line_per_task_and_readable_log_ticks():
    table = _pareto_table()
    fig = strato_plots.pareto_figure(table, "train_flops", "training FLOPs")
    expected = {"mmlu (n = 96)": 25.0, "gsm8k (n = 96)": 0.0, "humaneval (n = 164)": 0.0}  # items in the titles
    assert [ax.get_title() for ax in fig.axes] == list(expected)
    for ax in fig.axes:
        chance = [line for line in ax.get_lines() if line.get_label() == "chance"]
        assert len(chance) == 1, ax.get_title()
        assert chance[0].get_ydata()[0] == pytest.approx(expected[ax.get_title()])
        assert ax.get_ylim()[0] <= expected[ax.get_title()] <= ax.get_ylim()[1]
        labels = _visible_tick_labels(ax)
        assert 2 <= len(labels) <= 6
        boxes = sorted(_extent(t, fig) for t in labels)
        assert all(a[2] <= b[0] for a, b in zip(boxes, boxes[1:], strict=False)), "x tick labels overlap"
    assert len(fig.legends) == 1 and "chance" in [t.get_text() for t in fig.legends[0].get_texts()]
    legend = _extent(fig.legends[0], fig)
    assert not any(_overlap(legend, _extent(ax, fig)) for ax in fig.axes), "legend sits on a panel"


def test_pareto_chance_is_per_task_kind():
    assert strato_plots.chance_score("mmlu") == 25.0
    assert strato_plots.chance_score("gsm8k") == 0.0
    assert strato_plots.chance_score("humaneval") == 0.0
    assert strato_plots.chance_score("unknown") is None


def test_overhead_shows_the_search_cost_and_keeps_the_legend_off_the_bars():
    overhead = pd.DataFrame(
        {
            "task": ["mmlu", "gsm8k"],
            "lora_train_s": [3.0, 3.4],
            "strato_train_s": [2.7, 3.1],
            "controller_s": [0.07, 0.06],
            "schedule_s": [0.015, 0.01],
            "overhead_vs_lora": [0.028, 0.021],
            "search_s": [12.7, 15.2],
            "search_vs_lora": [4.23, 4.47],
            "search_evaluations": [13, 13],
        }
    )
    fig = strato_plots.overhead_figure(overhead)
    (ax,) = fig.axes
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if isinstance(p, Rectangle))
    assert 12.7 in heights and 15.2 in heights
    assert "4.2–4.5×" in ax.get_title()
    texts = [t.get_text() for t in ax.texts]
    assert "4.2×" in texts and "+2.8%" in texts
    fig.canvas.draw()
    assert not _overlap(_extent(ax.get_legend(), fig), _extent(ax, fig)), "legend sits on the bars"


# ------------------------------------------------------------------------------------------------- customization
def test_device_similarity_panels_share_one_scale_and_one_colorbar():
    rng = np.random.default_rng(0)
    weights = {}
    for name, spread in (("emd", 2e-3), ("js", 1e-4)):
        w = 0.2 + spread * rng.standard_normal((5, 5))
        weights[name] = pd.DataFrame(w / w.sum(1, keepdims=True))
    fig = customize_plots.similarity_figure(weights)
    vmin, vmax = _one_shared_scale(fig, panels=2)
    assert vmin == 0 and vmax >= max(t.to_numpy().max() for t in weights.values())


def test_header_size_heatmaps_share_one_scale_and_one_colorbar():
    sizes = pd.DataFrame(
        {
            "backbone": ["small"] * 4 + ["full"] * 4,
            "nodes": [1, 1, 2, 2] * 2,
            "layers": [1, 2, 1, 2] * 2,
            "accuracy": [0.654, 0.681, 0.693, 0.742, 0.767, 0.771, 0.752, 0.763],
        }
    )
    vmin, vmax = _one_shared_scale(customize_plots.header_size_figure(sizes), panels=2)
    assert vmin <= sizes.accuracy.min() and vmax >= sizes.accuracy.max()


def test_communication_bars_and_totals_fit_inside_the_axes():
    traffic = pd.DataFrame(
        {
            "direction": ["down", "down", "up", "up", "down"],
            "what": ["proxy images", "sub-backbone weights", "statistics", "raw training data", "trained model"],
            "bytes": [12_288_000, 5_770_464, 204_800, 2_464_000, 5_110_840],
            "system": ["ACME", "ACME", "ACME", "centralized", "centralized"],
        }
    )
    fig = customize_plots.communication_figure(traffic)
    (ax,) = fig.axes
    fig.canvas.draw()
    right = max(p.get_x() + p.get_width() for p in ax.patches if isinstance(p, Rectangle))
    assert right == pytest.approx(18.058464)
    assert right < ax.get_xlim()[1], "the longest bar ends on the axis limit"
    axes_box = _extent(ax, fig)
    for text in ax.texts:
        assert _extent(text, fig)[2] <= axes_box[2], f"label {text.get_text()!r} is clipped"


# ------------------------------------------------------------------------------------------------- motivation
def test_device_label_splits_share_one_scale_and_one_colorbar():
    rows = []
    for split, peak in (("IID", 500), ("Dir(α=0.1)", 999)):
        for client in range(3):
            for label in range(4):
                rows.append(
                    {"split": split, "client": client, "label": label, "count": (peak * (client + label)) % 1000}
                )
    hist = pd.DataFrame(rows)
    vmin, vmax = _one_shared_scale(motivation_plots.splits_figure(hist), panels=2)
    assert vmin == 0 and vmax == hist["count"].max()


# ------------------------------------------------------------------------------------------------- assembling
def test_accuracy_vs_cost_bar_heights_are_the_accuracies():
    costs = pd.DataFrame(
        [
            (share, "assembling", phase, tflops, acc)
            for share, acc in ((1.0, 0.622), (0.5, 0.610))
            for phase, tflops in (("PT", 0.21), ("MT", 1.05), ("FT", 0.28))
        ]
        + [(1.0, "E2E", "E2E", 1.54, 0.736), (0.5, "E2E", "E2E", 1.54, 0.691)],
        columns=["data", "method", "phase", "tflops", "accuracy"],
    )
    fig = assemble_plots.cost_figure(costs)
    accuracy_ax, cost_ax = fig.axes[:2]
    heights = sorted(round(p.get_height(), 6) for p in accuracy_ax.patches if isinstance(p, Rectangle))
    assert heights == sorted(costs.groupby(["data", "method"]).accuracy.first().round(6))
    assert "accuracy" in accuracy_ax.get_ylabel() and "TFLOPs" in cost_ax.get_ylabel()
    stacked = sorted(round(p.get_height(), 6) for p in cost_ax.patches if isinstance(p, Rectangle))
    assert stacked == sorted(costs.tflops.round(6))


# ------------------------------------------------------------------------------------------------- retraining
def test_stream_figure_spells_out_methods_and_emphasises_blocktrainer():
    rows, curves = [], []
    for window in range(3):
        for method in retrain_plots.ORDER:
            rows.append({"window": window, "domain": f"d{window}", "method": method, "after": 0.3 + 0.01 * window})
            if method in ("blocktrainer", "fixed", "fixed-lora"):
                curves += [
                    {"window": window, "method": method, "iteration": i, "accuracy": 0.2 + 0.02 * i} for i in range(4)
                ]
    fig = retrain_plots.stream_figure(pd.DataFrame(curves), pd.DataFrame(rows))
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len(labels) == 5
    assert all("foundation model" in label for label in labels if "fm" in label.split())
    assert not any(label.split(",")[0].strip() == "fm" for label in labels)
    widths = {line.get_label(): line.get_linewidth() for ax in fig.axes for line in ax.get_lines()}
    main = widths[retrain_plots.LABELS["blocktrainer"]]
    assert main > widths[retrain_plots.LABELS["fixed"]] and main > widths[retrain_plots.LABELS["fixed-lora"]]
    fig.canvas.draw()
    for ax in fig.axes:
        assert not _overlap(_extent(ax.get_legend(), fig), _extent(ax, fig)), "legend sits on the lines"
