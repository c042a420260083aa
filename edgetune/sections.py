"""The one table of sections: each section's name, package, notebook, wall-time budgets per profile and config.

The CLI, the paths, the profiles' budgets, the claims ledger and the tests read this table; nothing else lists the
sections. A section's package provides `config(profile, **overrides)`, its config class and `PARAMETERS` (its
config's field names); it is imported only when asked for, so reading the table is cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType

# wall-time budgets: smoke and default on 2 CPU cores, gpu on one H100/H200; the paper profile has none
_SMOKE, _DEFAULT, _GPU = 60.0, 240.0, 600.0


@dataclass(frozen=True)
class Section:
    name: str  # as in figures/<profile>/<name>/, the claims ledger and `--section`
    package: str  # the Python package that implements it
    notebook: str  # under notebooks/
    title: str
    budgets_s: dict[str, float | None] = field(
        default_factory=lambda: {"smoke": _SMOKE, "default": _DEFAULT, "gpu": _GPU, "paper": None}
    )

    def module(self) -> ModuleType:
        return importlib.import_module(self.package)

    def config(self, profile: str = "default", **overrides):
        """The section's config for `profile` with `overrides` applied (validated by the config itself)."""
        return self.module().config(profile, **overrides)

    def config_fields(self) -> dict[str, str]:
        """Every field of the section's config and its declared type (as written in the class)."""
        base = self.config("default")
        return {f.name: str(f.type) for f in dataclasses.fields(base)}


SECTIONS_TABLE: tuple[Section, ...] = (
    Section(
        "motivation",
        "edgetune.motivation",
        "01_motivation.ipynb",
        "Motivation: why edge models must be customized",
        {"smoke": _SMOKE, "default": 120.0, "gpu": _GPU, "paper": None},
    ),
    Section("customization", "edgetune.customize", "02_customization.ipynb", "ACME: cloud → edge → device"),
    Section("retraining", "edgetune.retrain", "03_retraining.ipynb", "BlockTrainer under shifting domains"),
    Section("assembling", "edgetune.assemble", "04_assembling.ipynb", "Deep Model Assembling"),
    Section(
        "peft",
        "edgetune.strato",
        "05_peft_comparison.ipynb",
        "STRATO-PEFT against LoRA, AdaLoRA and DoRA",
        {"smoke": 90.0, "default": _DEFAULT, "gpu": _GPU, "paper": None},
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SECTIONS_TABLE)
_BY_NAME = {s.name: s for s in SECTIONS_TABLE}


def section(name: str) -> Section:
    if name not in _BY_NAME:
        raise ValueError(f"unknown section {name!r}; expected one of {', '.join(NAMES)}")
    return _BY_NAME[name]
