"""Benchmarks of the foundation: the scene generator's throughput and the motivation notebook's wall time per
profile. Results go to benchmarks/results/<name>.json with the command, the machine and the raw timings.

    python -m benchmarks.run [--only scenes motivation] [--profiles smoke default]

Notebook timings are cold: a fresh cache and figures folder under runs/bench/, so nothing is reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from edgetune.data.scenes import CLEAR, SceneSpec, domain_stream, render_scenes
from edgetune.paths import SECTIONS
from edgetune.profiles import budget_s
from edgetune.runs import describe_device, package_versions, write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def bench_scenes(n: int = 20_000, repeats: int = 5) -> dict:
    """Images per second rendering n 32×32 scenes: clear, and each domain of a 12-domain stream."""
    spec = SceneSpec(num_classes=20, image_size=32)
    render_scenes(spec, CLEAR, 2_048, seed=0)  # warm-up
    rows = {}
    for domain in [CLEAR, *domain_stream(12, seed=0)]:
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            render_scenes(spec, domain, n, seed=r)
            times.append(time.perf_counter() - start)
        rows[domain.name] = n / statistics.median(times)
    shifted = list(rows.values())[1:]
    return {
        "target_images_per_s": 20_000,
        "clear_images_per_s": rows["clear"],
        "stream_median_images_per_s": statistics.median(shifted),
        "stream_min_images_per_s": min(shifted),
        "per_domain_images_per_s": rows,
        "images": n,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
    }


def bench_notebook(section: str, profile: str) -> dict:
    """Cold wall time of `edgetune reproduce --section S --profile P --force` in a scratch runs/figures folder."""
    scratch = ROOT / "runs" / "bench" / f"{section}-{profile}"
    shutil.rmtree(scratch, ignore_errors=True)
    env = {**os.environ, "EDGETUNE_RUNS": str(scratch / "runs"), "EDGETUNE_FIGURES": str(scratch / "figures")}
    command = [sys.executable, "-m", "edgetune.cli", "reproduce", "--section", section, "--profile", profile, "--force"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {"section": section, "profile": profile, "wall_s": wall, "command": " ".join(command[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=["scenes", *SECTIONS], default=["scenes", *SECTIONS])
    parser.add_argument("--profiles", nargs="+", default=["smoke", "default"])
    args = parser.parse_args(argv)
    machine = {"device": describe_device("cpu"), "cpu_count": os.cpu_count(), "versions": package_versions()}
    if "scenes" in args.only:
        result = {
            "benchmark": "scene generator throughput",
            "command": "python -m benchmarks.run --only scenes",
            **machine,
            **bench_scenes(),
        }
        write_json(RESULTS / "scenes.json", result)
        print(
            f"scenes: clear {result['clear_images_per_s']:,.0f} img/s, stream median "
            f"{result['stream_median_images_per_s']:,.0f} img/s (target 20,000)"
        )
    for section in (s for s in SECTIONS if s in args.only):
        runs = [bench_notebook(section, p) for p in args.profiles]
        for run in runs:
            run["budget_s"] = budget_s(run["section"], run["profile"])
            run["within_budget"] = run["budget_s"] is None or run["wall_s"] <= run["budget_s"]
            print(f"{section}/{run['profile']}: {run['wall_s']:.1f} s (budget {run['budget_s']} s)")
        write_json(
            RESULTS / f"{section}.json",
            {
                "benchmark": f"{section} notebook wall time (cold)",
                "command": f"python -m benchmarks.run --only {section}",
                **machine,
                "runs": runs,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
