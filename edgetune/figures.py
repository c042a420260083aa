"""The one way figures and tables are written: a shared seaborn theme, byte-stable files, the plotted data beside.

`save_figure` writes `figures/<profile>/<section>/<name>.png` (and SVG/PDF on request) with fixed metadata, so
rerunning a notebook with the same inputs gives the same bytes (matplotlib embeds its version and, for vector
formats, dates and random ids unless told otherwise), plus `<name>.csv` holding exactly the data that was
plotted. Tables are written as CSV and Markdown. Every write is atomic. `SectionOutputs` binds a section and a
profile so a notebook names them once.

No matplotlib backend is forced: in a Jupyter kernel the inline backend shows every figure, and elsewhere matplotlib
picks a headless one (Agg) by itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from edgetune.paths import figures_dir, host_dir
from edgetune.runs.io import atomic_write, write_text

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
    fig: plt.Figure, section: str, name: str, data: pd.DataFrame, formats: tuple[str, ...] = ("png",), *, profile: str
) -> Path:
    """Write `fig` as figures/<profile>/<section>/<name>.<fmt> and the plotted `data` as <name>.csv; returns the
    first file."""
    unknown = set(formats) - set(METADATA)
    if unknown or not formats:
        raise ValueError(f"formats {sorted(unknown) or formats} not supported; choose from {sorted(METADATA)}")
    if not isinstance(data, pd.DataFrame) or data.empty:
        raise ValueError(f"figure {section}/{name}: `data` must be a non-empty DataFrame of the plotted values")
    return _save(fig, figures_dir(profile, section), name, data, formats)


def _save(fig: plt.Figure, folder: Path, name: str, data: pd.DataFrame, formats: tuple[str, ...]) -> Path:
    for fmt in formats:
        atomic_write(folder / f"{name}.{fmt}", lambda tmp, f=fmt: _savefig(fig, tmp, f))
    write_text(folder / f"{name}.csv", data.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return folder / f"{name}.{formats[0]}"


def _savefig(fig: plt.Figure, path: Path, fmt: str) -> None:
    with plt.rc_context({"svg.hashsalt": RC["svg.hashsalt"]}):
        fig.savefig(path, format=fmt, metadata=METADATA[fmt], bbox_inches="tight")


def write_table(df: pd.DataFrame, section: str, name: str, floatfmt: str = ".4g", *, profile: str) -> Path:
    """Write a table as figures/<profile>/<section>/<name>.csv and .md; returns the Markdown path."""
    return _write_table(df, figures_dir(profile, section), name, floatfmt)


def _write_table(df: pd.DataFrame, folder: Path, name: str, floatfmt: str) -> Path:
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


# Columns that measure this machine (wall times, latencies, peak memory): they change from run to run, so tracked
# tables never hold them; `SectionOutputs` writes the whole table, with them, under runs/host/ instead.
HOST_COLUMNS = frozenset(
    {
        "host_latency_ms", "seconds", "assembling_seconds", "e2e_seconds", "greedy_ms", "exact_ms", "train_s",
        "memory_mb", "controller_s", "schedule_s", "search_s", "lora_train_s", "strato_train_s",
        "overhead_vs_lora", "search_vs_lora",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SectionOutputs:
    """Where one section's run at one profile writes; a notebook makes one and names neither again.

    >>> out = SectionOutputs("motivation", "smoke")
    >>> out.figure(fig, "depth_accuracy_energy", curve)   # figures/smoke/motivation/depth_accuracy_energy.png + .csv
    """

    section: str
    profile: str
    overrides: dict | None = None  # values set on top of the profile: the run is labelled `<profile>+<hash>`

    def __post_init__(self):
        from edgetune.profiles import run_label

        object.__setattr__(self, "profile", run_label(self.profile, self.overrides))  # validates the profile
        folder = figures_dir(self.profile, self.section)  # validates the section before any work
        given = {k: v for k, v in (self.overrides or {}).items() if v is not None}
        if given:
            text = json.dumps(given, indent=2, sort_keys=True, default=list) + "\n"
            write_text(folder.parent / "overrides.json", text)

    @property
    def folder(self) -> Path:
        return figures_dir(self.profile, self.section)

    def figure(
        self, fig: plt.Figure, name: str, data: pd.DataFrame, formats: tuple[str, ...] = ("png",), host: bool = False
    ) -> Path:
        """Save a figure and its data; `host=True` for a figure of this machine's timings (kept under runs/host/).
        Host columns never reach the tracked CSV."""
        if host:
            return _save(fig, host_dir(self.profile, self.section), name, data, formats)
        return save_figure(fig, self.section, name, _tracked(data, self, name), formats, profile=self.profile)

    def table(self, df: pd.DataFrame, name: str, floatfmt: str = ".4g") -> Path:
        """figures/<profile>/<section>/<name>.csv + .md without host columns (the full table goes to runs/host/)."""
        return write_table(_tracked(df, self, name), self.section, name, floatfmt, profile=self.profile)

    def host_table(self, df: pd.DataFrame, name: str, floatfmt: str = ".4g") -> Path:
        """A table of this machine's timings: under runs/host/, never in the tracked figures/."""
        return _write_table(df, host_dir(self.profile, self.section), name, floatfmt)


def _tracked(df: pd.DataFrame, out: SectionOutputs, name: str) -> pd.DataFrame:
    host = [c for c in df.columns if c in HOST_COLUMNS]
    if host:
        out.host_table(df, name)
    return df.drop(columns=host)


def config_table(cfg, columns: int = 3):
    """A dataclass config as a compact Markdown table (`columns` name/value pairs per row) for notebook display."""
    from IPython.display import Markdown

    items = [(f.name, _short(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)]
    rows = -(-len(items) // columns)
    table = pd.DataFrame(
        {
            label: [items[c * rows + r][i] if c * rows + r < len(items) else "" for r in range(rows)]
            for c in range(columns)
            for i, label in enumerate((f"parameter{' ' * c}", f"value{' ' * c}"))
        }
    )
    return Markdown(f"**{type(cfg).__name__}**\n\n" + markdown_table(table))


def _short(value, width: int = 60) -> str:
    if dataclasses.is_dataclass(value):
        value = ", ".join(f"{f.name}={getattr(value, f.name)!r}" for f in dataclasses.fields(value))
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
