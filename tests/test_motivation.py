import numpy as np
import pandas as pd
import pytest
import torch
from stage_keys import assert_keyed_by_reads
from torch.utils.flop_counter import FlopCounterMode

from edgetune.models import build_vit
from edgetune.motivation import claims_rows, config
from edgetune.motivation.core import DEVICES, DeviceBudget, device_fit, energy_ratio, measure_family, saturation
from edgetune.motivation.train import EarlyExitViT


def test_energy_model_reproduces_acmes_ratios():
    # ratios [0.04, 0.09, ..., 1.00] from ACME's calculate_motiv_energy.py at depth 12
    # (docs/motivation.md#depth-accuracy-and-energy)
    ratios = [round(energy_ratio(d, 12), 2) for d in range(1, 13)]
    assert ratios == [0.04, 0.09, 0.15, 0.22, 0.29, 0.37, 0.46, 0.55, 0.65, 0.76, 0.88, 1.00]


def test_early_exit_vit_returns_one_logit_set_per_block():
    torch.manual_seed(0)
    model = EarlyExitViT(build_vit("edge-tiny", 6)).eval()
    x = torch.rand(2, 3, 32, 32)
    outs = model(x)
    assert len(outs) == 4 and all(o.shape == (2, 6) for o in outs)
    torch.testing.assert_close(outs[-1], model.vit(x))  # the last exit is the plain ViT
    assert sum(p.numel() for p in model.exits.parameters()) == 3 * (2 * 48 + 48 * 6 + 6)


def test_measured_flops_match_the_analytic_count():
    shape_flops = measure_family(("edge-tiny",), repeats=1, device=torch.device("cpu"), num_classes=10).gflops[0]
    t, c, h, p = 17, 48, 192, 8  # tokens, width, MLP hidden, patch
    per_block = 2 * t * c * 3 * c + 2 * 2 * t * t * c + 2 * t * c * c + 2 * 2 * t * c * h
    expected = 4 * per_block + 2 * 16 * (3 * p * p) * c + 2 * c * 10
    assert shape_flops * 1e9 == pytest.approx(expected, rel=1e-9)
    # Plain FlopCounterMode misses the fused CPU attention kernel: exactly the attention FLOPs.
    model, x = build_vit("edge-tiny", 10).eval(), torch.rand(1, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert expected - counter.get_total_flops() in (0, 4 * 2 * 2 * t * t * c)


def test_device_fit_flags_memory_and_latency():
    family = pd.DataFrame({"model": ["small", "big"], "size_mb": [1.0, 500.0], "gflops": [0.01, 40.0]})
    devices = (DeviceBudget("d", memory_mb=100.0, gflops=10.0, latency_ms=50.0),)
    fit = device_fit(family, devices)
    assert fit.latency_ms.tolist() == pytest.approx([1.0, 4000.0])
    assert fit.fits.tolist() == [True, False] and fit.fits_memory.tolist() == [True, False]
    assert len(device_fit(family)) == 2 * len(DEVICES)


def _items(accuracy: float, n: int = 400, seed: int = 0) -> list[int]:
    """n per-item 0/1 scores whose mean is exactly `accuracy` (rounded to an item), in a seeded order."""
    right = round(accuracy * n)
    return np.random.default_rng(seed).permutation([1] * right + [0] * (n - right)).tolist()


def _curve(acc, nested: bool = True):
    curve = pd.DataFrame(
        {
            "blocks": range(1, len(acc) + 1),
            "accuracy": acc,
            "energy_ratio": [energy_ratio(d, len(acc)) for d in range(1, len(acc) + 1)],
        }
    )
    n, order = 400, np.random.default_rng(1).permutation(400)
    # nested: an item an exit gets right stays right at deeper exits (the per-item gains are then all ≥ 0)
    curve.attrs["test_correct"] = [[int(r < round(a * n)) for r in order] for a in acc]
    return curve


def _shift(acc):
    shift = pd.DataFrame({"accuracy": acc})
    shift.attrs["test_correct"] = [_items(a, seed=i) for i, a in enumerate(acc)]
    return shift


def _gap(after, paired: bool = True):
    gap = pd.DataFrame({"domain": ["a", "a", "b", "b"], "model": ["full", "compressed"] * 2, "after": after})
    # paired: both models right on the same easiest items; otherwise each on items of its own
    gap.attrs["test_correct"] = [_items(a, seed=2 if paired else 2 + i) for i, a in enumerate(after)]
    return gap


def test_claims_follow_the_measurements():
    rows = claims_rows("smoke", _curve([0.3, 0.6, 0.7, 0.72]), _shift([0.9, 0.5, 0.7]), _gap([0.8, 0.6, 0.7, 0.7]))
    assert [r.holds for r in rows] == [True, True, True]
    assert saturation(_curve([0.3, 0.6, 0.7, 0.72]))["gain_first_half"] == pytest.approx(0.3)
    assert rows[1].reproduced_value == "clear 0.900 → mean 0.600 over 2 domains (worst 0.500)"
    assert rows[2].reproduced_value.startswith("full 0.750 vs half-width 0.650 (gap +0.100, full ahead on 1/2")
    depth, shift, gap = (r.estimate for r in rows)
    assert depth.value == pytest.approx(100 * (0.3 - 0.12)) and depth.items == 400
    assert shift.value == pytest.approx(30.0) and shift.items == 1200 and shift.low > 5
    assert gap.value == pytest.approx(10.0) and gap.items == 800 and gap.low > 1
    assert all(r.unit == "points" and "95 % bootstrap interval" in r.note for r in rows)
    refuted = claims_rows("smoke", _curve([0.3, 0.4, 0.5, 0.9]), _shift([0.9, 0.95, 0.97]), _gap([0.5, 0.8, 0.5, 0.8]))
    assert [r.holds for r in refuted] == [False, False, False]  # gains grow; accuracy rises; compressed ahead
    noise = claims_rows(
        "smoke", _curve([0.3, 0.5, 0.6, 0.7]), _shift([0.9, 0.85, 0.85]), _gap([0.7, 0.7, 0.7, 0.72], paired=False)
    )
    # equal gains, a 5-point drop and a 1-point gap (items not shared): each on its threshold, within the noise
    assert [r.holds for r in noise] == [None, None, None]
    assert all("inconclusive" in r.note and r.estimate.low < r.estimate.high for r in noise)
    convex_fails = claims_rows(
        "smoke",
        _curve([0.3, 0.6, 0.7, 0.72]).assign(energy_ratio=[0.1, 0.5, 0.8, 1.0]),
        _shift([0.9, 0.5]),
        _gap([0.8, 0.6, 0.7, 0.7]),
    )
    assert convex_fails[0].holds is False and "not convex" in convex_fails[0].note


def test_claims_need_per_item_scores():
    curve = _curve([0.3, 0.6, 0.7, 0.72])
    curve.attrs.clear()
    with pytest.raises(ValueError, match="depth curve table has no per-item scores"):
        claims_rows("smoke", curve, _shift([0.9, 0.5]), _gap([0.8, 0.6, 0.7, 0.7]))


def test_config_profiles_and_validation():
    assert config("smoke").model == "edge-tiny" and config("default").model == "edge-small"
    assert config("smoke", train_steps=7, seed=None).train_steps == 7  # None keeps the profile's value
    assert config("smoke", seed=None).seed == config("smoke").seed
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        config("fast")
    with pytest.raises(ValueError, match="has no parameter"):
        config("smoke", bogus=1)
    with pytest.raises(ValueError, match="num_domains=5: the shift stream needs at least 10 domains"):
        config("smoke", num_domains=5)
    with pytest.raises(ValueError, match="latency_models"):
        config("smoke", latency_models=("vit-z",))


def test_cached_stage_keys_follow_the_scene_generator_version(monkeypatch):
    import importlib

    from edgetune.runs import config_hash

    scenes = importlib.import_module("edgetune.data.scenes")  # where every section's stage keys read it

    from edgetune.runs.stages import Stage

    stage = Stage("probe", reads=("seed", "train_steps"))
    key = stage.key(config("smoke"))
    assert key == {"seed": 0, "train_steps": 150, "scenes_version": scenes.SCENES_VERSION, "numerics": 2}
    monkeypatch.setattr(scenes, "SCENES_VERSION", scenes.SCENES_VERSION + 1)
    assert config_hash(stage.key(config("smoke"))) != config_hash(key)
    monkeypatch.undo()
    monkeypatch.setattr("edgetune.runs.stages.NUMERICS", 3)  # a change to the shared seeds or schedules
    assert config_hash(stage.key(config("smoke"))) != config_hash(key)


def test_each_cached_stage_is_keyed_by_what_it_reads():
    """The early-exit stage reads the data and training fields; the retraining-gap stage those and its own, but not
    the stream's length (its first `retrain_domains` domains do not depend on it) nor anything host-only."""
    from edgetune.data.scenes import domain_stream
    from edgetune.motivation.config import STAGES

    base = config("smoke")
    assert domain_stream(base.num_domains + 5, seed=base.seed)[: base.num_domains] == domain_stream(
        base.num_domains, seed=base.seed
    )
    expected = {
        "motivation-early-exit": {"train_steps", "data", "model", "seed"},
        "motivation-retraining-gap": {"train_steps", "retrain_steps", "retrain_domains", "test_size", "seed"},
    }
    unread = {"num_domains", "latency_repeats", "latency_models", "checkpoint_every", "device"}
    assert_keyed_by_reads(base, STAGES, expected, unread)
