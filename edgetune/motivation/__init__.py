"""Motivation: the challenges the four methods answer, measured on this project's own models and data."""

from edgetune.motivation.config import PARAMETERS, PROFILES, MotivationConfig, config
from edgetune.motivation.ledger import claims_rows

__all__ = ["PARAMETERS", "PROFILES", "MotivationConfig", "claims_rows", "config"]
