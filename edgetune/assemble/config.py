"""Configuration and profiles of the assembling section (Deep Model Assembling vs end-to-end training)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgetune.models.open import architecture
from edgetune.profiles import resolve


@dataclass(frozen=True)
class AssemblingConfig:
    """Every number the assembling notebook uses. Field names double as the notebook's parameter names."""

    seed: int = 0
    model: str = "edge-small"
    depths: tuple[int, ...] = (2, 2, 2, 2)  # the target's blocks per module (K = 4 in the paper)
    num_classes: int = 20
    train_size: int = 8_000  # at 100 % of the data
    test_size: int = 1_000
    batch_size: int = 64
    grad_accum: int = 1  # micro-batches per step: a step's global batch is batch_size × grad_accum × processes
    lr: float = 2e-3
    warmup_steps: int = 10
    pt_steps: int = 150
    mt_steps: int = 150  # per module
    ft_steps: int = 100
    fractions: tuple[float, ...] = (1.0, 0.5, 0.25)
    eval_every: int = 25
    # "scenes" (rendered here) or "imagefolder": ImageNet's layout, data/<data_root>/train/<class>/…, …/val/<class>/…
    data: str = "scenes"
    data_root: str = "imagenet"
    workers: int = 8  # DataLoader worker processes per training process (imagefolder)
    compile: bool = False  # torch.compile each phase's forward on GPU (the same maths, faster; ignored on CPU)

    def __post_init__(self):
        depth = architecture(self.model).depth  # a family name or a checkpoint's architecture, trained from scratch
        if sum(self.depths) != depth:
            raise ValueError(f"depths {self.depths} sum to {sum(self.depths)}, but {self.model} has {depth} blocks")
        if not self.fractions or self.fractions[0] != 1.0 or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions {self.fractions} must start with 1.0 and lie in (0, 1]")
        self.phases()  # every phase's own checks (positive steps and sizes, stage depths), before any work

    def phase_fields(self, fraction: float = 1.0) -> dict:
        """What every phase's run config takes from this config, at data share `fraction` (the one place the
        section's fields are handed to a phase)."""
        return dict(
            model=self.model,
            depths=self.depths,
            num_classes=self.num_classes,
            train_size=max(self.batch_size, round(self.train_size * fraction)),
            test_size=self.test_size,
            batch_size=self.batch_size,
            grad_accum=self.grad_accum,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            seed=self.seed,
            eval_every=self.eval_every,
            data=self.data,
            data_root=self.data_root,
            workers=self.workers,
            compile=self.compile,
        )

    def phases(self):
        """The four phases' configs as the pipeline builds them (folders left empty)."""
        from edgetune.assemble.train import AssembleConfig

        common = self.phase_fields()
        k = len(self.depths)
        built = []
        for phase, steps, extra in (
            ("PT", "pt_steps", {}),
            ("MT", "mt_steps", {"meta": "-"}),
            ("FT", "ft_steps", {"incubation": ("-",) * k}),
        ):
            try:
                built.append(AssembleConfig(phase, "", steps=getattr(self, steps), **extra, **common))
            except ValueError as e:  # name the section's own field: pt_steps=0, not steps=0
                text = str(e)
                raise ValueError(steps + text[len("steps") :] if text.startswith("steps=") else text) from None
        return tuple(built)


PROFILES: dict[str, AssemblingConfig] = {
    "smoke": AssemblingConfig(
        model="edge-tiny",
        depths=(2, 2),
        num_classes=10,
        train_size=1_024,
        test_size=256,
        batch_size=32,
        pt_steps=20,
        mt_steps=20,
        ft_steps=15,
        fractions=(1.0, 0.5),
        eval_every=10,
    ),
    "default": AssemblingConfig(),
    "gpu": AssemblingConfig(
        model="edge-deep",
        depths=(6, 6, 6, 6),
        num_classes=40,
        train_size=40_000,
        test_size=4_000,
        batch_size=256,
        lr=1e-3,
        pt_steps=800,
        mt_steps=400,
        ft_steps=400,
        eval_every=100,
    ),
    # ImageNet-1k and ViT-B/16 in four modules, as the paper: 2,048 images a step (256 × 8 micro-batches in one
    # process; on 8 GPUs `python -m edgetune.assemble --grad-accum 1` under `accelerate launch`), 625 steps an epoch;
    # PT 300 epochs, each MT and FT 100, a 20-epoch warm-up (the paper's FT has none; one warm-up serves every phase
    # here), peak lr 2e-3.
    "paper": AssemblingConfig(
        model="vit-b16",
        depths=(3, 3, 3, 3),
        num_classes=1_000,
        train_size=1_281_167,
        test_size=50_000,
        batch_size=256,
        grad_accum=8,
        pt_steps=187_500,
        mt_steps=62_500,
        ft_steps=62_500,
        warmup_steps=12_500,
        eval_every=3_125,
        data="imagefolder",
        data_root="imagenet",
        compile=True,
    ),
}


def config(profile: str = "default", **overrides) -> AssemblingConfig:
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(AssemblingConfig))
