"""Assembling: Deep Model Assembling / Deep Incubation (Ni et al., arXiv 2212.04129; ICCV 2023).

Work in progress: the divided ViT, the PT/MT/FT model surgery and the accelerate entry point
(`python -m edgetune.assemble`, DDP-tested on CPU) exist; notebook 04, its claims and its benchmarks do not yet.
"""

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
    "Division",
    "assemble",
    "build_divided",
    "incubation_division",
    "incubation_model",
    "load_stage",
    "meta_division",
    "stage_parameters",
    "stage_state",
]
