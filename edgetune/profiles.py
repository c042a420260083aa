"""Profiles: named sets of a section's parameter values (smoke, default, gpu, paper), any of which can be overridden.

Each section keeps its own profiles next to its config dataclass; `resolve` applies overrides, where `None` means
"keep the profile's value" (that is how a notebook's parameters cell stays usable for every profile).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, TypeVar

PROFILES = ("smoke", "default", "gpu", "paper")
C = TypeVar("C")


def run_label(profile: str, overrides: dict[str, Any] | None = None) -> str:
    """Where a run's figures and claims go: the profile's name, or `<profile>+<hash of the overrides>` when any value
    was overridden, so a run with overrides never passes itself off as the plain profile (its folder also keeps
    the overrides, `overrides.json`)."""
    check_label(profile)
    if "+" in profile:
        raise ValueError(f"profile {profile!r} is a run label; expected one of {PROFILES}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not given:
        return profile
    canonical = json.dumps(given, sort_keys=True, default=list)
    return f"{profile}+{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def check_label(label: str) -> str:
    """`label` if it is a profile or a run label (`<profile>+<8 hex digits>`); else a ValueError naming it."""
    profile, plus, digest = label.partition("+")
    if profile not in PROFILES or (plus and not (len(digest) == 8 and all(c in "0123456789abcdef" for c in digest))):
        raise ValueError(f"unknown profile {label!r}; expected one of {', '.join(PROFILES)} (or <profile>+<8 hex>)")
    return label


def budget_s(section: str, profile: str) -> float | None:
    """The wall-time budget of a section's notebook under a profile (docs/index.md#profiles), or None where none is set.

    smoke and default are budgets on 2 CPU cores, gpu on one H100; the paper profile has none. The numbers live in
    the section table (`edgetune.sections`)."""
    from edgetune.sections import section as find

    return find(section).budgets_s.get(profile.partition("+")[0])


def resolve(profiles: dict[str, C], profile: str, **overrides: Any) -> C:
    """The profile's config with every non-None override applied (the config validates itself on creation)."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; expected one of {list(profiles)}")
    base = profiles[profile]
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{type(base).__name__} has no parameter(s) {unknown}; accepted: {sorted(names)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for name, value in given.items():  # papermill and JSON carry sequences as lists; the configs hold tuples
        if isinstance(value, list) and isinstance(getattr(base, name), tuple):
            given[name] = tuple(value)
    config = dataclasses.replace(base, **given)
    check_ranges(config)
    return config


# Generous ceilings: far above every profile (the paper's ImageNet run included), low enough that a typo such as
# train_steps=10**12 stops before an endless run starts.
MAX_COUNT = 100_000_000
SEED_LIMIT = 2**32  # numpy's and torch's seeding both accept [0, 2**32)


def check_ranges(config: Any) -> None:
    """What every section config must satisfy besides its own checks: integers (steps, sizes, counts) ≥ 0 and at
    most `MAX_COUNT`, seeds in [0, 2**32), floats finite; each failure names the field, its value and the range."""
    import math

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, bool):
                continue
            if isinstance(v, int) and f.name in ("seed", "seeds") and not 0 <= v < SEED_LIMIT:
                raise ValueError(f"{f.name}={value!r}; expected integers in [0, 2**32)")
            if isinstance(v, int) and not 0 <= v <= MAX_COUNT:
                raise ValueError(
                    f"{f.name}={value!r}; expected an integer in [0, {MAX_COUNT:,}] (a step count, size "
                    "or count beyond that is a typo, not a run)"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name}={value!r}; expected a finite number")
            if isinstance(v, int | float):
                _check_named_range(f.name, v, value)


# Ranges that follow from what a field is, by its name (the same in every section): learning rates, loss weights,
# fractions, concentrations and budget factors.
FRACTIONS = ("split_fraction", "device_fraction", "cap")  # shares of a whole, in (0, 1]
POSITIVE = ("dirichlet_alphas", "budget_factors")
NON_NEGATIVE = ("weight_decay", "gate_l1", "index_ridge", "lam")
MAX_LR = 10.0


def _check_named_range(name: str, v: float, value: Any) -> None:
    if name == "lr" or name.endswith("_lr"):
        if not 0 < v <= MAX_LR:
            raise ValueError(f"{name}={value!r}; expected a learning rate in (0, {MAX_LR:g}]")
    elif name in FRACTIONS:
        if not 0 < v <= 1:
            raise ValueError(f"{name}={value!r}; expected a fraction in (0, 1]")
    elif name in POSITIVE:
        if not v > 0:
            raise ValueError(f"{name}={value!r}; expected positive numbers")
    elif (name in NON_NEGATIVE or name.endswith("_weight")) and v < 0:
        raise ValueError(f"{name}={value!r}; expected a number ≥ 0 (a weight or a penalty)")


def pick_device(device: str = "auto"):
    """'auto' → CUDA (NVIDIA or ROCm) if present, else Apple MPS, else CPU; or the named device."""
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
