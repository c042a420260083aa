"""Motivation: the challenges the four methods answer, measured on this project's own models and data."""

from edgetune.motivation.config import PARAMETERS, PROFILES, MotivationConfig, config

__all__ = ["PARAMETERS", "PROFILES", "MotivationConfig", "config"]
