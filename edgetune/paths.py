"""Where things live. Every path the package writes or reads is resolved here, never from the cwd.

The project root is found from `EDGETUNE_ROOT` if set, else by walking up from the current directory to the
first folder holding `pyproject.toml` and `notebooks/` (papermill and nbval start kernels in different
directories, so the cwd alone is not reliable), else the folder above the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTIONS = ("motivation", "customization", "retraining", "assembling", "peft")


def root() -> Path:
    """The project root (see the module docstring for how it is found)."""
    env = os.environ.get("EDGETUNE_ROOT")
    if env:
        return Path(env).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def runs_dir() -> Path:
    """Git-ignored caches, checkpoints, executed notebooks and the manifest (`EDGETUNE_RUNS` redirects it)."""
    return Path(os.environ["EDGETUNE_RUNS"]) if os.environ.get("EDGETUNE_RUNS") else root() / "runs"


def figures_dir(section: str | None = None) -> Path:
    """`figures/` or `figures/<section>/` (created on demand).

    `EDGETUNE_FIGURES` redirects it (the notebook tests write their smoke figures under `runs/` this way, so
    they never overwrite the committed figures of `make reproduce`).
    """
    if section is not None and section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; expected one of {', '.join(SECTIONS)}")
    base = Path(os.environ["EDGETUNE_FIGURES"]) if os.environ.get("EDGETUNE_FIGURES") else root() / "figures"
    path = base / (section or "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return root() / "data"


def model_dir() -> Path:
    return root() / "model"
