"""The dynamic rank schedule of STRATO-PEFT's final run: LoRA adapters grow where the loss is sensitive to them and
shrink where it is not, by *resizing* their A/B tensors — so parameters, optimizer state and FLOPs really change —
rather than masking them as AdaLoRA does in `peft` (Zhang et al., 2023, arXiv 2303.10512, whose sensitivity
|w·∂L/∂w| `module_utility` borrows).

`resize` keeps the adapter's function: growing appends zero columns to B (ΔW unchanged exactly), shrinking writes
the best rank-r approximation of ΔW (Eckart–Young, through the SVD). `peft` has no resize API, so this replaces the
`lora_A` / `lora_B` modules of a `peft.tuners.lora.LoraLayer` and updates its `r`, `lora_alpha` and `scaling` dicts;
the optimizer must then be rebuilt (`rebuild_optimizer`). `lora_alpha` keeps its ratio to r, the convention of
`Allocation.to_lora_config`, so `to_allocation(current_ranks(model), ...)` describes the resized model exactly.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from edgetune.strato.spec import MODULES, Allocation, module_path


def adapter_layers(peft_model: nn.Module, adapter: str = "default") -> dict[str, LoraLayer]:
    """The LoRA layers holding `adapter`, by module name in the wrapped model (`model.layers.0.self_attn.q_proj`)."""
    base = peft_model.get_base_model()
    return {
        name: module
        for name, module in base.named_modules()
        if isinstance(module, LoraLayer) and adapter in module.lora_A
    }


def current_ranks(peft_model: nn.Module, adapter: str = "default") -> dict[str, int]:
    return {name: layer.r[adapter] for name, layer in adapter_layers(peft_model, adapter).items()}


def to_allocation(ranks: dict[str, int], num_layers: int) -> Allocation:
    """The `Allocation` of per-module ranks keyed by module name (as `current_ranks` gives them)."""
    paths = {module_path(i, m): (i, j) for i in range(num_layers) for j, m in enumerate(MODULES)}
    unknown = set(ranks) - set(paths)
    if unknown:
        raise ValueError(f"modules {sorted(unknown)} are not Llama projections of a {num_layers}-layer model")
    rows = [[0] * len(MODULES) for _ in range(num_layers)]
    for name, r in ranks.items():
        i, j = paths[name]
        rows[i][j] = r
    return Allocation(tuple(tuple(row) for row in rows))


def _scaling(layer: LoraLayer, adapter: str, alpha: float, rank: int) -> float:
    rslora = layer.use_rslora.get(adapter, False)
    return alpha / math.sqrt(rank) if rslora else alpha / rank


def _fresh_rows(rows: int, columns: int, generator: torch.Generator) -> torch.Tensor:
    """peft's default A init (kaiming-uniform, a=√5), from `generator` on the CPU in float64."""
    a = torch.empty(rows, columns, dtype=torch.float64)
    return nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator) if rows else a


def _padded(a: torch.Tensor, b: torch.Tensor, rank: int, generator: torch.Generator):
    """(A, B) brought up to `rank` with fresh A rows and zero B columns: B·A is unchanged."""
    extra = rank - a.shape[0]
    return torch.cat([a, _fresh_rows(extra, a.shape[1], generator)]), torch.cat([b, b.new_zeros(len(b), extra)], 1)


def _truncated(a: torch.Tensor, b: torch.Tensor, scale: float, rank: int, generator: torch.Generator):
    """Factors (A', B') with B'·A' = the best rank-`rank` approximation of scale·B·A, as diag(√S)Vᵀ and U·diag(√S).

    The SVD goes through QR of the thin factors (B = Q_b R_b, Aᵀ = Q_a R_a; SVD of the small core), never the full
    d_out×d_in matrix. Directions with a zero singular value get a fresh A row and a zero B column: ΔW is the same,
    but the adapter stays trainable (A = B = 0 would be a saddle with zero gradients)."""
    q_b, r_b = torch.linalg.qr(b)  # (out, k), (k, r) with k = min(out, r)
    q_a, r_a = torch.linalg.qr(a.T)  # (in, k'), (k', r)
    u, s, vh = torch.linalg.svd(scale * r_b @ r_a.T, full_matrices=False)
    u, s, vh = q_b @ u[:, :rank], s[:rank], vh[:rank] @ q_a.T  # (out, k), (k,), (k, in), k ≤ rank
    root = s.sqrt()
    new_a, new_b = root[:, None] * vh, u * root
    dead = s <= s.max() * 1e-12
    new_a[dead] = _fresh_rows(int(dead.sum()), a.shape[1], generator)
    new_b[:, dead] = 0
    return _padded(new_a, new_b, rank, generator)  # k < rank only when rank exceeds min(d_in, d_out)


def resize(layer: LoraLayer, new_rank: int, *, adapter: str = "default", generator: torch.Generator) -> None:
    """Give `layer`'s adapter rank `new_rank`, keeping its function: growing keeps A's rows and B's columns and adds
    kaiming-uniform rows to A (from `generator`) with zero columns in B, so ΔW = s·B·A is unchanged; shrinking
    replaces ΔW by its truncated SVD. `lora_alpha` keeps its ratio to r; a change of scaling (rsLoRA's α/√r) is
    folded into B. The new A/B are new `nn.Linear` modules on the old device and dtype, trainable. Same rank: no-op.
    Layers with a LoRA variant (DoRA's magnitude vector) or AdaLoRA's singular values are refused."""
    if new_rank < 1:
        raise ValueError(f"new_rank = {new_rank}; expected a positive integer")
    if adapter in layer.lora_variant or adapter in layer.lora_magnitude_vector:
        raise ValueError("resize handles plain LoRA only; DoRA's lora_magnitude_vector would need re-normalising")
    if hasattr(layer, "lora_E"):
        raise ValueError("resize does not handle AdaLoRA layers (it masks singular values instead)")
    old_a, old_b, rank = layer.lora_A[adapter], layer.lora_B[adapter], layer.r[adapter]
    if new_rank == rank:
        return
    alpha = layer.lora_alpha[adapter] * new_rank / rank
    s_old, s_new = layer.scaling[adapter], _scaling(layer, adapter, alpha, new_rank)
    a, b = old_a.weight.detach().double().cpu(), old_b.weight.detach().double().cpu()  # (r, in), (out, r)
    if new_rank > rank:
        new_a, new_b = _padded(a, b * (s_old / s_new), new_rank, generator)
    else:
        new_a, new_b = _truncated(a, b, s_old, new_rank, generator)
        new_b = new_b / s_new
    layer.lora_A[adapter] = _linear(new_a, None, old_a.weight)
    bias = None if old_b.bias is None else old_b.bias.detach() * (s_old / s_new)
    layer.lora_B[adapter] = _linear(new_b, bias, old_b.weight)
    layer.r[adapter], layer.lora_alpha[adapter], layer.scaling[adapter] = new_rank, alpha, s_new


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, like: torch.Tensor) -> nn.Linear:
    """An `nn.Linear` with `weight` (out, in) and `bias`, on `like`'s device and dtype, trainable."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None, device=like.device, dtype=like.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    linear.requires_grad_(True)
    return linear


def rebuild_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """A new AdamW over `model`'s current trainable parameters: each old group keeps its settings (lr, weight decay,
    ...) and the parameters of it that survive, with their state (moments, step); parameters that appeared (resized
    adapters) join the first group with fresh state. An LR scheduler must be re-attached to the new optimizer."""
    current = [p for p in model.parameters() if p.requires_grad]
    alive = {id(p) for p in current}
    groups = [
        {**{k: v for k, v in group.items() if k != "params"}, "params": [p for p in group["params"] if id(p) in alive]}
        for group in optimizer.param_groups
    ]
    placed = {id(p) for group in groups for p in group["params"]}
    groups[0]["params"] += [p for p in current if id(p) not in placed]
    accepted = inspect.signature(torch.optim.AdamW).parameters
    rebuilt = torch.optim.AdamW(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})
    for group in groups:
        for p in group["params"]:
            if p in optimizer.state:
                rebuilt.state[p] = optimizer.state[p]
    return rebuilt


@dataclass(frozen=True)
class RankSchedule:
    """Every `every` optimizer steps, modules with utility > `high` (1 = average) grow their rank by ×`grow`,
    those below `low` shrink by ÷`shrink`, within [`min_rank`, `max_rank`] and a parameter budget."""

    every: int
    grow: float = 1.5
    shrink: float = 1.5
    min_rank: int = 2
    max_rank: int = 32
    high: float = 1.5
    low: float = 0.5

    def __post_init__(self):
        checks = [
            (self.every > 0, "every", self.every, "a positive number of steps"),
            (self.grow > 1, "grow", self.grow, "> 1"),
            (self.shrink > 1, "shrink", self.shrink, "> 1"),
            (
                0 < self.min_rank <= self.max_rank,
                "min_rank/max_rank",
                (self.min_rank, self.max_rank),
                "0 < min_rank ≤ max_rank",
            ),
            (0 <= self.low < self.high, "low/high", (self.low, self.high), "0 ≤ low < high"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"RankSchedule.{key} = {value!r}; expected {expected}")

    def due(self, step: int) -> bool:
        """Whether optimizer step `step` (counted from 1) ends a scheduling period."""
        return step > 0 and step % self.every == 0

    def target(self, rank: int, utility: float) -> int:
        """The rank a module of `rank` and `utility` moves to (never past the bounds, never the wrong way)."""
        if utility > self.high:
            return max(rank, min(self.max_rank, math.ceil(rank * self.grow)))
        if utility < self.low:
            return min(rank, max(self.min_rank, math.floor(rank / self.shrink)))
        return rank


def module_utility(peft_model: nn.Module, adapter: str = "default") -> dict[str, float]:
    """Per adapted module, the mean of |p·∂L/∂p| over its A and B entries (AdaLoRA's sensitivity), divided by the
    mean over modules (1.0 = average; all 1.0 when every score is 0, e.g. at init where B = 0). Call after
    `backward()`, before `zero_grad()`."""
    scores = {}
    for name, layer in adapter_layers(peft_model, adapter).items():
        params = (layer.lora_A[adapter].weight, layer.lora_B[adapter].weight)
        if any(p.grad is None for p in params):
            raise ValueError(f"{name} has no gradient; call module_utility after backward(), before zero_grad()")
        total = sum(float((p.detach() * p.grad).abs().sum()) for p in params)
        scores[name] = total / sum(p.numel() for p in params)
    mean = sum(scores.values()) / len(scores)
    return {name: (s / mean if mean > 0 else 1.0) for name, s in scores.items()}


def schedule_step(
    peft_model: nn.Module,
    schedule: RankSchedule,
    utilities: dict[str, float],
    budget: int,
    *,
    generator: torch.Generator,
    adapter: str = "default",
) -> dict[str, tuple[int, int]]:
    """One rank-schedule update: grow/shrink by `schedule.target`, then undo grows from the lowest utility up while
    Σ r·(d_in + d_out) exceeds `budget` (shrinks always stand; the budget limits growth, it does not force cuts).
    Resizes the modules that change and returns {name: (old rank, new rank)} for them; rebuild the optimizer after."""
    layers = adapter_layers(peft_model, adapter)
    unknown = set(utilities) - set(layers)
    if unknown:
        raise ValueError(f"utilities name modules without adapter {adapter!r}: {sorted(unknown)}")
    ranks = {name: layer.r[adapter] for name, layer in layers.items()}
    target = {name: schedule.target(ranks[name], u) for name, u in utilities.items()}
    target = {**ranks, **target}
    width = {name: layer.in_features + layer.out_features for name, layer in layers.items()}
    for name in sorted((n for n in target if target[n] > ranks[n]), key=utilities.get):
        if sum(target[n] * width[n] for n in target) <= budget:
            break
        target[name] = ranks[name]
    changed = {name: (ranks[name], target[name]) for name in target if target[name] != ranks[name]}
    for name, (_, new) in changed.items():
        resize(layers[name], new, adapter=adapter, generator=generator)
    return changed
