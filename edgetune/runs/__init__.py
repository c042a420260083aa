"""Runs: the artifact cache, the one result schema, safetensors weights and resumable checkpoints."""

from edgetune.runs.cache import cached, config_hash, stage_dir
from edgetune.runs.checkpoint import Checkpointer, load_weights, save_weights
from edgetune.runs.io import atomic_write, write_json, write_text
from edgetune.runs.schema import Meter, RunResult, count_parameters, describe_device, package_versions

__all__ = [
    "Checkpointer",
    "Meter",
    "RunResult",
    "atomic_write",
    "cached",
    "config_hash",
    "count_parameters",
    "describe_device",
    "load_weights",
    "package_versions",
    "save_weights",
    "stage_dir",
    "write_json",
    "write_text",
]
