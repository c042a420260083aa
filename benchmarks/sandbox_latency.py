"""What the sandbox costs per HumanEval program: the published canonical solutions scored under bubblewrap
(`sandbox.passes`: namespaces, tmpfs root, rlimits, pids cgroup, nonce channel, audit-hook guard) against the same
program and tests run by a plain `python -I` subprocess with no isolation (what a naive scorer does), interleaved
one by one so both see the same machine load. Medians and their ratio; both must agree on every verdict.

    python benchmarks/sandbox_latency.py [--problems 40] [--out benchmarks/results/sandbox_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgetune.strato import sandbox, tasks
from edgetune.strato.config import packaged_humaneval


def plain(program: str, tests: str, entry_point: str, wall_s: float) -> bool:
    """The unisolated baseline: one interpreter, the program, its tests, `check(entry_point)`; exit 0 = pass."""
    source = f"{program}\n{tests}\ncheck({entry_point})\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "program.py")
        path.write_text(source)
        try:
            done = subprocess.run([sys.executable, "-I", str(path)], capture_output=True, timeout=wall_s, cwd=folder)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=40)
    p.add_argument("--out", default="benchmarks/results/sandbox_latency.json")
    args = p.parse_args()
    task = tasks.read_humaneval(packaged_humaneval())
    problems = [*task.train, *task.dev, *task.test][: args.problems]
    limits = sandbox.Limits(wall_s=10, cpu_s=10)
    timings: dict[str, list[float]] = {"bwrap": [], "plain": []}
    agree = 0
    for ex in problems:
        program = ex.prompt + ex.answer
        start = time.perf_counter()
        isolated = sandbox.passes(program, ex.reference, ex.entry_point, limits).passed
        timings["bwrap"].append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline = plain(program, ex.reference, ex.entry_point, limits.wall_s)
        timings["plain"].append(time.perf_counter() - start)
        agree += isolated == baseline
    med = {k: statistics.median(v) for k, v in timings.items()}
    report = {
        "command": "python benchmarks/sandbox_latency.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "bubblewrap": subprocess.run(
            [sandbox.bubblewrap(), "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "problems": len(problems),
        "verdicts_agree": agree,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "p90_s": {k: round(statistics.quantiles(v, n=10)[-1], 4) for k, v in timings.items()},
        "ratio_bwrap_vs_plain": round(med["bwrap"] / med["plain"], 2),
        "extra_ms_per_program": round(1000 * (med["bwrap"] - med["plain"]), 1),
        "humaneval_164_extra_s": round(164 * (med["bwrap"] - med["plain"]), 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if agree == len(problems) else 1


if __name__ == "__main__":
    sys.exit(main())
