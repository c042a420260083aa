"""Training throughput of the divided ViT (an FT/E2E model of `edgetune.assemble`) against timm's plain
VisionTransformer of the same shape, side by side and interleaved in one run (issue: ≥ 0.95×). Writes
benchmarks/results/divided_<device>_<model>.json.

    python -m benchmarks.divided [--model edge-small] [--depths 2 2 2 2] [--batch 128] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace

import torch
from timm.models.vision_transformer import VisionTransformer

from benchmarks.supernet import RESULTS, images_per_second
from edgetune.assemble import Division, build_divided
from edgetune.models import VIT_FAMILY
from edgetune.profiles import pick_device
from edgetune.runs import describe_device, package_versions, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="edge-small", choices=list(VIT_FAMILY))
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 2, 2, 2])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    division = Division(tuple(args.depths))
    shape = replace(VIT_FAMILY[args.model], depth=division.total)
    torch.manual_seed(0)
    divided = build_divided(shape, division, 100).to(device)
    plain = VisionTransformer(
        img_size=shape.img_size,
        patch_size=shape.patch_size,
        embed_dim=shape.embed_dim,
        depth=shape.depth,
        num_heads=shape.num_heads,
        mlp_ratio=shape.mlp_hidden / shape.embed_dim,
        num_classes=100,
    ).to(device)
    x = torch.rand(args.batch, 3, shape.img_size, shape.img_size, device=device)
    y = torch.randint(0, 100, (args.batch,), device=device)
    plain_rates, divided_rates = [], []
    for _ in range(args.repeats):
        plain_rates.append(images_per_second(plain, plain, x, y, args.steps, device))
        divided_rates.append(images_per_second(divided, divided, x, y, args.steps, device))
    ratio = statistics.median(d / p for d, p in zip(divided_rates, plain_rates, strict=True))
    write_json(
        RESULTS / f"divided_{device.type}_{args.model}.json",
        {
            "benchmark": "divided ViT training throughput vs timm's plain ViT of the same shape",
            "command": "python -m benchmarks.divided " + " ".join(argv or sys.argv[1:]),
            "model": args.model,
            "depths": args.depths,
            "batch": args.batch,
            "steps": args.steps,
            "repeats": args.repeats,
            "device": describe_device(device),
            "versions": package_versions(),
            "plain_images_per_s": plain_rates,
            "divided_images_per_s": divided_rates,
            "median_ratio": ratio,
            "target_ratio": 0.95,
            "meets_target": ratio >= 0.95,
        },
    )
    print(f"{describe_device(device)}: divided/plain throughput ratio {ratio:.3f} (target ≥ 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
