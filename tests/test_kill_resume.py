"""Kill a section's reproduction with SIGKILL while one of its cached stages is being computed, run it again, and get
the same tables and claims as a run that was never interrupted. Run by `make notebooks` (marker `notebook`): each
section reruns cold in its own runs/ and figures/ folders, against the smoke reproduction of
test_executed_notebooks as the reference."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from edgetune.sections import NAMES

pytestmark = pytest.mark.notebook
ROOT = Path(__file__).resolve().parent.parent


def _reproduce(section: str, env: dict, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "edgetune.cli", "reproduce", "--section", section, "--profile", "smoke"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kwargs
    )


def _in_progress(cache: Path) -> bool:
    """A stage has started and not finished: a cache folder without its result.json."""
    return cache.is_dir() and any(d.is_dir() and not (d / "result.json").exists() for d in cache.iterdir())


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}


@pytest.mark.parametrize("section", NAMES)
def test_a_run_killed_inside_a_cached_stage_resumes_to_the_same_results(section, tmp_path):
    reference = tmp_path / "reference"
    resumed = tmp_path / "resumed"
    envs = {
        name: {**os.environ, "EDGETUNE_RUNS": str(folder / "runs"), "EDGETUNE_FIGURES": str(folder / "figures")}
        for name, folder in (("reference", reference), ("resumed", resumed))
    }
    first = _reproduce(section, envs["reference"])
    assert first.wait(timeout=1200) == 0, first.stderr.read().decode()[-3000:]

    victim = _reproduce(section, envs["resumed"])
    cache, deadline = resumed / "runs" / "cache", time.monotonic() + 600
    while not _in_progress(cache) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_inside = _in_progress(cache) and victim.poll() is None
    time.sleep(1.0)  # a little way into the stage: weights, checkpoints or partial tables may be on disk
    if victim.poll() is None:
        os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert killed_inside, f"{section}: no cached stage was in progress to kill"

    again = _reproduce(section, envs["resumed"])
    assert again.wait(timeout=1200) == 0, again.stderr.read().decode()[-3000:]
    want, got = _tables(reference / "figures" / "smoke" / section), _tables(resumed / "figures" / "smoke" / section)
    assert want.keys() == got.keys() and want
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-9, obj=f"{section}/{name}")
    claims = [pd.read_csv(f / "figures" / "smoke" / "claims.csv") for f in (reference, resumed)]
    pd.testing.assert_frame_equal(claims[1], claims[0], obj=f"{section} claims")
