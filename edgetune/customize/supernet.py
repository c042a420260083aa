"""The elastic ViT supernet of ACME's cloud stage (DynaViT: width × depth), on a plain timm VisionTransformer.

The supernet *is* a timm `VisionTransformer` — same modules, same parameter names, so pretrained weights load
strictly — and a sub-network is an immutable `SubnetSpec` passed to `supernet_forward`; nothing hides an
"active width" inside the modules (the original patched transformers' ViT with `width_mult` attributes).

* Width w keeps round(H·w) attention heads and the same share of MLP units in every block (ACME ties the MLP
  ratio to the head count: 3/6/9/12 heads ↔ 768/1536/2304/3072 units in ViT-B). Units are taken from the front,
  so `reorder_by_importance` first sorts heads and units by importance (DynaBERT's "network rewiring").
* Depth d keeps round(L·d) blocks, evenly spaced: block floor(i / d) for i = 0 … round(L·d) − 1 (ACME's encoder:
  d = 0.5 of 12 keeps 0, 2, …, 10; d = 0.25 keeps 0, 4, 8).

`extract_subnet` returns a plain, smaller timm ViT with copied weights that computes exactly what the supernet
computes under the same spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from edgetune.models.vit import narrow_vit

WIDTHS = (0.25, 0.5, 0.75, 1.0)
DEPTHS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, order=True)
class SubnetSpec:
    """A sub-network of the supernet: the share of heads/MLP units (width) and of blocks (depth) it keeps."""

    width: float = 1.0
    depth: float = 1.0

    def __post_init__(self):
        for name in ("width", "depth"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"SubnetSpec.{name}={value} must lie in (0, 1]")

    def heads(self, num_heads: int) -> int:
        return max(1, round(num_heads * self.width))

    def units(self, mlp_hidden: int, num_heads: int) -> int:
        """MLP units kept: the same share as heads (ACME ties them), so whole heads ↔ whole unit groups."""
        return max(1, mlp_hidden * self.heads(num_heads) // num_heads)

    def blocks(self, depth: int) -> tuple[int, ...]:
        """Indices of the kept blocks, evenly spaced as in ACME's elastic encoder."""
        return tuple(math.floor(i / self.depth) for i in range(max(1, round(depth * self.depth))))


FULL = SubnetSpec()


def all_specs(widths=WIDTHS, depths=DEPTHS) -> list[SubnetSpec]:
    """Every (width, depth) combination, largest first (the order the training loop visits them in)."""
    return sorted((SubnetSpec(w, d) for d in depths for w in widths), reverse=True)


def check_supernet(vit: VisionTransformer) -> None:
    """The supernet forward reimplements the token embedding for the standard ViT layout; refuse any other."""
    problems = []
    if vit.cls_token is None or vit.num_prefix_tokens != 1 or vit.no_embed_class:
        problems.append("exactly one class token with its position embedding")
    if getattr(vit, "dynamic_img_size", False):
        problems.append("a fixed image size (dynamic_img_size=False)")
    if not all(type(b) is Block and isinstance(b.mlp.norm, nn.Identity) for b in vit.blocks):
        problems.append("timm's plain Block with no MLP norm")
    if vit.global_pool != "token":
        problems.append("global_pool='token'")
    if problems:
        raise ValueError("the elastic supernet needs a standard timm ViT with " + "; ".join(problems))


def embed(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Patch embedding, class token and learned position embedding: (B, 3, H, W) → (B, 1 + P, C)."""
    tokens = vit.patch_embed(x)  # (B, P, C)
    cls = vit.cls_token.expand(tokens.shape[0], -1, -1)
    return vit.norm_pre(vit.pos_drop(torch.cat([cls, tokens], dim=1) + vit.pos_embed))


def elastic_block(block: Block, x: torch.Tensor, heads: int, units: int) -> torch.Tensor:
    """One timm Block restricted to its first `heads` heads and `units` MLP units. (B, N, C) → (B, N, C)."""
    attn, mlp = block.attn, block.mlp
    if heads == attn.num_heads and units == mlp.fc1.out_features:
        return block(x)  # the full block: timm's own forward, so the full spec costs nothing extra
    b, n, c = x.shape
    hd = attn.head_dim
    qkv_w = attn.qkv.weight.view(3, attn.num_heads, hd, c)[:, :heads].reshape(3 * heads * hd, c)
    qkv_b = None if attn.qkv.bias is None else attn.qkv.bias.view(3, attn.num_heads, hd)[:, :heads].reshape(-1)
    qkv = F.linear(block.norm1(x), qkv_w, qkv_b).view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, N, hd) each
    out = F.scaled_dot_product_attention(attn.q_norm(q), attn.k_norm(k), v)  # attention dropout is 0 here
    out = F.linear(out.transpose(1, 2).reshape(b, n, heads * hd), attn.proj.weight[:, : heads * hd], attn.proj.bias)
    x = x + block.drop_path1(block.ls1(out))
    hidden = mlp.act(F.linear(block.norm2(x), mlp.fc1.weight[:units], mlp.fc1.bias[:units]))
    out = F.linear(hidden, mlp.fc2.weight[:, :units], mlp.fc2.bias)
    return x + block.drop_path2(block.ls2(out))


def supernet_forward(
    vit: VisionTransformer, x: torch.Tensor, spec: SubnetSpec = FULL, return_hidden: bool = False
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of the sub-network `spec` of `vit`; with `return_hidden`, also the hidden states (B, N, C): the
    embedding output, then the output of every kept block (what DynaBERT-style distillation matches)."""
    shape_heads, hidden_units = vit.blocks[0].attn.num_heads, vit.blocks[0].mlp.fc1.out_features
    heads, units = spec.heads(shape_heads), spec.units(hidden_units, shape_heads)
    h = embed(vit, x)
    states = [h]
    for i in spec.blocks(len(vit.blocks)):
        h = elastic_block(vit.blocks[i], h, heads, units)
        states.append(h)
    logits = vit.forward_head(vit.norm(h))
    return (logits, states) if return_hidden else logits


def extract_subnet(vit: VisionTransformer, spec: SubnetSpec) -> VisionTransformer:
    """A plain timm ViT with copied weights that computes `supernet_forward(vit, ·, spec)`."""
    check_supernet(vit)
    shape_heads, hidden_units = vit.blocks[0].attn.num_heads, vit.blocks[0].mlp.fc1.out_features
    device = vit.cls_token.device
    heads = torch.arange(spec.heads(shape_heads), device=device)
    units = torch.arange(spec.units(hidden_units, shape_heads), device=device)
    blocks = list(spec.blocks(len(vit.blocks)))
    return narrow_vit(vit, blocks, [(heads, units)] * len(blocks))


# ------------------------------------------------------------------------------------------ importance
def accumulate_importance(vit: VisionTransformer, scores: dict[str, torch.Tensor] | None = None) -> dict:
    """Add this backward pass's first-order importance of every head and MLP unit to `scores` (DynaBERT/ACME).

    Head h: |∂L/∂m_h| for a mask m_h on its output, which equals |Σ W_proj ⊙ ∇W_proj| over the head's projection
    columns. Unit u: |Σ W1[u]·∇W1[u] + b1[u]·∇b1[u]| + |Σ W2[:, u]·∇W2[:, u]| (ACME's neuron criterion).
    Returns {"heads": (L, H), "units": (L, hidden)}. Call after `loss.backward()`.
    """
    heads, units = [], []
    for block in vit.blocks:
        proj = block.attn.proj.weight
        heads.append((proj * proj.grad).view(proj.shape[0], block.attn.num_heads, -1).sum(dim=(0, 2)).abs())
        fc1, fc2 = block.mlp.fc1, block.mlp.fc2
        into = (fc1.weight * fc1.weight.grad).sum(1) + fc1.bias * fc1.bias.grad
        units.append(into.abs() + (fc2.weight * fc2.weight.grad).sum(0).abs())
    new = {"heads": torch.stack(heads).detach(), "units": torch.stack(units).detach()}
    return new if scores is None else {k: scores[k] + new[k] for k in new}


@torch.no_grad()
def reorder_by_importance(vit: VisionTransformer, scores: dict[str, torch.Tensor]) -> None:
    """Permute, in place, every block's heads and MLP units into descending importance. The full network's
    function is unchanged; every width then keeps the most important heads and units."""
    for block, head_score, unit_score in zip(vit.blocks, scores["heads"], scores["units"], strict=True):
        _permute_heads(block, head_score.argsort(descending=True))
        order = unit_score.argsort(descending=True)
        block.mlp.fc1.weight.copy_(block.mlp.fc1.weight[order])
        block.mlp.fc1.bias.copy_(block.mlp.fc1.bias[order])
        block.mlp.fc2.weight.copy_(block.mlp.fc2.weight[:, order])


def _permute_heads(block: Block, order: torch.Tensor) -> None:
    attn, hd = block.attn, block.attn.head_dim
    cols = (order[:, None] * hd + torch.arange(hd, device=order.device)).flatten()  # new → old head columns
    n_all = attn.num_heads * hd
    rows = torch.cat([cols, cols + n_all, cols + 2 * n_all])
    attn.qkv.weight.copy_(attn.qkv.weight[rows])
    if attn.qkv.bias is not None:
        attn.qkv.bias.copy_(attn.qkv.bias[rows])
    attn.proj.weight.copy_(attn.proj.weight[:, cols])
