"""Retraining: BlockTrainer (Acta Electronica Sinica 2025) — block-granularity cloud-edge retraining of a foundation
model under a stream of shifting domains, against fixed compressed baselines."""

from edgetune.retrain.config import PARAMETERS, PROFILES, RetrainingConfig, config

__all__ = ["PARAMETERS", "PROFILES", "RetrainingConfig", "config"]
