"""BlockTrainer's retraining-plan optimizer (edgetune.retrain.planner): greedy's wall time on a 12-block instance
(target ≤ 10 ms) against exact enumeration, and greedy's objective gap to exact over random 8-block instances.

    python -m benchmarks.planner [--out benchmarks/results/planner.json]

Instances come from `random_instance` with a time budget of 500 all-compressed iterations.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edgetune.retrain.planner import exact, greedy, random_instance
from edgetune.runs.io import write_json

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 10.0


def wall_ms(solve, instance, repeats: int) -> list[float]:
    """Wall times in milliseconds of `solve(*instance)`, `repeats` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solve(*instance)
        times.append(1e3 * (time.perf_counter() - start))
    return times


def bench_timing(num_blocks: int, repeats: int, seed: int) -> dict:
    """Greedy's median and p90 over `repeats` runs after a warm-up, exact's median over 5, on one instance."""
    instance = random_instance(np.random.default_rng(seed), num_blocks)
    wall_ms(greedy, instance, 10)  # warm-up
    greedy_ms = wall_ms(greedy, instance, repeats)
    exact_ms = wall_ms(exact, instance, 5)
    plan, best = greedy(*instance), exact(*instance)
    return {
        "num_blocks": num_blocks,
        "greedy_median_ms": statistics.median(greedy_ms),
        "greedy_p90_ms": float(np.percentile(greedy_ms, 90)),
        "greedy_repeats": repeats,
        "greedy_target_ms": TARGET_MS,
        "within_target": statistics.median(greedy_ms) <= TARGET_MS,
        "exact_median_ms": statistics.median(exact_ms),
        "exact_repeats": 5,
        "greedy_iterations": plan.iterations,
        "exact_iterations": best.iterations,
        "greedy_objective": plan.objective,
        "exact_objective": best.objective,
    }


def bench_gap(num_blocks: int, instances: int, seed: int) -> dict:
    """Greedy's relative objective gap to exact, (exact - greedy) / exact, over random instances."""
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(instances):
        instance = random_instance(rng, num_blocks)
        best = exact(*instance).objective
        gaps.append((best - greedy(*instance).objective) / best)
    gaps = np.array(gaps)
    return {
        "num_blocks": num_blocks,
        "instances": instances,
        "gap_mean": float(gaps.mean()),
        "gap_max": float(gaps.max()),
        "share_with_gap": float((gaps > 1e-12).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "planner.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    timing = bench_timing(num_blocks=12, repeats=200, seed=args.seed)
    gap = bench_gap(num_blocks=8, instances=200, seed=args.seed + 1)
    write_json(
        args.out,
        {
            "benchmark": "retraining-plan optimizer: greedy wall time and gap to exact",
            "command": " ".join(["python -m benchmarks.planner", *(argv if argv is not None else sys.argv[1:])]),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "budget_all_compressed_iterations": 500,
            "timing": timing,
            "gap": gap,
        },
    )
    print(
        f"greedy (12 blocks): median {timing['greedy_median_ms']:.2f} ms, p90 {timing['greedy_p90_ms']:.2f} ms "
        f"(target ≤ {TARGET_MS:.0f} ms); exact: median {timing['exact_median_ms']:.1f} ms\n"
        f"gap to exact (8 blocks, {gap['instances']} instances): mean {100 * gap['gap_mean']:.2f}%, "
        f"max {100 * gap['gap_max']:.2f}%, {100 * gap['share_with_gap']:.0f}% of instances with a gap"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
