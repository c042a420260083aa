"""Notebook hygiene: stripped outputs, a `parameters` cell papermill can inject into, and parameters that map onto
the section's config. Executing them (smoke profile, nbval) is `make notebooks`."""

from pathlib import Path

import nbformat
import papermill as pm
import pytest

from edgetune.cli import NOTEBOOKS
from edgetune.sections import SECTIONS_TABLE

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PRESENT = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CONFIGS = {s.notebook: s.module().PARAMETERS for s in SECTIONS_TABLE}


def test_every_present_notebook_belongs_to_a_section():
    assert {p.name for p in PRESENT} <= set(NOTEBOOKS.values())
    assert "01_motivation.ipynb" in {p.name for p in PRESENT}


@pytest.mark.parametrize("path", PRESENT, ids=lambda p: p.name)
def test_notebook_is_stripped_and_parameterized(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "edgetune" and nb.metadata.language_info.name == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks with outputs stripped"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]


@pytest.mark.parametrize("path", [p for p in PRESENT if p.name in CONFIGS], ids=lambda p: p.name)
def test_notebook_parameters_map_onto_the_config(path):
    """One generic path: the parameters cell declares the profile, `force` and `overrides` (any config field), and
    the config is built from exactly those, so every field is reachable and none is listed twice."""
    declared = pm.inspect_notebook(str(path))
    assert set(declared) == {"profile", "force", "overrides"}
    assert declared["profile"]["default"] == '"default"' and declared["force"]["default"] == "False"
    assert declared["overrides"]["default"] == "{}"
    section = next(s for s in SECTIONS_TABLE if s.notebook == path.name)
    module = section.package.rsplit(".", 1)[1]
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert f"cfg = {module}.config(profile, **overrides)" in source
