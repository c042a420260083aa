"""Supernet training throughput at the full spec against timm's plain ViT of the same shape, side by side in one
run (issue: ≥ 0.9×). bf16 autocast on CUDA, fp32 on CPU. Writes benchmarks/results/supernet_<device>_<model>.json.

    python -m benchmarks.supernet [--model edge-base] [--batch 128] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edgetune.customize.supernet import FULL, supernet_forward
from edgetune.models import VIT_FAMILY, build_vit
from edgetune.profiles import pick_device
from edgetune.runs import describe_device, package_versions, write_json
from edgetune.training import autocast

RESULTS = Path(__file__).resolve().parent / "results"


def images_per_second(forward, model, x, y, steps: int, device) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(device):
            loss = F.cross_entropy(forward(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * len(x) / (time.perf_counter() - start)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="edge-base", choices=list(VIT_FAMILY))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    plain, elastic = build_vit(args.model, 100).to(device), build_vit(args.model, 100).to(device)
    elastic.load_state_dict(plain.state_dict())
    size = VIT_FAMILY[args.model].img_size
    x = torch.rand(args.batch, 3, size, size, device=device)
    y = torch.randint(0, 100, (args.batch,), device=device)
    timm_rates, super_rates = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        timm_rates.append(images_per_second(plain, plain, x, y, args.steps, device))
        super_rates.append(
            images_per_second(lambda t: supernet_forward(elastic, t, FULL), elastic, x, y, args.steps, device)
        )
    ratio = statistics.median(s / t for s, t in zip(super_rates, timm_rates, strict=True))
    result = {
        "benchmark": "supernet training throughput at the full spec vs timm's plain ViT",
        "command": "python -m benchmarks.supernet " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "device": describe_device(device),
        "versions": package_versions(),
        "timm_images_per_s": timm_rates,
        "supernet_images_per_s": super_rates,
        "median_ratio": ratio,
        "target_ratio": 0.9,
        "meets_target": ratio >= 0.9,
    }
    write_json(RESULTS / f"supernet_{device.type}_{args.model}.json", result)
    print(f"{describe_device(device)}: supernet/timm throughput ratio {ratio:.3f} (target ≥ 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
