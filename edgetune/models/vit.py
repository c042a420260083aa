"""ViT constructors for the profiles, built from timm so parameter names stay timm's (pretrained weights load with
`strict=True`), and width pruning that returns a plain, narrower timm ViT.

Width, as in ACME and BlockTrainer, is the number of attention heads and MLP hidden units per block; the residual
stream (embed_dim) and the head size are kept, so a pruned model is a drop-in replacement.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial

import torch
from timm.layers import Attention, LayerNorm, Mlp
from timm.models.vision_transformer import VisionTransformer
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ViTShape:
    """The architecture of a ViT; `head_dim` may differ from embed_dim / num_heads after width pruning. `qkv_bias` and
    `norm_eps` follow the checkpoint a shape is read from (timm's defaults: a Q/K/V bias, LayerNorm eps 1e-6; Hugging
    Face ViTs use 1e-12)."""

    img_size: int = 32
    patch_size: int = 8
    embed_dim: int = 64
    depth: int = 6
    num_heads: int = 4
    mlp_hidden: int = 256
    head_dim: int | None = None
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size={self.img_size} must be a multiple of patch_size={self.patch_size}")
        if self.head_dim is None and self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")

    @property
    def tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2 + 1


# The family used across profiles. The first three are trained here (embedded data); the /16 ones are the
# standard ImageNet shapes (ViT-Ti/S/B at 224 px) the papers deploy.
VIT_FAMILY: dict[str, ViTShape] = {
    "edge-tiny": ViTShape(32, 8, 48, 4, 3, 192),
    "edge-small": ViTShape(32, 8, 64, 8, 4, 256),
    "edge-base": ViTShape(32, 4, 192, 12, 3, 768),
    "edge-deep": ViTShape(32, 4, 192, 24, 3, 768),  # deep and narrow: the assembling section's gpu profile
    "vit-ti16": ViTShape(224, 16, 192, 12, 3, 768),
    "vit-s16": ViTShape(224, 16, 384, 12, 6, 1536),
    "vit-b16": ViTShape(224, 16, 768, 12, 12, 3072),
}


def build_vit(
    shape: ViTShape | str, num_classes: int, *, device: torch.device | str | None = None, dtype=None
) -> VisionTransformer:
    """A timm VisionTransformer of `shape` (a ViTShape or a VIT_FAMILY name) with a CLS-token head: exactly
    `shape.mlp_hidden` MLP units (timm derives them from a ratio, which can round one short), the shape's Q/K/V bias
    and LayerNorm eps."""
    if isinstance(shape, str):
        if shape not in VIT_FAMILY:
            raise ValueError(f"unknown ViT {shape!r}; expected a ViTShape or one of {list(VIT_FAMILY)}")
        shape = VIT_FAMILY[shape]
    model = VisionTransformer(
        img_size=shape.img_size,
        patch_size=shape.patch_size,
        embed_dim=shape.embed_dim,
        depth=shape.depth,
        num_heads=shape.num_heads if shape.head_dim is None else 1,  # attention is replaced below
        mlp_ratio=shape.mlp_hidden / shape.embed_dim,
        qkv_bias=shape.qkv_bias,
        norm_layer=partial(LayerNorm, eps=shape.norm_eps),
        num_classes=num_classes,
        device=device,
        dtype=dtype,
    )
    for block in model.blocks:
        if shape.head_dim:  # timm builds heads of embed_dim / num_heads; swap in attention with the pruned head size
            block.attn = Attention(
                shape.embed_dim,
                shape.num_heads,
                attn_head_dim=shape.head_dim,
                qkv_bias=shape.qkv_bias,
                device=device,
                dtype=dtype,
            )
    return exact_mlp(model, shape.mlp_hidden, device=device, dtype=dtype)


def exact_mlp(model: VisionTransformer, hidden: int, drop: float = 0.0, **factory) -> VisionTransformer:
    """`model` with exactly `hidden` MLP units in every block: timm sizes the MLP as int(embed_dim × mlp_ratio), which
    can round one unit short (embed_dim 28, 61 units: 60), and then a checkpoint no longer loads strictly."""
    for block in model.blocks:
        if block.mlp.fc1.out_features != hidden:
            block.mlp = Mlp(model.embed_dim, hidden, drop=drop, **factory)
    return model


def vit_shape(model: VisionTransformer) -> ViTShape:
    """Read a timm ViT's shape back (uniform blocks assumed)."""
    block = model.blocks[0]
    head_dim = block.attn.head_dim
    return ViTShape(
        img_size=model.patch_embed.img_size[0],
        patch_size=model.patch_embed.patch_size[0],
        embed_dim=model.embed_dim,
        depth=len(model.blocks),
        num_heads=block.attn.num_heads,
        mlp_hidden=block.mlp.fc1.out_features,
        head_dim=None if head_dim * block.attn.num_heads == model.embed_dim else head_dim,
        qkv_bias=any(name.endswith("bias") for name, _ in block.attn.qkv.named_parameters()),  # a factorized qkv too
        norm_eps=block.norm1.eps,
    )


def prune_width(model: VisionTransformer, width: float) -> VisionTransformer:
    """A plain timm ViT keeping `width` of every block's heads and MLP units, ranked by L1 norm of their weights.

    Heads are ranked by the L1 norm of their output-projection columns, MLP units by their fc1 rows plus fc2
    columns (the magnitude criterion BlockTrainer uses for MLP neurons). Kept units stay in their original order,
    so `width=1.0` returns an exact copy.
    """
    if not 0 < width <= 1:
        raise ValueError(f"width={width} must lie in (0, 1]")
    shape = vit_shape(model)
    heads = max(1, round(width * shape.num_heads))
    hidden = max(1, round(width * shape.mlp_hidden))
    keep = [(_top(head_l1(b), heads), _top(unit_l1(b), hidden)) for b in model.blocks]
    return narrow_vit(model, list(range(shape.depth)), keep)


def head_l1(block) -> torch.Tensor:
    """(H,) L1 norm of each head's output-projection columns."""
    proj = block.attn.proj.weight  # (C, H*hd)
    return proj.abs().view(proj.shape[0], block.attn.num_heads, -1).sum(dim=(0, 2))


def unit_l1(block) -> torch.Tensor:
    """(hidden,) L1 norm of each MLP unit's fc1 row plus fc2 column."""
    return block.mlp.fc1.weight.abs().sum(1) + block.mlp.fc2.weight.abs().sum(0)


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    return score.topk(k).indices.sort().values


def narrow_vit(
    model: VisionTransformer, blocks: list[int], keep: list[tuple[torch.Tensor, torch.Tensor]]
) -> VisionTransformer:
    """A plain timm ViT made of `blocks` of `model` (renumbered 0..), block j keeping heads `keep[j][0]` and MLP
    units `keep[j][1]` (index tensors, the same count in every block). Embeddings, norms and head are copied."""
    shape = vit_shape(model)
    hd = shape.head_dim or shape.embed_dim // shape.num_heads
    heads, hidden = len(keep[0][0]), len(keep[0][1])
    small_shape = replace(
        shape,
        depth=len(blocks),
        num_heads=heads,
        mlp_hidden=hidden,
        head_dim=hd if heads * hd != shape.embed_dim else None,
    )
    small = build_vit(small_shape, model.num_classes, device=model.cls_token.device, dtype=model.cls_token.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.")}
    for j, (i, (head_idx, unit_idx)) in enumerate(zip(blocks, keep, strict=True)):
        state.update(narrow_block_state(model.blocks[i], f"blocks.{j}.", head_idx, unit_idx))
    small.load_state_dict(state, strict=True)
    return small


def narrow_block_state(block, prefix: str, head_idx: torch.Tensor, unit_idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state dict of `block` restricted to the given heads and MLP units, under `prefix`."""
    state = {prefix + k: v for k, v in block.state_dict().items()}
    hd, n_all = block.attn.head_dim, block.attn.num_heads * block.attn.head_dim
    head_idx, unit_idx = head_idx.to(block.attn.qkv.weight.device), unit_idx.to(block.attn.qkv.weight.device)
    dims = (head_idx[:, None] * hd + torch.arange(hd, device=head_idx.device)).flatten()  # kept q, k or v columns
    qkv_rows = torch.cat([dims, dims + n_all, dims + 2 * n_all])
    state[prefix + "attn.qkv.weight"] = block.attn.qkv.weight[qkv_rows]
    if block.attn.qkv.bias is not None:
        state[prefix + "attn.qkv.bias"] = block.attn.qkv.bias[qkv_rows]
    state[prefix + "attn.proj.weight"] = block.attn.proj.weight[:, dims]
    state[prefix + "mlp.fc1.weight"] = block.mlp.fc1.weight[unit_idx]
    state[prefix + "mlp.fc1.bias"] = block.mlp.fc1.bias[unit_idx]
    state[prefix + "mlp.fc2.weight"] = block.mlp.fc2.weight[:, unit_idx]
    return {k: v.detach().clone() for k, v in state.items()}


@contextmanager
def explicit_attention(model: torch.nn.Module):
    """Switch timm's attention modules to their explicit-matmul path (`fused_attn = False`, same maths) for the
    duration: FlopCounterMode does not count the CPU kernel behind `scaled_dot_product_attention`."""
    attns = [m for m in model.modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in attns]
    try:
        for m in attns:
            m.fused_attn = False
        yield model
    finally:
        for m, fused in zip(attns, saved, strict=True):
            m.fused_attn = fused


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass, counted by torch's FlopCounterMode (attention on its explicit path, so it counts)."""
    with explicit_attention(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()
