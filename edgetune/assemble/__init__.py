"""Assembling: Deep Model Assembling / Deep Incubation (Ni et al., arXiv 2212.04129; ICCV 2023).

The divided ViT and the PT/MT/FT model surgery (`model`), one accelerate training loop for every phase
(`train`, `python -m edgetune.assemble`), and the section's pipeline, figures and claims (`core`, `plots`, `ledger`).
"""

from edgetune.assemble.config import PARAMETERS, PROFILES, AssemblingConfig, config
from edgetune.assemble.model import (
    Division,
    assemble,
    build_divided,
    incubation_division,
    incubation_model,
    load_stage,
    meta_division,
    stage_parameters,
    stage_state,
)

__all__ = [
    "PARAMETERS",
    "PROFILES",
    "AssemblingConfig",
    "Division",
    "assemble",
    "build_divided",
    "config",
    "incubation_division",
    "incubation_model",
    "load_stage",
    "meta_division",
    "stage_parameters",
    "stage_state",
]
