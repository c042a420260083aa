"""The files a user places for a run (a checkpoint under model/, a dataset under data/), opened before any work starts.

`edgetune reproduce` calls `check_inputs` on every section's resolved config before a kernel starts: a missing,
truncated or malformed input stops the command with exit status 2 and a message naming the file and what was
expected, instead of a failed notebook cell minutes later. The embedded data and the family models need no check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REAL_DATASETS = ("cifar100", "stanford_cars")


def check_inputs(cfg: Any) -> None:
    """Open every user-placed file `cfg` points at far enough to know it is readable (weights loaded into the model
    they are for, dataset layouts and checksums where the format has them, task files parsed); raises ValueError or
    OSError naming the file."""
    _check_vit(cfg)
    _check_images(cfg)
    _check_peft_files(cfg)


def _check_vit(cfg: Any) -> None:
    from edgetune.models import VIT_FAMILY, open_vit

    model = getattr(cfg, "model", None)
    if not isinstance(model, str) or model in VIT_FAMILY or not hasattr(cfg, "num_classes"):
        return
    open_vit(model, cfg.num_classes)  # load_vit names the file and what it expected


def _check_images(cfg: Any) -> None:
    from edgetune.data.readers import open_dataset
    from edgetune.paths import data_dir

    data = getattr(cfg, "data", "scenes")
    if data in REAL_DATASETS:
        for split in ("train", "test"):
            open_dataset(data, data_dir(), split=split)
    elif data == "imagefolder":  # the retraining section's domains, or ImageNet's train/ and val/
        splits = (*cfg.source_domains, *cfg.target_domains) if hasattr(cfg, "source_domains") else ("train", "val")
        for split in dict.fromkeys(splits):
            open_dataset("imagefolder", data_dir() / cfg.data_root, split=split)


def _check_peft_files(cfg: Any) -> None:
    if not getattr(cfg, "model_path", "") and not getattr(cfg, "data_path", ""):
        return
    from edgetune.strato import lm
    from edgetune.strato.train import load_task

    first = None
    for task in cfg.tasks:
        first = cfg.run_config(task, cfg.seeds[0], cfg.methods[0])
        if cfg.data_path:
            load_task(first)
    if cfg.model_path and first is not None:
        lm.check_checkpoint(Path(first.model.path))
