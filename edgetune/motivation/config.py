"""Configuration and profiles of the motivation section (the challenges the four methods answer)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgetune.models.open import check_model
from edgetune.models.vit import VIT_FAMILY
from edgetune.profiles import resolve
from edgetune.runs.stages import Stage

DATA_SOURCES = ("scenes", "cifar100")


@dataclass(frozen=True)
class MotivationConfig:
    """Every number the motivation notebook uses. Field names double as the notebook's parameter names."""

    seed: int = 0
    device: str = "auto"
    # Data: embedded edge scenes, or CIFAR-100 from data/ (paper profile; domains are then applied to its images).
    data: str = "scenes"
    num_classes: int = 20
    fine_grained: bool = False
    train_size: int = 20_000
    test_size: int = 500  # per domain
    # (a) the early-exit ViT: a VIT_FAMILY name, or a path to a checkpoint for load_vit (paper profile).
    model: str = "edge-small"
    batch_size: int = 128
    train_steps: int = 500
    lr: float = 2e-3
    weight_decay: float = 0.05
    checkpoint_every: int = 100
    # (b) device budgets: the models whose size and latency are measured here.
    latency_models: tuple[str, ...] = ("edge-tiny", "edge-small", "edge-base", "vit-ti16", "vit-s16", "vit-b16")
    latency_repeats: int = 5
    # (c) non-IID splits: ACME's 5 clients with label-group settings, plus Dirichlet(α) skews.
    split_fraction: float = 0.5
    dirichlet_alphas: tuple[float, ...] = (0.1, 1.0)
    # (d) the domain stream, and (e) retraining a fixed half-width compressed model vs the full model.
    num_domains: int = 12
    retrain_domains: int = 12
    retrain_size: int = 1_024
    retrain_steps: int = 30
    retrain_lr: float = 1e-3
    recover_steps: int = 100
    compressed_width: float = 0.5

    def __post_init__(self):
        if self.data not in DATA_SOURCES:
            raise ValueError(f"data={self.data!r}; expected one of {DATA_SOURCES}")
        if self.num_domains < 10:
            raise ValueError(f"num_domains={self.num_domains}: the shift stream needs at least 10 domains")
        if not 1 <= self.retrain_domains <= self.num_domains:
            raise ValueError(f"retrain_domains={self.retrain_domains} must lie in 1..num_domains={self.num_domains}")
        check_model(self.model)
        unknown = [m for m in self.latency_models if m not in VIT_FAMILY]
        if unknown:
            raise ValueError(f"latency_models {unknown} are not in VIT_FAMILY {list(VIT_FAMILY)}")
        if not 0 < self.compressed_width < 1:
            raise ValueError(f"compressed_width={self.compressed_width} must lie strictly between 0 and 1")
        for name in ("train_size", "test_size", "batch_size", "train_steps", "retrain_size", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")


TRAIN = Stage(
    "motivation-early-exit",
    reads=(
        "seed",
        "data",
        "num_classes",
        "fine_grained",
        "train_size",
        "model",
        "batch_size",
        "train_steps",
        "lr",
        "weight_decay",
    ),
    unkeyed=("checkpoint_every",),
)
# Not num_domains: the stream's domain i depends on (seed, i) alone and the stage retrains on its first
# `retrain_domains` (≤ num_domains), so a longer stream leaves the stage's result unchanged. The data and the model
# come from the early-exit stage (its key holds the data's fields).
RETRAIN = Stage(
    "motivation-retraining-gap",
    reads=(
        "seed",
        "batch_size",
        "retrain_domains",
        "retrain_size",
        "retrain_steps",
        "retrain_lr",
        "recover_steps",
        "compressed_width",
        "test_size",
    ),
    after=(TRAIN,),
    versions=("scenes_version", "evaluation"),  # it records which test items each model got right
)
STAGES = (TRAIN, RETRAIN)

PROFILES: dict[str, MotivationConfig] = {
    "smoke": MotivationConfig(
        num_classes=10,
        train_size=4_096,
        test_size=400,
        model="edge-tiny",
        batch_size=64,
        train_steps=150,
        checkpoint_every=50,
        latency_models=("edge-tiny", "edge-small", "vit-ti16"),
        latency_repeats=3,
        num_domains=10,
        retrain_domains=3,
        retrain_size=256,
        retrain_steps=15,
        recover_steps=20,
    ),
    "default": MotivationConfig(),
    "gpu": MotivationConfig(
        num_classes=40,
        train_size=60_000,
        test_size=2_000,
        model="edge-base",
        batch_size=256,
        train_steps=3_000,
        lr=1e-3,
        checkpoint_every=500,
        latency_repeats=20,
        num_domains=20,
        retrain_domains=20,
        retrain_size=4_096,
        retrain_steps=150,
        recover_steps=500,
    ),
    "paper": MotivationConfig(
        data="cifar100",
        num_classes=100,
        train_size=50_000,
        test_size=2_000,
        model="model/vit-base-patch16-224",
        batch_size=32,
        train_steps=15_630,
        lr=5e-5,
        weight_decay=0.0,
        checkpoint_every=1_000,
        latency_repeats=20,
        num_domains=12,
        retrain_domains=12,
        retrain_size=2_000,
        retrain_steps=300,
        retrain_lr=5e-5,
        recover_steps=1_000,
    ),
}


def config(profile: str = "default", **overrides) -> MotivationConfig:
    """The profile's MotivationConfig with overrides applied (None keeps the profile's value)."""
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(MotivationConfig))
