"""The shared numerics every section draws from: one seed rule, one schedule, one scoped RNG."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from edgetune.training import derive_seed, seeded_rng, warmup_cosine

PACKAGE = Path(__file__).resolve().parents[1] / "edgetune"


def test_a_derived_seed_is_a_stable_hash_of_the_run_seed_and_the_stream_name():
    assert derive_seed(0, "scenes", "train") == 1_424_362_366  # the same on every run, process and platform
    assert derive_seed(0, "scenes", "train") != derive_seed(0, "scenes", "test") != derive_seed(1, "scenes", "test")
    # the collision linear offsets had: 10 000·0 + 10 000 == 10 000·1 + 0
    assert derive_seed(0, 10_000) != derive_seed(1, 0)
    seeds = {derive_seed(s, "batch", step) for s in range(5) for step in range(2_000)}
    assert len(seeds) == 10_000 and all(0 <= s < 2**31 for s in seeds)


def test_no_section_derives_a_seed_by_arithmetic():
    """Every derived stream goes through derive_seed: no `seed + k`, `k * seed`, ... anywhere in the package."""

    def seedlike(node) -> bool:
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        return name.endswith("seed")

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.BinOp) and (seedlike(node.left) or seedlike(node.right)):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert found == []


def test_a_seeded_block_draws_the_same_whatever_ran_before_and_leaves_the_caller_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded_rng(7):
        first = torch.rand(4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    torch.rand(100)  # whatever the caller drew meanwhile
    with seeded_rng(7):
        assert torch.equal(torch.rand(4), first)
    with seeded_rng(8):
        assert not torch.equal(torch.rand(4), first)


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_warmup_cosine_rises_linearly_then_falls_to_its_floor(floor):
    peak, warmup, steps = 3e-3, 10, 110
    lrs = [warmup_cosine(s, warmup, steps, floor=floor, peak=peak) for s in range(steps + 1)]
    assert lrs[:warmup] == pytest.approx([peak * (s + 1) / warmup for s in range(warmup)])
    assert lrs[warmup] == peak
    assert lrs[warmup + 50] == pytest.approx(peak * (floor + (1 - floor) * 0.5))  # half-way down the cosine
    assert lrs[steps] == pytest.approx(peak * floor)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :], strict=False))
    assert math.isclose(warmup_cosine(0, 0, 1, peak=peak), peak)  # no warm-up: starts at the peak


def test_training_flops_count_three_forwards_and_leave_the_rng_and_mode_alone():
    from edgetune.models import build_vit, forward_flops
    from edgetune.models.vit import ViTShape
    from edgetune.training import training_flops

    torch.manual_seed(0)
    vit = build_vit(ViTShape(32, 8, 32, 2, 2, 64), 5)
    teacher = build_vit(ViTShape(32, 8, 64, 2, 2, 128), 5).eval()
    forward = forward_flops(vit.eval(), torch.zeros(1, 3, 32, 32))
    vit.train()
    state = torch.get_rng_state()
    assert training_flops(vit, 32, 10) == 10 * 3 * forward
    both = training_flops(vit, 32, 10, teacher)
    assert both == 10 * (3 * forward + forward_flops(teacher, torch.zeros(1, 3, 32, 32)))
    assert vit.training and not teacher.training and torch.equal(torch.get_rng_state(), state)
