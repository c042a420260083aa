"""One way to get a section's ViT from its config string: a VIT_FAMILY name, or a checkpoint path."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from edgetune.models.load import load_vit
from edgetune.models.vit import VIT_FAMILY, ViTShape, build_vit, vit_shape
from edgetune.paths import root
from edgetune.runs.stages import CHECKPOINT_SUFFIXES


def check_model(model: str) -> str:
    """`model` if it names a VIT_FAMILY ViT or a checkpoint (a path: it holds a '/' or ends in a weights suffix;
    whether the file exists is checked when it is opened, naming it); else a ValueError saying what is accepted."""
    if model in VIT_FAMILY or "/" in model or model.endswith(CHECKPOINT_SUFFIXES):
        return model
    raise ValueError(
        f"model={model!r}; expected a VIT_FAMILY name ({', '.join(VIT_FAMILY)}) or a checkpoint path "
        f"(a folder or a {'/'.join(CHECKPOINT_SUFFIXES)} file, e.g. model/vit-base-patch16-224)"
    )


@functools.lru_cache(maxsize=16)
def _checkpoint_shape(path: str, mtime_ns: int) -> ViTShape:
    return vit_shape(open_vit(path, 2))


def architecture(model: str) -> ViTShape:
    """The shape of `model` without keeping it: a family entry, or a checkpoint's architecture (read once per file
    version). A section that trains from scratch takes the architecture alone."""
    check_model(model)
    if model in VIT_FAMILY:
        return VIT_FAMILY[model]
    path = Path(model) if Path(model).is_absolute() else root() / model
    if not path.exists():
        raise FileNotFoundError(f"model={model!r}: no checkpoint at {path}")
    return _checkpoint_shape(str(path), path.stat().st_mtime_ns)


def open_vit(model: str, num_classes: int, seed: int | None = None) -> VisionTransformer:
    """A fresh timm ViT for a VIT_FAMILY name; otherwise `load_vit` of the checkpoint at `model` (relative paths
    are taken from the project root, not the cwd), with a `num_classes` head, in train mode. With `seed`, the global
    torch RNG is seeded first (what a fresh model's or a new head's initialization draws from)."""
    if seed is not None:
        torch.manual_seed(seed)
    if model in VIT_FAMILY:
        return build_vit(model, num_classes)
    path = Path(model)
    return load_vit(path if path.is_absolute() else root() / path, num_classes=num_classes).train()


def image_size(model: str, num_classes: int = 2) -> int:
    """The input resolution of `model` (a family name is answered without building anything)."""
    if model in VIT_FAMILY:
        return VIT_FAMILY[model].img_size
    return open_vit(model, num_classes).patch_embed.img_size[0]
