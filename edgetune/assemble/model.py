"""The divided ViT of Deep Model Assembling (Ni et al., arXiv 2212.04129): a plain timm VisionTransformer whose
blocks are grouped into K stages by `Division.depths`. Stage 0 owns the patch embedding, class token and position
embedding; the last stage owns the final norm and head. Parameter names stay timm's, and a stage's state dict
re-indexes its blocks from 0, so a stage moves between models whose stage has the same number of blocks (the
original's `model_stages` checkpoint format).

The phases are built from these pieces: PT trains a meta model with one block per stage; MT(i) trains stage i of a
hybrid whose other stages are the meta model's, frozen; FT stitches stage i of MT run i into the target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edgetune.models.vit import ViTShape, build_vit

EMBEDDING_KEYS = ("cls_token", "pos_embed", "patch_embed.")
HEAD_KEYS = ("norm.", "head.")


@dataclass(frozen=True)
class Division:
    """How many blocks each of the K stages holds (the original's `divided_depths`)."""

    depths: tuple[int, ...]

    def __post_init__(self):
        if not self.depths or any(d < 1 for d in self.depths):
            raise ValueError(f"divided depths {self.depths} must be K >= 1 stages of at least one block each")

    @property
    def stages(self) -> int:
        return len(self.depths)

    @property
    def total(self) -> int:
        return sum(self.depths)

    def blocks(self, i: int) -> range:
        """Indices (in the flat ViT) of stage i's blocks."""
        start = sum(self.depths[:i])
        return range(start, start + self.depths[i])

    def stage_of(self, key: str) -> int:
        """The stage a timm parameter name belongs to."""
        if key.startswith("blocks."):
            index = int(key.split(".")[1])
            return next(i for i in range(self.stages) if index in self.blocks(i))
        if key.startswith(EMBEDDING_KEYS):
            return 0
        if key.startswith(HEAD_KEYS):
            return self.stages - 1
        raise ValueError(f"parameter {key!r} belongs to no stage; expected blocks.*, {EMBEDDING_KEYS} or {HEAD_KEYS}")


def meta_division(stages: int = 4) -> Division:
    """PT: one block per stage."""
    return Division((1,) * stages)


def incubation_division(target: Division, i: int) -> Division:
    """MT(i): the target's depth at stage i, one (meta) block everywhere else."""
    return Division(tuple(d if j == i else 1 for j, d in enumerate(target.depths)))


def build_divided(shape: ViTShape, division: Division, num_classes: int, *, device=None) -> VisionTransformer:
    """A timm ViT of `shape` whose depth is the division's total."""
    return build_vit(replace(shape, depth=division.total), num_classes, device=device)


def stage_state(vit: VisionTransformer, division: Division, i: int) -> dict[str, torch.Tensor]:
    """Stage i's parameters and buffers, its blocks re-indexed from 0 (detached copies)."""
    _check(vit, division)
    start = division.blocks(i).start
    out = {}
    for key, value in vit.state_dict().items():
        if division.stage_of(key) != i:
            continue
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            key = f"blocks.{int(index) - start}.{rest}"
        out[key] = value.detach().clone()
    return out


def load_stage(vit: VisionTransformer, division: Division, i: int, state: dict[str, torch.Tensor]) -> None:
    """Copy a stage state (from `stage_state` of a model with the same stage depth) into stage i, strictly."""
    expected = stage_state(vit, division, i)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"stage {i} state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]} "
            f"(a stage of {division.depths[i]} blocks was expected)"
        )
    start = division.blocks(i).start
    params = dict(vit.state_dict(keep_vars=True))
    with torch.no_grad():
        for key, value in state.items():
            target = key
            if key.startswith("blocks."):
                _, index, rest = key.split(".", 2)
                target = f"blocks.{int(index) + start}.{rest}"
            if params[target].shape != value.shape:
                raise ValueError(
                    f"stage {i}: {key} has shape {tuple(value.shape)}, expected {tuple(params[target].shape)}"
                )
            params[target].copy_(value)


def stage_parameters(vit: VisionTransformer, division: Division, i: int) -> list[nn.Parameter]:
    """The parameters stage i owns (what MT(i) optimizes)."""
    _check(vit, division)
    return [p for name, p in vit.named_parameters() if division.stage_of(name) == i]


def incubation_model(
    meta: VisionTransformer, target: Division, i: int, shape: ViTShape, num_classes: int, *, seed: int
) -> tuple[VisionTransformer, Division]:
    """MT(i)'s hybrid: stage i freshly initialised with the target's depth (embeddings too when i = 0, norm and head
    when i = K−1), every other stage the meta model's, frozen (requires_grad False: gradients still flow through
    their activations to stage i, but they never change)."""
    division = incubation_division(target, i)
    torch.manual_seed(seed)
    hybrid = build_divided(shape, division, num_classes, device=meta.cls_token.device)
    meta_div = meta_division(target.stages)
    for j in range(target.stages):
        if j != i:
            load_stage(hybrid, division, j, stage_state(meta, meta_div, j))
    for name, p in hybrid.named_parameters():
        p.requires_grad_(division.stage_of(name) == i)
    return hybrid, division


def assemble(
    modules: list[tuple[VisionTransformer, Division]], target: Division, shape: ViTShape, num_classes: int
) -> VisionTransformer:
    """FT's starting point: stage i of the target is stage i of MT run i (embeddings from run 0, norm and head from
    run K−1); nothing of the meta model survives."""
    if len(modules) != target.stages:
        raise ValueError(f"assembling needs one MT run per stage: got {len(modules)} for {target.stages} stages")
    model = build_divided(shape, target, num_classes, device=modules[0][0].cls_token.device)
    for i, (vit, division) in enumerate(modules):
        load_stage(model, target, i, stage_state(vit, division, i))
    return model


def _check(vit: VisionTransformer, division: Division) -> None:
    if len(vit.blocks) != division.total:
        raise ValueError(
            f"the model has {len(vit.blocks)} blocks but the division {division.depths} has {division.total}"
        )
