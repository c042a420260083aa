"""The one way figures and tables are written: a shared seaborn theme, byte-stable files, the plotted data beside.

`save_figure` writes `figures/<section>/<name>.png` (and SVG/PDF on request) with fixed metadata, so rerunning a
notebook with the same inputs gives the same bytes (matplotlib embeds its version and, for vector formats, dates
and random ids unless told otherwise), plus `<name>.csv` holding exactly the data that was plotted. Tables are
written as CSV and Markdown. Every write is atomic.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)  # no display needed; inline backends in Jupyter still work for display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from edgetune.paths import figures_dir  # noqa: E402
from edgetune.runs.io import atomic_write, write_text  # noqa: E402

RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: identical glyphs on every machine
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "edgetune",
    "savefig.dpi": 150,
    "figure.dpi": 100,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
}
METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    "svg": {"Date": None, "Creator": None},
}


def set_theme() -> None:
    """The shared look: seaborn 'paper' context, ticks style, a colour-blind palette, DejaVu Sans."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font="DejaVu Sans", rc=RC)


def save_figure(
    fig: plt.Figure, section: str, name: str, data: pd.DataFrame, formats: tuple[str, ...] = ("png",)
) -> Path:
    """Write `fig` as figures/<section>/<name>.<fmt> and the plotted `data` as <name>.csv; returns the first file."""
    unknown = set(formats) - set(METADATA)
    if unknown or not formats:
        raise ValueError(f"formats {sorted(unknown) or formats} not supported; choose from {sorted(METADATA)}")
    if not isinstance(data, pd.DataFrame) or data.empty:
        raise ValueError(f"figure {section}/{name}: `data` must be a non-empty DataFrame of the plotted values")
    folder = figures_dir(section)
    for fmt in formats:
        atomic_write(folder / f"{name}.{fmt}", lambda tmp, f=fmt: _savefig(fig, tmp, f))
    write_text(folder / f"{name}.csv", data.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return folder / f"{name}.{formats[0]}"


def _savefig(fig: plt.Figure, path: Path, fmt: str) -> None:
    with plt.rc_context({"svg.hashsalt": RC["svg.hashsalt"]}):
        fig.savefig(path, format=fmt, metadata=METADATA[fmt], bbox_inches="tight")


def write_table(df: pd.DataFrame, section: str, name: str, floatfmt: str = ".4g") -> Path:
    """Write a table as figures/<section>/<name>.csv and .md; returns the Markdown path."""
    folder = figures_dir(section)
    write_text(folder / f"{name}.csv", df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return write_text(folder / f"{name}.md", markdown_table(df, floatfmt))


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional `tabulate`)."""

    def cell(value) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"
