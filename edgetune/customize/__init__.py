"""Customization: ACME (ICDCS 2025) — cloud → edge → device customization of a ViT."""

from edgetune.customize.config import PARAMETERS, PROFILES, CustomizeConfig, config

__all__ = ["PARAMETERS", "PROFILES", "CustomizeConfig", "config"]
