"""`edgetune rehearse`: every section's paper path runs on random fixtures in the real formats, and is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune import rehearse
from edgetune.cli import reproduce
from edgetune.data.fixtures import write_cifar100, write_gsm8k, write_image_folders, write_mmlu
from edgetune.data.readers import cifar100
from edgetune.sections import section as find
from edgetune.strato import tasks

ROOT = Path(__file__).resolve().parents[1]

# every cached stage each section's paper notebook computes at --scale tiny
EXPECTED = {
    "motivation": {"motivation-early-exit", "motivation-retraining-gap"},
    "customization": {"acme-finetune", "acme-dynavitw", "acme-dynavit"},
    "retraining": {
        "retraining-pretrain",
        "retraining-lora",
        "retraining-kb",
        "retraining-law",
        "retraining-online",
        "retraining-budget",
    },
    "assembling": {"assembling-pt", "assembling-mt", "assembling-ft", "assembling-e2e"},
    "peft": {"peft-run", "strato-search"},
}


def test_fixtures_are_read_by_the_real_readers(tmp_path):
    write_cifar100(tmp_path, train=12, test=5)
    train, test = cifar100(tmp_path, train=True), cifar100(tmp_path, train=False)
    assert (len(train), len(test), len(train.classes)) == (12, 5, 100) and train.targets[:3] == [0, 1, 2]
    assert train[0][0].size == (32, 32)
    write_image_folders(tmp_path / "imagenet", {"train": 2, "val": 1}, classes=3, size=16)
    assert len(list((tmp_path / "imagenet" / "train").rglob("*.JPEG"))) == 6
    mmlu = tasks.read_mmlu(write_mmlu(tmp_path / "mmlu", per_split=3))
    assert (len(mmlu.train), len(mmlu.dev), len(mmlu.test)) == (6, 6, 6)
    gsm = tasks.read_gsm8k(write_gsm8k(tmp_path / "gsm8k", train=10, test=4), dev=2)
    assert (len(gsm.train), len(gsm.dev), len(gsm.test)) == (8, 2, 4)
    assert all(tasks.strict_number(e.answer) == e.reference for e in gsm.test)


def test_projection_sums_loops_and_multiplies_nested_ones():
    plan = rehearse.PLANS["retraining"]
    paper = find("retraining").config("paper")
    cut = find("retraining").config("paper", kb_steps=2, gate_steps=2, law_trials=4, law_iterations=2, eval_every=2)
    assert rehearse._ratio(plan, "retraining-kb", paper, cut) == (120_000 + 80_000) / 4
    assert rehearse._ratio(plan, "retraining-law", paper, cut) == (500 * 500) / (4 * 2)
    assert rehearse._ratio(plan, "nosuch", paper, cut) is None
    asm = rehearse.PLANS["assembling"]
    paper, cut = find("assembling").config("paper"), find("assembling").config("paper", pt_steps=2, mt_steps=3)
    assert rehearse._ratio(asm, "assembling-mt", paper, cut) == 62_500 / 3
    one_share = find("assembling").config("paper", pt_steps=2, mt_steps=3, fractions=(1.0,))
    assert rehearse._ratio(asm, "assembling-mt", paper, one_share) == 3 * 62_500 / 3  # the paper runs 3 data shares
    skipped = find("retraining").config("paper", eval_every=2, law_iterations=2)
    assert rehearse._ratio(plan, "retraining-pretrain", find("retraining").config("paper"), skipped) == 1.0
    assert rehearse._ratio(asm, "assembling-e2e", paper, cut) == (187_500 + 4 * 62_500 + 62_500) / (2 + 4 * 3 + 62_500)


def test_bad_arguments_exit_2_before_any_work(tmp_path):
    env = {**os.environ, "EDGETUNE_RUNS": str(tmp_path / "runs")}
    for args, message in (
        (["--steps", "0"], "steps=0; expected a positive integer"),
        (["--scale", "huge"], "invalid choice: 'huge'"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "edgetune.cli", "rehearse", "--section", "assembling", *args],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "runs" / "rehearsals").exists()


@pytest.mark.notebook
@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_paper_path_rehearses_at_tiny_scale(name, tmp_path):
    before = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "data").rglob("*"))
    report = rehearse.rehearse(name, reproduce, steps=2, scale="tiny", out=tmp_path)
    assert report["status"] == "ok", (tmp_path / "notebooks").as_posix()
    stages = {r["stage"].split(" (")[0] for r in report["stages"]} - {"outside cached stages"}
    assert stages == EXPECTED[name]
    measured = [r for r in report["stages"] if r["stage"] != "outside cached stages"]
    assert all(r["seconds"] > 0 and r["peak_host_gib"] > 0 and r["paper_to_rehearsed_work"] >= 1 for r in measured)
    assert report["projected_paper_hours"] > sum(r["seconds"] for r in measured) / 3600
    assert json.loads((tmp_path / "rehearsal.json").read_text()) == report
    assert (tmp_path / "rehearsal.md").read_text().startswith(f"# Rehearsal: {name}")
    assert (tmp_path / "projected_gpu_hours.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "data").rglob("*")) == before  # nothing written
