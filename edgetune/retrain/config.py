"""Configuration and profiles of the retraining section (BlockTrainer under a stream of shifting domains)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgetune.models.open import check_model
from edgetune.profiles import resolve
from edgetune.runs.stages import Stage

DATA = ("scenes", "imagefolder")


@dataclass(frozen=True)
class RetrainingConfig:
    """Every number the retraining notebook uses. Field names double as the notebook's parameter names.

    Hyper-parameters follow the original's (docs/blocktrainer.md#profiles) where they transfer to this scale;
    departures are named in the comments.
    """

    seed: int = 0
    device: str = "auto"
    # Data: embedded edge scenes, or ImageFolder domains under data/<data_root>/<domain>/<class>/ (paper profile).
    data: str = "scenes"
    data_root: str = "domainnet"
    source_domains: tuple[str, ...] = ("real",)  # imagefolder only: the labelled offline source
    target_domains: tuple[str, ...] = ("clipart", "painting", "sketch")  # imagefolder only: cycled over the stream
    num_classes: int = 20
    model: str = "edge-small"
    train_size: int = 6_000  # labelled source images (clear scenes plus two mild source domains)
    window_size: int = 512  # unlabelled target images the edge sees per window
    test_size: int = 512  # labelled held-out images per domain, for evaluation only
    batch_size: int = 32  # the original's 64 halved: CPU time
    # Offline: cloud pretraining, then BlockTrainer's LoRA fine-tune (Q, K, V only; rank = out / lora_divisor).
    pretrain_steps: int = 600
    pretrain_lr: float = 2e-3
    lora_steps: int = 200
    lora_lr: float = 1e-3
    lora_divisor: int = 8
    # The knowledge base: heads and MLP units kept by L1 norm, Q/K/V and proj factorized, trained by distillation,
    # then jointly with its FBS gates (sandwich sparsity schedule); the neuron index fitted in closed form.
    head_keep: float = 0.5
    mlp_keep: float = 0.5
    kb_steps: int = 300
    gate_steps: int = 300
    kb_lr: float = 1e-3
    kd_weight: float = 1.0
    gate_l1: float = 1e-8
    max_sparsity: float = 0.9
    index_ridge: float = 1e-3
    # The retraining scaling law: simulated retraining runs on augmented source data.
    law_trials: int = 16
    law_iterations: int = 50
    law_holdout: float = 0.25
    stat_size: int = 512  # images behind each domain statistic (Fréchet distance, confidence)
    # Online: one window per domain.
    num_domains: int = 20
    sparsity: float = 0.75  # of a compressed block's gated channels (original 0.875; see the notebook)
    window_iterations: int = 60  # budget: training FLOPs of this many all-compressed iterations
    memory_share: float = 0.5  # memory budget: all compressed + this share of the extra memory of all full
    quantum: int = 10
    cap: float = 1.0  # the planner's cap on predicted accuracy (the original used 0.7)
    retrain_lr: float = 1e-3
    mmd_weight: float = 3.0
    eval_every: int = 20
    proxy_to_kb: float = 0.5
    kb_to_fm: float = 0.1
    fm_to_kb: float = 0.1
    lora_rank: int = 8  # the fixed-compressed + LoRA baseline
    # Accuracy vs budget: the first few domains again at scaled budgets.
    budget_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    budget_domains: int = 4

    def __post_init__(self):
        if self.data not in DATA:
            raise ValueError(f"data={self.data!r}; expected one of {DATA}")
        check_model(self.model)
        if self.num_domains < 1 or self.law_trials < 2:
            raise ValueError(f"num_domains={self.num_domains} must be ≥ 1 and law_trials={self.law_trials} ≥ 2")
        for name in ("sparsity", "memory_share", "law_holdout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1)")
        for name in ("head_keep", "mlp_keep", "max_sparsity", "proxy_to_kb", "kb_to_fm", "fm_to_kb"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must lie in (0, 1]")
        if not 1 <= self.budget_domains <= self.num_domains:
            raise ValueError(f"budget_domains={self.budget_domains} must lie in 1..num_domains={self.num_domains}")
        for name in ("train_size", "window_size", "test_size", "batch_size", "window_iterations", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.law_iterations < self.eval_every:
            raise ValueError(f"law_iterations={self.law_iterations} must be ≥ eval_every={self.eval_every}")


# What each cached stage reads (so an online-only change does not retrain the offline models).
DATA_FIELDS = ("seed", "data", "data_root", "source_domains", "num_classes", "model", "train_size")
PRETRAIN = Stage("retraining-pretrain", reads=(*DATA_FIELDS, "batch_size", "pretrain_steps", "pretrain_lr"))
# Each stage reads the data through the stages it starts from (the pretraining stage's key holds the data fields).
# `test_size` sets the source test split every offline stage reports its accuracy on; the knowledge base also fits
# the neuron index (`index_ridge`) and reports its accuracy at the online `sparsity`.
LORA = Stage(
    "retraining-lora",
    reads=("seed", "model", "num_classes", "batch_size", "test_size", "lora_steps", "lora_lr", "lora_divisor"),
    after=(PRETRAIN,),
)
KB = Stage(
    "retraining-kb",
    reads=(
        "seed",
        "batch_size",
        "test_size",
        "index_ridge",
        "sparsity",
        "head_keep",
        "mlp_keep",
        "kb_steps",
        "gate_steps",
        "kb_lr",
        "kd_weight",
        "gate_l1",
        "max_sparsity",
    ),
    after=(LORA,),
)
# the simulated retraining runs the scaling law is fitted on, from the knowledge base
LAW = Stage(
    "retraining-law",
    reads=(
        "seed",
        "batch_size",
        "sparsity",
        "law_trials",
        "law_iterations",
        "stat_size",
        "retrain_lr",
        "mmd_weight",
        "eval_every",
        "window_size",
    ),
    after=(KB,),
)
# the stream reads nearly everything; not the budget sweep's fields (its own, uncached-by-stage rows)
ONLINE = Stage(
    "retraining-online",
    reads=tuple(
        f.name for f in fields(RetrainingConfig) if f.name not in ("device", "budget_factors", "budget_domains")
    ),
    after=(KB,),
)
# the accuracy-vs-budget sweep: the first `budget_domains` windows again at one budget factor (the factor and the
# fitted law enter the key as values, one entry per factor)
BUDGET = Stage("retraining-budget", reads=(*ONLINE.reads, "budget_domains"), after=(KB,))
STAGES = (PRETRAIN, LORA, KB, LAW, ONLINE, BUDGET)

PROFILES: dict[str, RetrainingConfig] = {
    "smoke": RetrainingConfig(
        model="edge-tiny",
        num_classes=10,
        train_size=1_536,
        window_size=128,
        test_size=128,
        pretrain_steps=80,
        lora_steps=30,
        kb_steps=30,
        gate_steps=30,
        law_trials=6,
        law_iterations=20,
        stat_size=128,
        num_domains=8,
        window_iterations=20,
        eval_every=10,
        budget_factors=(0.5, 1.0),
        budget_domains=2,
    ),
    "default": RetrainingConfig(),
    "gpu": RetrainingConfig(  # one H100: these small models are launch-bound, so steps (not width) set the time
        model="edge-base",
        num_classes=40,
        train_size=30_000,
        window_size=2_048,
        test_size=2_000,
        batch_size=64,
        pretrain_steps=1_500,
        pretrain_lr=1e-3,
        lora_steps=300,
        kb_steps=300,
        gate_steps=300,
        law_trials=16,
        law_iterations=60,
        stat_size=2_048,
        num_domains=20,
        window_iterations=60,
        budget_domains=3,
    ),
    "paper": RetrainingConfig(
        data="imagefolder",
        model="model/vit-base-patch16-224",  # the cloud model: an ImageNet ViT-B/16 checkpoint placed under model/
        num_classes=345,
        train_size=50_000,
        window_size=6_400,
        test_size=1_024,
        batch_size=64,
        pretrain_steps=0,  # the checkpoint is the cloud model; LoRA fine-tunes it on the source domains
        lora_steps=10_000,
        lora_lr=3e-4,
        kb_steps=120_000,
        gate_steps=80_000,
        kb_lr=3e-4,
        law_trials=500,
        law_iterations=500,
        stat_size=12_800,
        num_domains=30,
        sparsity=0.875,
        window_iterations=400,
        cap=0.7,
        retrain_lr=3e-4,
    ),
}


def config(profile: str = "default", **overrides) -> RetrainingConfig:
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(RetrainingConfig))
