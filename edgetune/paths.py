"""Where things live. Every path the package writes or reads is resolved here, never from the cwd.

Environment variables: `EDGETUNE_ROOT` (the project root), `EDGETUNE_RUNS` (caches, checkpoints, executed
notebooks, manifests; default `<root>/runs`) and `EDGETUNE_FIGURES` (figures, tables, claims and reports; default
`<root>/figures`).

The project root is `EDGETUNE_ROOT` if set, else the project this package was installed from (the folder above
the package, when it holds `pyproject.toml` and `notebooks/`: the editable install `make` sets up). Only a package
installed without its project (a wheel in site-packages) falls back to the nearest such folder above the current
directory. The current directory never overrides the installed project: run from inside another project, a
reproduction still writes into its own `runs/` and `figures/`.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgetune.profiles import check_label
from edgetune.sections import NAMES as SECTIONS


def root() -> Path:
    """The project root (see the module docstring for how it is found)."""
    env = os.environ.get("EDGETUNE_ROOT")
    if env:
        return Path(env).resolve()
    installed = Path(__file__).resolve().parent.parent
    if _is_project(installed):
        return installed
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if _is_project(folder):
            return folder
    return installed


def _is_project(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir()


def runs_dir() -> Path:
    """Git-ignored caches, checkpoints, executed notebooks and the manifest (`EDGETUNE_RUNS` redirects it)."""
    return Path(os.environ["EDGETUNE_RUNS"]) if os.environ.get("EDGETUNE_RUNS") else root() / "runs"


def figures_dir(profile: str, section: str | None = None) -> Path:
    """`figures/<profile>/` or `figures/<profile>/<section>/` (created on demand).

    Each profile has its own folder, so a smoke run never overwrites the committed default or gpu results.
    `EDGETUNE_FIGURES` redirects the base folder (the notebook tests write their smoke figures under `runs/` this
    way).
    """
    check_label(profile)
    if section is not None and section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; expected one of {', '.join(SECTIONS)}")
    base = Path(os.environ["EDGETUNE_FIGURES"]) if os.environ.get("EDGETUNE_FIGURES") else root() / "figures"
    path = base / profile / (section or "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def host_dir(profile: str, section: str) -> Path:
    """`runs/host/<profile>/<section>/`: measurements of this machine that change run to run (latencies, selection
    times). They are shown in the notebook but kept out of the tracked `figures/`."""
    path = runs_dir() / "host" / profile / section
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return root() / "data"


def model_dir() -> Path:
    return root() / "model"
