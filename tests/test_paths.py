"""Where the package reads and writes: the installed project, never whatever project the current folder is in."""

from __future__ import annotations

from pathlib import Path

import edgetune
from edgetune import paths

PROJECT = Path(edgetune.__file__).resolve().parent.parent


def test_the_root_is_the_installed_project_not_the_current_folder(tmp_path, monkeypatch):
    other = tmp_path / "another-project"
    (other / "notebooks").mkdir(parents=True)
    (other / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    monkeypatch.delenv("EDGETUNE_ROOT", raising=False)
    monkeypatch.delenv("EDGETUNE_RUNS", raising=False)
    monkeypatch.delenv("EDGETUNE_FIGURES", raising=False)
    monkeypatch.chdir(other / "notebooks")
    assert paths.root() == PROJECT and paths.runs_dir() == PROJECT / "runs"
    assert paths.figures_dir("smoke") == PROJECT / "figures" / "smoke"
    monkeypatch.setenv("EDGETUNE_ROOT", str(other))  # unless asked for
    assert paths.root() == other.resolve()


def test_a_package_installed_without_its_project_finds_the_project_above_the_current_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    monkeypatch.delenv("EDGETUNE_ROOT", raising=False)
    monkeypatch.setattr(paths, "_is_project", lambda folder: folder == project)  # as from site-packages
    monkeypatch.chdir(project / "notebooks")
    assert paths.root() == project
