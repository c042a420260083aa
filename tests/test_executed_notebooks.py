"""What a reader gets from `edgetune reproduce --profile smoke`: every section runs, each executed notebook shows
every figure it saved, no errors or warnings from our own calls, a report whose images and links resolve, a short
summary, and nothing tracked touched. Run by `make notebooks` (marker `notebook`), after nbval, sharing its cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from edgetune.cli import NOTEBOOKS

pytestmark = pytest.mark.notebook
ROOT = Path(__file__).resolve().parent.parent
WARNING = re.compile(r"\b(\w*Warning|IProgress not found)\b")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One CLI reproduction of every section at the smoke profile; where `make notebooks` points EDGETUNE_RUNS and
    EDGETUNE_FIGURES at runs/ci, it reuses the stages nbval cached there."""
    scratch = tmp_path_factory.mktemp("smoke")
    figures = Path(os.environ.get("EDGETUNE_CI_FIGURES") or scratch / "figures")
    runs = Path(os.environ.get("EDGETUNE_CI_RUNS") or scratch / "runs")
    before = _tracked_state()
    env = {**os.environ, "EDGETUNE_FIGURES": str(figures), "EDGETUNE_RUNS": str(runs)}
    done = subprocess.run(
        [sys.executable, "-m", "edgetune.cli", "reproduce", "--profile", "smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return {"done": done, "figures": figures / "smoke", "runs": runs, "before": before, "after": _tracked_state()}


def _tracked_state() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "figures", "notebooks"], cwd=ROOT, capture_output=True, text=True
    ).stdout


def test_reproduce_exits_0_with_a_summary(smoke):
    done = smoke["done"]
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    for section in NOTEBOOKS:
        row = next((line for line in lines if line.startswith(section + " ")), None)
        assert row is not None and row.split()[1] == "ok", done.stdout
    assert any(line.startswith("report:") and line.endswith("smoke/REPORT.md") for line in lines)


def test_progress_streams_to_the_terminal(smoke):
    err = smoke["done"].stderr
    assert "[1/5] motivation (smoke profile)" in err and "[5/5] peft (smoke profile)" in err
    assert re.search(r"\d+/\d+ \[\d\d:\d\d<", err), "no progress bar reached the terminal"


@pytest.mark.parametrize("section", list(NOTEBOOKS))
def test_executed_notebook_shows_every_saved_figure_and_no_error(smoke, section):
    executed = smoke["runs"] / "notebooks" / "smoke" / NOTEBOOKS[section]
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    saved = sorted((smoke["figures"] / section).glob("*.png"))
    assert saved and images >= len(saved), f"{executed}: {images} inline images for {len(saved)} saved figures"
    assert not [o for o in outputs if o.output_type == "error"]
    noisy = [o.text for o in outputs if o.output_type == "stream" and WARNING.search(o.text)]
    assert not noisy, f"{executed} prints warnings: {noisy[:3]}"
    assert nb.metadata.kernelspec.name == "edgetune"
    claims = [
        o
        for o in outputs
        if "text/markdown" in o.get("data", {}) and "| verdict | interval |" in o.data["text/markdown"]
    ]
    assert len(claims) == 1, "the claims are shown once, as a rendered table"


def test_report_embeds_the_figures_and_every_link_resolves(smoke):
    report = smoke["figures"] / "REPORT.md"
    text = report.read_text()
    for section in NOTEBOOKS:
        assert f"| [{section}](#{section}) | ok |" in text
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert sorted(images) == sorted(p.relative_to(report.parent).as_posix() for p in report.parent.glob("*/*.png"))
    missing = [t for t in targets if not (report.parent / t).resolve().exists()]
    assert not missing, missing


def test_claims_name_only_figures_that_exist(smoke):
    import pandas as pd

    ledger = pd.read_csv(smoke["figures"] / "claims.csv", keep_default_na=False)
    assert set(ledger.section) == set(NOTEBOOKS) and set(ledger.profile) == {"smoke"}
    for row in ledger.itertuples():
        for name in filter(None, row.figures.split(";")):
            assert (smoke["figures"] / row.section / f"{name}.png").exists(), (row.claim, name)


def test_committed_files_are_left_untouched(smoke):
    assert smoke["after"] == smoke["before"]


def test_one_manifest_per_reproduction(smoke):
    manifests = sorted((smoke["runs"] / "reproductions").glob("*-smoke.json"))
    latest = json.loads(manifests[-1].read_text())
    assert set(latest["sections"]) == set(NOTEBOOKS)
    assert all(e["status"] == "ok" and e["files"] for e in latest["sections"].values())
