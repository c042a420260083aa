"""Notebook hygiene: stripped outputs, a `parameters` cell papermill can inject into, and parameters that map onto
the section's config. Executing them (smoke profile, nbval) is `make notebooks`."""

from pathlib import Path

import nbformat
import papermill as pm
import pytest

from edgetune import assemble, customize, motivation, retrain, strato
from edgetune.cli import NOTEBOOKS

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PRESENT = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CONFIGS = {
    "01_motivation.ipynb": motivation.PARAMETERS,
    "02_customization.ipynb": customize.PARAMETERS,
    "03_retraining.ipynb": retrain.PARAMETERS,
    "04_assembling.ipynb": assemble.PARAMETERS,
    "05_peft_comparison.ipynb": strato.PARAMETERS,
}


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
    declared = pm.inspect_notebook(str(path))
    assert {"profile", "force"} <= set(declared)
    assert declared["profile"]["default"] == '"default"' and declared["force"]["default"] == "False"
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    for name in set(declared) - {"profile", "force"}:
        assert name in CONFIGS[path.name], f"{name} is not a config field"
        assert declared[name]["default"] == "None", f"{name} must default to None (the profile's value)"
        assert f"{name}={name}" in source, f"{name} is declared but never passed to the config"
