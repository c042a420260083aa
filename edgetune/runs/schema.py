"""The one result schema every run writes: resolved config, per-step metrics, sizes, cost, environment, seed."""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch

PACKAGES = (
    "edgetune",
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "peft",
    "accelerate",
    "numpy",
    "matplotlib",
    "seaborn",
    "pandas",
    "papermill",
    "nbval",
)


# Dense bf16 tensor throughput (TFLOP/s) of the GPUs MFU is quoted against, matched by name: the vendors' figures
# without sparsity (H100/H200 SXM 989, A100 312, L40S 362, A10 125, RTX 4090 165).
PEAK_BF16_TFLOPS = {  # the more specific names first
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
}


def peak_tflops(device: str) -> float | None:
    """The dense bf16 peak of a GPU named `device` (as `describe_device` writes it), times N for "<name> × N" (a run
    over N processes, one GPU each); None for a CPU or an unknown GPU, whose MFU is then not stated."""
    name, _, count = device.partition(" × ")
    peak = next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)
    return None if peak is None else peak * (int(count) if count.strip().isdigit() else 1)


@dataclass
class RunResult:
    """What one run produced. `history` holds one dict per logged step; `metrics` the final values."""

    stage: str
    config: dict[str, Any]
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    params_total: int | None = None
    params_trainable: int | None = None
    flops: float | None = None
    wall_time_s: float | None = None
    peak_memory_bytes: int | None = None
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    key: str = ""
    checksums: dict[str, str] = field(default_factory=dict)  # SHA-256 of every file of its cache folder
    # training FLOPs over wall time, and that as a share of the GPU's bf16 peak (model FLOP utilization); computed
    # from the fields above whenever both are known, never stored independently of them
    achieved_tflops: float | None = None
    mfu: float | None = None

    def __post_init__(self):
        if self.flops and self.wall_time_s:
            self.achieved_tflops = self.flops / self.wall_time_s / 1e12
            peak = peak_tflops(self.device)
            self.mfu = None if peak is None else self.achieved_tflops / peak
        else:
            self.achieved_tflops = self.mfu = None

    @classmethod
    def measured(
        cls, stage: str, config: dict[str, Any], seed: int, model: torch.nn.Module, device, meter: Meter, **fields
    ) -> RunResult:
        """A result whose environment fields come from the run itself: `model`'s parameter counts, `meter`'s wall
        time and peak memory, the device's name and the installed package versions."""
        total, trainable = count_parameters(model)
        return cls(
            stage=stage,
            config=config,
            seed=seed,
            params_total=total,
            params_trainable=trainable,
            wall_time_s=meter.wall_time_s,
            peak_memory_bytes=meter.peak_memory_bytes,
            device=describe_device(device),
            versions=package_versions(),
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"result JSON has fields {unknown} that RunResult does not know; expected {sorted(names)}")
        return cls(**d)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result (missing ones are skipped)."""
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_commit() -> str | None:
    """The git commit of the project the code runs from, with "+dirty" when its tree has uncommitted changes outside
    figures/ (which a reproduction itself rewrites); None outside a git checkout. `EDGETUNE_COMMIT` names it where
    the checkout has no .git (a copied tree)."""
    import subprocess

    from edgetune.paths import root

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root(), capture_output=True, text=True, check=True)
        status = ["git", "status", "--porcelain", "--", ".", ":(exclude)figures"]
        dirty = subprocess.run(status, cwd=root(), capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("EDGETUNE_COMMIT") or None


def describe_device(device: torch.device | str = "cpu") -> str:
    """A human-readable device name: the GPU model, or the CPU with its core count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


class Meter:
    """Wall time and peak memory of a block of work: CUDA peak allocation on GPU, the process's peak RSS on CPU."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def __enter__(self) -> Meter:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_time_s = time.perf_counter() - self._start
        if self.device.type == "cuda":
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:  # ru_maxrss is in KiB on Linux
            self.peak_memory_bytes = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
