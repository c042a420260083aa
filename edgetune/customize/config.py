"""Configuration and profiles of the customization section (ACME: cloud → edge → device)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgetune.data.sources import SOURCES
from edgetune.models.open import check_model
from edgetune.profiles import resolve
from edgetune.runs.stages import Stage


@dataclass(frozen=True)
class CustomizeConfig:
    """Every number the customization notebook uses. Field names double as the notebook's parameter names."""

    seed: int = 0
    device: str = "auto"
    # Data: the cloud's training data (scenes; CIFAR-100 / Stanford Cars from data/ in the paper profile) and
    # the devices' own pool, which never leaves them (a different draw of the same distribution).
    data: str = "scenes"
    num_classes: int = 20
    fine_grained: bool = False
    train_size: int = 16_000
    test_size: int = 1_000
    device_pool_size: int = 8_000
    # Cloud: fine-tune, rewire, DynaViTw (widths), DynaViT (widths × depths). `model`: a VIT_FAMILY name or a path.
    model: str = "edge-small"
    batch_size: int = 128
    finetune_steps: int = 400
    finetune_lr: float = 2e-3
    importance_batches: int = 8
    dynavitw_steps: int = 120
    dynavit_steps: int = 60
    elastic_lr: float = 5e-4
    hidden_weight: float = 0.1
    checkpoint_every: int = 50
    # Edge: PFG selection and the header search (under a parameter budget) and the hand-made baselines.
    size_constraint: float = 0.8
    header_budget: int = 60_000  # trainable parameters the searched header may have
    header_channels: int = 32
    header_layers: int = 2
    header_nodes: int = 2
    search_steps: int = 60
    header_steps: int = 300
    header_lr: float = 1e-3
    header_train_size: int = 4_000
    header_grid: tuple[int, ...] = (1, 2)  # cells per layer (B) and layers (U) of the header-size heatmaps
    # Device: label-group splits of the devices' pool, local training, Taylor importance, personalization.
    num_devices: int = 5
    device_fraction: float = 0.1  # share of each of its classes' samples a device holds (ACME: 10%)
    rounds: int = 5
    local_steps: int = 20
    prune_per_round: int = 6
    device_lr: float = 0.01
    splits: tuple[str, ...] = ("IID", "C2", "C3", "C4")

    def __post_init__(self):
        if self.data not in SOURCES:
            raise ValueError(f"data={self.data!r}; expected one of {SOURCES}")
        if self.num_devices < 5:
            raise ValueError(f"num_devices={self.num_devices}: ACME's splits need at least 5 devices")
        check_model(self.model)
        if not 0 < self.size_constraint <= 1:
            raise ValueError(f"size_constraint={self.size_constraint} must lie in (0, 1] (normalized size)")
        for name in ("train_size", "test_size", "batch_size", "finetune_steps", "header_budget", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")


# The cloud's cached stages (`cloud.py`), each starting from the one before; the edge and device tiers are not cached.
FINETUNE = Stage(
    "acme-finetune",
    reads=(
        "seed",
        "data",
        "num_classes",
        "fine_grained",
        "train_size",
        "model",
        "batch_size",
        "finetune_steps",
        "finetune_lr",
    ),
)
_ELASTIC = ("seed", "model", "num_classes", "batch_size", "elastic_lr", "hidden_weight")
DYNAVITW = Stage(
    "acme-dynavitw",
    reads=(*_ELASTIC, "importance_batches", "dynavitw_steps"),
    after=(FINETUNE,),
    unkeyed=("checkpoint_every",),
)
DYNAVIT = Stage("acme-dynavit", reads=(*_ELASTIC, "dynavit_steps"), after=(DYNAVITW,), unkeyed=("checkpoint_every",))
STAGES = (FINETUNE, DYNAVITW, DYNAVIT)

PROFILES: dict[str, CustomizeConfig] = {
    "smoke": CustomizeConfig(
        num_classes=10,
        train_size=3_000,
        test_size=400,
        device_pool_size=1_500,
        model="edge-tiny",
        batch_size=64,
        finetune_steps=120,
        importance_batches=2,
        dynavitw_steps=20,
        dynavit_steps=8,
        checkpoint_every=20,
        header_budget=20_000,
        header_channels=16,
        header_layers=1,
        search_steps=10,
        header_steps=60,
        header_train_size=1_000,
        header_grid=(1,),
        device_fraction=0.3,
        rounds=2,
        local_steps=5,
        prune_per_round=2,
        splits=("C2",),
    ),
    "default": CustomizeConfig(),
    "gpu": CustomizeConfig(
        num_classes=40,
        train_size=60_000,
        test_size=4_000,
        device_pool_size=20_000,
        model="edge-base",
        batch_size=256,
        finetune_steps=2_000,
        finetune_lr=1e-3,
        importance_batches=32,
        dynavitw_steps=400,
        dynavit_steps=200,
        checkpoint_every=200,
        header_budget=150_000,
        header_channels=64,
        search_steps=120,
        header_steps=600,
        header_train_size=20_000,
        rounds=5,
        local_steps=20,
        prune_per_round=10,
        splits=("IID", "C2", "C3", "C4"),
        header_grid=(1, 2),
    ),
    "paper": CustomizeConfig(
        data="cifar100",
        num_classes=100,
        train_size=50_000,
        test_size=10_000,
        device_pool_size=10_000,
        model="model/vit-base-patch16-224",
        batch_size=32,
        finetune_steps=15_630,
        finetune_lr=5e-5,
        importance_batches=100,
        dynavitw_steps=4_689,
        dynavit_steps=4_689,
        elastic_lr=2e-5,
        checkpoint_every=500,
        header_budget=2_000_000,
        header_channels=256,
        header_layers=3,
        header_nodes=3,
        search_steps=300,
        header_steps=5_000,
        header_train_size=45_000,
        rounds=10,
        local_steps=20,
        prune_per_round=50,
        device_lr=1e-3,
        splits=("IID", "C2", "C3", "C4"),
        header_grid=(1, 2, 3),
    ),
}


def config(profile: str = "default", **overrides) -> CustomizeConfig:
    """The profile's CustomizeConfig with overrides applied (None keeps the profile's value)."""
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(CustomizeConfig))
