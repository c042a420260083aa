"""Configuration and profiles of the assembling section (Deep Model Assembling vs end-to-end training)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from edgetune.models.vit import VIT_FAMILY
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
    lr: float = 2e-3
    warmup_steps: int = 10
    pt_steps: int = 150
    mt_steps: int = 150  # per module
    ft_steps: int = 100
    fractions: tuple[float, ...] = (1.0, 0.5, 0.25)
    eval_every: int = 25

    def __post_init__(self):
        if self.model not in VIT_FAMILY:
            raise ValueError(f"model={self.model!r}; expected one of {list(VIT_FAMILY)}")
        if sum(self.depths) != VIT_FAMILY[self.model].depth:
            raise ValueError(
                f"depths {self.depths} sum to {sum(self.depths)}, but {self.model} has "
                f"{VIT_FAMILY[self.model].depth} blocks"
            )
        if not self.fractions or self.fractions[0] != 1.0 or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions {self.fractions} must start with 1.0 and lie in (0, 1]")
        self.phases()  # every phase's own checks (positive steps and sizes, stage depths), before any work

    def phases(self):
        """The four phases' configs as the pipeline builds them (folders left empty)."""
        from edgetune.assemble.train import AssembleConfig

        common = dict(
            model=self.model,
            depths=self.depths,
            num_classes=self.num_classes,
            train_size=self.train_size,
            test_size=self.test_size,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            seed=self.seed,
            eval_every=self.eval_every,
        )
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
    "paper": AssemblingConfig(
        model="vit-b16",
        depths=(3, 3, 3, 3),
        num_classes=100,
        train_size=50_000,
        test_size=10_000,
        batch_size=128,
        pt_steps=58_500,
        mt_steps=19_500,
        ft_steps=19_500,
        warmup_steps=3_900,
        eval_every=1_950,
    ),
}


def config(profile: str = "default", **overrides) -> AssemblingConfig:
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(AssemblingConfig))
