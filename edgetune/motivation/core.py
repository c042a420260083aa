"""The motivation section's measurements: early-exit accuracy vs ACME's energy model, model sizes and latencies vs
device budgets, non-IID device splits, accuracy across a stream of shifted domains, and the retraining gap of a
fixed compressed model."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from edgetune.data import sources as data_sources
from edgetune.data.partition import LABEL_GROUP_SETTINGS, dirichlet_split, label_group_split, label_histogram
from edgetune.data.scenes import CLEAR, Domain, domain_stream
from edgetune.data.sources import Source
from edgetune.models import VIT_FAMILY, build_vit, forward_flops, image_size, open_vit, prune_width
from edgetune.motivation.config import RETRAIN, TRAIN, MotivationConfig
from edgetune.motivation.train import EarlyExitViT, train_early_exit
from edgetune.profiles import pick_device
from edgetune.runs import (
    RunResult,
    count_parameters,
    describe_device,
    load_weights,
    package_versions,
    save_weights,
)
from edgetune.training import accuracy, derive_seed, finetune, hits, output_hits


# ---------------------------------------------------------------------------------------------- data
def load_source(cfg: MotivationConfig) -> Source:
    return data_sources.load_source(
        cfg.data,
        num_classes=cfg.num_classes,
        image_size=image_size(cfg.model),
        train_size=cfg.train_size,
        test_size=cfg.test_size,
        seed=cfg.seed,
        fine_grained=cfg.fine_grained,
    )


def stream(cfg: MotivationConfig) -> list[Domain]:
    """The clear source domain followed by `num_domains` shifted ones."""
    return [CLEAR, *domain_stream(cfg.num_domains, seed=cfg.seed)]


# ---------------------------------------------------------------------------------------------- (a) depth
def new_model(cfg: MotivationConfig) -> EarlyExitViT:
    vit = open_vit(cfg.model, cfg.num_classes)
    torch.manual_seed(cfg.seed)  # the exits' initialization (the ViT's own is fixed by the same seed upstream)
    return EarlyExitViT(vit)


def trained_model(cfg: MotivationConfig, source: Source, force: bool = False) -> tuple[EarlyExitViT, RunResult]:
    """Train (or load from the cache) the early-exit ViT on clear scenes."""
    device = pick_device(cfg.device)

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (TRAIN.reads)
        torch.manual_seed(cfg.seed)
        model = new_model(cfg)
        result = train_early_exit(
            model,
            source.train,
            steps=cfg.train_steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            folder=folder,
            checkpoint_every=cfg.checkpoint_every,
            device=device,
        )
        save_weights(model, folder / "model.safetensors")
        result.artifacts["weights"] = "model.safetensors"
        return result

    result, folder = TRAIN.run(cfg, compute, force=force)
    torch.manual_seed(cfg.seed)
    model = load_weights(new_model(cfg), folder / "model.safetensors").to(device)
    return model, result


# ACME's motivation energy model (docs/motivation.md#depth-accuracy-and-energy):
# P(d) = d·(G + Ĝ·w·d) + d·p·G_b·b, normalized by P(depth). The constants are ACME's assumptions, not measurements.
ENERGY = {"G": 1.0, "G_hat": 0.1, "w": 1.0, "p": 0.2, "G_b": 1.0, "b": 0.5}


def energy_ratio(depth: int, total: int, c: dict = ENERGY) -> float:
    def power(d: int) -> float:
        return d * (c["G"] + c["G_hat"] * c["w"] * d) + d * c["p"] * c["G_b"] * c["b"]

    return power(depth) / power(total)


def depth_curve(model: EarlyExitViT, source: Source, device) -> pd.DataFrame:
    """Accuracy of each exit on the clear test set beside ACME's modelled energy ratio."""
    right = output_hits(model, source.test, device)
    depth = len(right)
    curve = pd.DataFrame(
        {
            "blocks": range(1, depth + 1),
            "accuracy": [sum(r) / len(r) for r in right],
            "energy_ratio": [energy_ratio(d, depth) for d in range(1, depth + 1)],
        }
    )
    curve.attrs["test_correct"] = right  # per exit, per test item: what the ledger's interval resamples
    return curve


def saturation(curve: pd.DataFrame) -> dict[str, float]:
    """Accuracy gained over the first and the second half of the blocks, and the energy curve's convexity."""
    acc, energy = curve.accuracy.tolist(), curve.energy_ratio.tolist()
    half = len(acc) // 2
    second_diff = [energy[i + 1] - 2 * energy[i] + energy[i - 1] for i in range(1, len(energy) - 1)]
    return {
        "gain_first_half": acc[half - 1] - acc[0],
        "gain_second_half": acc[-1] - acc[half - 1],
        "energy_min_second_difference": min(second_diff, default=float("nan")),  # needs 3 blocks
        "energy_at_half_depth": energy[half - 1],
    }


# ---------------------------------------------------------------------------------------------- (b) devices
@dataclass(frozen=True)
class DeviceBudget:
    """An edge device class: memory available to the model, sustained fp32 throughput, and a latency target.

    These are representative assumptions for illustration (orders of magnitude from public spec sheets), not
    measurements; the models' sizes, FLOPs and the host latencies beside them are measured.
    """

    name: str
    memory_mb: float
    gflops: float
    latency_ms: float


DEVICES = (
    DeviceBudget("microcontroller", 1.0, 0.2, 200.0),
    DeviceBudget("smart camera", 16.0, 5.0, 50.0),
    DeviceBudget("Raspberry Pi 4", 256.0, 12.0, 100.0),
    DeviceBudget("smartphone", 512.0, 150.0, 30.0),
    DeviceBudget("Jetson Orin Nano", 2_048.0, 600.0, 20.0),
    DeviceBudget("edge server (T4)", 8_192.0, 6_000.0, 10.0),
)


def measure_family(names: tuple[str, ...], repeats: int, device, num_classes: int = 1000) -> pd.DataFrame:
    """Parameters, fp32 size, forward FLOPs (torch's FlopCounterMode) and median batch-1 latency per model."""
    rows = []
    for name in names:
        model = build_vit(name, num_classes).to(device).eval()
        x = torch.rand(1, 3, VIT_FAMILY[name].img_size, VIT_FAMILY[name].img_size, device=device)
        flops = forward_flops(model, x)
        with torch.no_grad():
            times = [_timed(model, x, device) for _ in range(repeats + 1)][1:]  # first call warms up
        params, _ = count_parameters(model)
        rows.append(
            {
                "model": name,
                "params_m": params / 1e6,
                "size_mb": params * 4 / 2**20,
                "gflops": flops / 1e9,
                "latency_ms": 1e3 * statistics.median(times),
            }
        )
    return pd.DataFrame(rows)


def _timed(model, x, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def device_fit(family: pd.DataFrame, devices: tuple[DeviceBudget, ...] = DEVICES) -> pd.DataFrame:
    """Modelled latency (FLOPs / device throughput) of every model on every device, and whether it fits."""
    rows = []
    for d in devices:
        for m in family.itertuples():
            latency = 1e3 * m.gflops / d.gflops
            rows.append(
                {
                    "device": d.name,
                    "model": m.model,
                    "latency_ms": latency,
                    "size_mb": m.size_mb,
                    "fits_memory": m.size_mb <= d.memory_mb,
                    "fits_latency": latency <= d.latency_ms,
                }
            )
    out = pd.DataFrame(rows)
    out["fits"] = out.fits_memory & out.fits_latency
    return out


# ---------------------------------------------------------------------------------------------- (c) splits
def split_histograms(cfg: MotivationConfig, labels: torch.Tensor) -> pd.DataFrame:
    """Long table (split, client, label, count) of ACME's label-group splits and Dirichlet(α) splits."""
    splits = {name: label_group_split(labels, name, cfg.split_fraction, seed=cfg.seed) for name in LABEL_GROUP_SETTINGS}
    for alpha in cfg.dirichlet_alphas:
        splits[f"Dir(α={alpha:g})"] = dirichlet_split(labels, 5, alpha, seed=cfg.seed)
    rows = []
    for name, parts in splits.items():
        counts = label_histogram(labels, parts, cfg.num_classes)
        for client, row in enumerate(counts.tolist()):
            rows += [{"split": name, "client": client, "label": c, "count": n} for c, n in enumerate(row)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- (d) shift
def stream_accuracy(
    cfg: MotivationConfig, model: EarlyExitViT, source: Source, domains: list[Domain], device
) -> pd.DataFrame:
    """Accuracy of the deployed (last-exit) classifier on every domain of the stream, clear first."""
    rows, correct = [], []
    for i, domain in enumerate(domains):
        data = (
            source.test
            if i == 0
            else source.domain(domain, cfg.test_size, seed=derive_seed(cfg.seed, "domain", i, "test"))
        )
        right = hits(model.vit, data, device)
        correct.append(right)
        rows.append(
            {
                "index": i,
                "domain": domain.name,
                "severity": domain.severity,
                "accuracy": sum(right) / len(right),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["test_correct"] = correct  # per domain (clear first), per test item
    return table


# ---------------------------------------------------------------------------------------------- (e) retraining gap
def retraining_gap(
    cfg: MotivationConfig, model: EarlyExitViT, source: Source, domains: list[Domain], force: bool = False
) -> pd.DataFrame:
    """Per shifted domain: accuracy before and after retraining the full model and a fixed half-width compressed
    copy (L1-pruned, recovered on clear data) for the same number of steps. Cached as one stage."""
    device = pick_device(cfg.device)

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (RETRAIN.reads)
        start = time.perf_counter()
        compressed = prune_width(model.vit, cfg.compressed_width)
        finetune(
            compressed,
            source.train,
            steps=cfg.recover_steps,
            batch_size=cfg.batch_size,
            lr=cfg.retrain_lr,
            seed=cfg.seed,
            device=device,
        )
        rows = []
        for i, domain in enumerate(domains[1 : cfg.retrain_domains + 1], start=1):
            train = source.domain(domain, cfg.retrain_size, seed=derive_seed(cfg.seed, "domain", i, "train"))
            test = source.domain(domain, cfg.test_size, seed=derive_seed(cfg.seed, "domain", i, "test"))
            for name, base in (("full", model.vit), ("compressed", compressed)):
                net = copy.deepcopy(base)
                before = accuracy(net, test, device)[0]
                finetune(
                    net,
                    train,
                    steps=cfg.retrain_steps,
                    batch_size=min(cfg.batch_size, 64),
                    lr=cfg.retrain_lr,
                    seed=derive_seed(cfg.seed, "retrain", i),
                    device=device,
                )
                right = hits(net, test, device)
                rows.append(
                    {
                        "index": i,
                        "domain": domain.name,
                        "model": name,
                        "params_m": count_parameters(net)[0] / 1e6,
                        "before": before,
                        "after": sum(right) / len(right),
                        "after_correct": right,
                    }
                )
        return RunResult(
            stage="motivation-retraining-gap",
            config={},  # the stage's key, stamped by Stage.run
            seed=cfg.seed,
            history=rows,
            wall_time_s=time.perf_counter() - start,
            device=describe_device(device),
            versions=package_versions(),
        )

    result, _ = RETRAIN.run(cfg, compute, force=force)
    # an explicit column order: a cached result comes back from JSON with its keys sorted
    table = pd.DataFrame(result.history, columns=["index", "domain", "model", "params_m", "before", "after"])
    table.attrs["test_correct"] = [row["after_correct"] for row in result.history]  # per row, per test item
    return table
