"""BlockTrainer's knowledge base, FBS gates, edge ("proxy") models, merge-back and neuron index, on timm ViTs.

After Zhang, Han and Liu, "Cloud-Edge Collaborative Retraining of Foundation Models at the Block Granularity"
(BlockTrainer), Acta Electronica Sinica 53(2), 2025, and its code (LINC-BIT/BlockTrainer, with the FBS layers of
LINC-BIT/ConvertNet):

* The knowledge base (kb) is a narrowed copy of the foundation model (fm) whose attention linears are factorized by
  truncated SVD at the parameter-neutral rank, so every rank channel and every MLP unit can carry an input-dependent
  FBS gate (feature boosting and suppression: g = ReLU(fc2(ReLU(fc1(mean_tokens |x|)))), the k smallest set to 0).
* An edge model is cut from the kb for one window: one representative sample fills the gates, every gated layer
  keeps its top channels and freezes their gate values into a `scale` buffer; it computes exactly what the gated kb
  computes on that sample. After retraining it is merged back into the kb at the kept positions, and the kb's
  update is projected into the fm through the neuron index (each kb neuron as a weighted sum of fm neurons).

Where this code departs from the original, deliberately:

* Heads are kept by the L1 norm of their output-projection columns (the original pruned heads at random), and one
  MLP unit index serves fc1 rows and fc2 columns (the original chose them independently, so the kept fc1 units and
  fc2 columns did not match — a bug that its later training had to absorb).
* timm fuses Q, K and V into one `qkv` linear, so it is factorized as one (rank 0.75 C at the neutral rank instead
  of three ranks of 0.5 C); the rank is rounded *up* to a multiple of 8 and clamped to min(in, out).
* The neuron index is solved in closed form (ridge least squares) for the final kb instead of learned by SGD jointly
  with the gates; it is the exact minimiser of the original's index loss plus a small ridge.
* Every block's gates follow the plan (the original never set the last block's proj gate, a marked "manual bug").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn.utils import skip_init

from edgetune.models.vit import _top, head_l1, narrow_vit, unit_l1, vit_shape

GATED = ("attn.qkv", "attn.proj", "mlp")  # where gated layers sit in every block


def parameter_neutral_rank(in_features: int, out_features: int, divisor: int = 8) -> int:
    """The rank r at which Linear(in, r) + Linear(r, out) holds about as many weights as Linear(in, out):
    m·n/(m+n), rounded up to a multiple of `divisor` and clamped to [1, min(m, n)]."""
    rank = math.ceil(in_features * out_features / (in_features + out_features) / divisor) * divisor
    return max(1, min(rank, in_features, out_features))


class Gate(nn.Module):
    """An FBS gate: per-sample channel saliencies from the layer's input, the `int(sparsity·C)` smallest zeroed.

    `raw` keeps the gate values before k-winners with their graph (for the L1 penalty), `last` the detached values
    after it (for cutting an edge model)."""

    def __init__(self, in_features: int, channels: int, reduction: int = 8, *, device=None, dtype=None):
        super().__init__()
        hidden = max(4, in_features // reduction)
        self.fc1 = nn.Linear(in_features, hidden, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, channels, device=device, dtype=dtype)
        nn.init.kaiming_normal_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, 1.0)  # every channel starts open
        self.sparsity = 0.0
        self.last: torch.Tensor | None = None
        self.raw: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        saliency = x.abs().mean(1)  # (B, N, in) -> (B, in)
        raw = torch.relu(self.fc2(torch.relu(self.fc1(saliency))))  # (B, C)
        k = int(self.sparsity * raw.shape[1])
        g = raw
        if k:  # k-winners: zero the k smallest per sample
            mask = torch.ones_like(raw).scatter_(1, raw.topk(k, dim=1, largest=False).indices, 0.0)
            g = raw * mask
        self.raw, self.last = raw, g.detach()
        return g

    def __getstate__(self):
        # `raw` carries a graph, which deepcopy and pickle refuse; the cached values are not part of the gate
        return {**self.__dict__, "raw": None, "last": None}


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding copies of `weight` (out, in) and `bias` (out,), on their device and dtype."""
    out_features, in_features = weight.shape
    layer = skip_init(
        nn.Linear, in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class FactorizedLinear(nn.Module):
    """y = up(down(x) · g · scale): a linear layer through `rank` gateable channels.

    `gate` (kb) gives g per sample; an edge model has no gate but a fixed `scale` (rank,) and the indices `kept` of
    its channels among the kb's."""

    # local parameter name -> the axis that indexes the rank channels
    CHANNEL_AXES = {"down.weight": 0, "up.weight": 1}

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)
        self.gate: Gate | None = None
        self.register_buffer("scale", None)
        self.register_buffer("kept", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> FactorizedLinear:
        """Truncated SVD of `linear`, √S split into both factors; exact when rank == min(in, out)."""
        weight = linear.weight.detach()  # (out, in)
        if not 1 <= rank <= min(weight.shape):
            raise ValueError(f"rank={rank} must lie in [1, {min(weight.shape)}] for a {tuple(weight.shape)} weight")
        u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)  # (out, k), (k,), (k, in)
        root = s[:rank].sqrt()
        dd = {"device": weight.device, "dtype": weight.dtype}
        layer = skip_init(cls, linear.in_features, linear.out_features, rank, linear.bias is not None, **dd)
        with torch.no_grad():
            layer.down.weight.copy_(root[:, None] * vh[:rank])  # (rank, in)
            layer.up.weight.copy_(u[:, :rank] * root)  # (out, rank)
            if linear.bias is not None:
                layer.up.bias.copy_(linear.bias)
        return layer

    @property
    def channels(self) -> int:
        return self.down.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)  # (B, N, r)
        if self.gate is not None:
            h = h * self.gate(x)[:, None, :]
        if self.scale is not None:
            h = h * self.scale
        return self.up(h)  # (B, N, out)

    def keep_channels(self, kept: torch.Tensor, scale: torch.Tensor) -> None:
        """Physically keep rank channels `kept` (rows of down, columns of up), fixed gate values `scale`."""
        self.down = _linear(self.down.weight[kept], None)
        self.up = _linear(self.up.weight[:, kept], self.up.bias)
        self.scale, self.kept, self.gate = scale, kept, None


class GatedMlp(nn.Module):
    """timm's Mlp with gateable hidden units: fc2(act(fc1(x) · g · scale)); the names fc1/fc2 stay timm's."""

    CHANNEL_AXES = {"fc1.weight": 0, "fc1.bias": 0, "fc2.weight": 1}

    def __init__(self, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear, drop1: float = 0.0, drop2: float = 0.0):
        super().__init__()
        self.fc1, self.act, self.fc2 = fc1, act, fc2
        self.drop1, self.drop2 = nn.Dropout(drop1), nn.Dropout(drop2)
        self.gate: Gate | None = None
        self.register_buffer("scale", None)
        self.register_buffer("kept", None)

    @classmethod
    def from_mlp(cls, mlp) -> GatedMlp:
        """A copy of a timm `Mlp` (linear layers, no hidden norm) with room for a gate."""
        if not isinstance(mlp.fc1, nn.Linear) or not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
            raise ValueError("GatedMlp.from_mlp needs a timm Mlp with nn.Linear fc1/fc2 and no hidden norm")
        mlp = copy.deepcopy(mlp)
        return cls(mlp.fc1, mlp.act, mlp.fc2, mlp.drop1.p, mlp.drop2.p)

    @property
    def channels(self) -> int:
        return self.fc1.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)  # (B, N, hidden)
        if self.gate is not None:
            h = h * self.gate(x)[:, None, :]
        if self.scale is not None:
            h = h * self.scale
        return self.drop2(self.fc2(self.drop1(self.act(h))))  # (B, N, C)

    def keep_channels(self, kept: torch.Tensor, scale: torch.Tensor) -> None:
        """Physically keep hidden units `kept` (fc1 rows and bias, fc2 columns), fixed gate values `scale`."""
        bias = None if self.fc1.bias is None else self.fc1.bias[kept]
        self.fc1 = _linear(self.fc1.weight[kept], bias)
        self.fc2 = _linear(self.fc2.weight[:, kept], self.fc2.bias)
        self.scale, self.kept, self.gate = scale, kept, None


def _check_share(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{name}={value} must lie in (0, 1]")


def build_knowledge_base(
    fm: VisionTransformer,
    head_keep: float,
    mlp_keep: float,
    *,
    full_rank: bool = False,
    gates: bool = True,
    gate_reduction: int = 8,
) -> VisionTransformer:
    """A new kb cut from `fm` (left untouched): the top heads by `head_l1` and MLP units by `unit_l1` of every
    block, attn.qkv/attn.proj factorized (parameter-neutral rank, or min(in, out) with `full_rank`), the MLP made a
    GatedMlp, and with `gates` an FBS gate on each of the three."""
    _check_share("head_keep", head_keep)
    _check_share("mlp_keep", mlp_keep)
    shape = vit_shape(fm)
    heads = max(1, round(head_keep * shape.num_heads))
    hidden = max(1, round(mlp_keep * shape.mlp_hidden))
    keep = [(_top(head_l1(b), heads), _top(unit_l1(b), hidden)) for b in fm.blocks]
    kb = narrow_vit(fm, list(range(shape.depth)), keep)
    for block in kb.blocks:
        for name in ("qkv", "proj"):
            linear = getattr(block.attn, name)
            m, n = linear.in_features, linear.out_features
            rank = min(m, n) if full_rank else parameter_neutral_rank(m, n)
            setattr(block.attn, name, FactorizedLinear.from_linear(linear, rank))
        block.mlp = GatedMlp.from_mlp(block.mlp)
        if gates:
            dd = {"device": kb.cls_token.device, "dtype": kb.cls_token.dtype}
            for layer in (block.attn.qkv, block.attn.proj, block.mlp):
                in_features = layer.fc1.in_features if isinstance(layer, GatedMlp) else layer.in_features
                layer.gate = Gate(in_features, layer.channels, gate_reduction, **dd)
    return kb


def gated_layers(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """(block index, "attn.qkv" | "attn.proj" | "mlp", module) for every FactorizedLinear / GatedMlp."""
    found = []
    for i, block in enumerate(model.blocks):
        for name in GATED:
            layer = block.get_submodule(name)
            if isinstance(layer, (FactorizedLinear, GatedMlp)):
                found.append((i, name, layer))
    return found


def set_sparsity(model: nn.Module, sparsity: float | Sequence[float]) -> None:
    """Set every gate's k-winners sparsity: one value for all blocks, or one per block."""
    depth = len(model.blocks)
    per_block = [float(sparsity)] * depth if isinstance(sparsity, (int, float)) else [float(s) for s in sparsity]
    if len(per_block) != depth:
        raise ValueError(f"sparsity has {len(per_block)} values but the model has {depth} blocks")
    for s in per_block:
        if not 0 <= s < 1:
            raise ValueError(f"sparsity={s} must lie in [0, 1)")
    for i, _, layer in gated_layers(model):
        if layer.gate is not None:
            layer.gate.sparsity = per_block[i]


def gate_l1(model: nn.Module) -> torch.Tensor:
    """Σ over gates of mean |raw gate value| from the last forward (0-dim; 0 if no gate has run)."""
    gates = [layer.gate for _, _, layer in gated_layers(model) if layer.gate is not None]
    terms = [g.raw.abs().mean() for g in gates if g.raw is not None]
    if not terms:
        return torch.zeros((), device=model.cls_token.device, dtype=model.cls_token.dtype)
    return torch.stack(terms).sum()


def edge_model(
    kb: VisionTransformer, sample: torch.Tensor, compressed: Sequence[bool], sparsity: float
) -> VisionTransformer:
    """The per-window proxy model: a copy of `kb` whose gated layers keep, per block, the top C − int(s·C) channels
    by their gate values on `sample` (s = `sparsity` where `compressed[i]`, else 0), with those values frozen as
    `scale`. On `sample` it computes what the gated kb (same sparsities) computes."""
    if len(compressed) != len(kb.blocks):
        raise ValueError(f"compressed has {len(compressed)} entries but the kb has {len(kb.blocks)} blocks")
    if sample.dim() != 4 or sample.shape[0] != 1:
        raise ValueError(f"sample must be one normalized image of shape (1, 3, H, W), got {tuple(sample.shape)}")
    small = copy.deepcopy(kb)
    set_sparsity(small, [sparsity if c else 0.0 for c in compressed])
    small.eval()
    with torch.no_grad():
        small(sample)  # fills every gate's `last`, (1, C)
        for _, _, layer in gated_layers(small):
            if layer.gate is None:
                continue
            g = layer.gate.last[0]  # (C,)
            # zeroed channels have g = 0 <= every kept value: the top C - k are the kb's winners (ties only at 0)
            kept = g.topk(g.numel() - int(layer.gate.sparsity * g.numel())).indices.sort().values
            layer.keep_channels(kept, g[kept].clone())
    small.train(kb.training)
    small.requires_grad_(True)
    return small


def _channel_axes(small: nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    """{small parameter name: (axis, kept kb indices)} for the parameters of pruned layers."""
    axes = {}
    for i, name, layer in gated_layers(small):
        if layer.kept is not None:
            for local, axis in layer.CHANNEL_AXES.items():
                axes[f"blocks.{i}.{name}.{local}"] = (axis, layer.kept)
    return axes


def merge_into_kb(kb: VisionTransformer, small: VisionTransformer, ratio: float = 0.5) -> dict[str, torch.Tensor]:
    """Write `small` back into `kb` in place: kb ← (1 − ratio)·kb + ratio·small, at the kept positions for pruned
    layers (BlockTrainer's proxy-to-kb feedback, with ratio 0.5). Gate parameters are untouched.

    Returns {kb name: new − old} for every 2-D weight written (the update to project into the fm)."""
    kb_params = dict(kb.named_parameters())
    axes = _channel_axes(small)
    deltas = {}
    with torch.no_grad():
        for name, p in small.named_parameters():
            if ".gate." in name:
                continue
            if name not in kb_params:
                raise ValueError(f"small parameter {name!r} has no counterpart in the kb; was it cut from this kb?")
            target = kb_params[name]
            old = target.detach().clone()
            axis, kept = axes.get(name, (0, None))
            if kept is None:
                target.lerp_(p.to(target), ratio)
            else:
                mixed = torch.lerp(target.index_select(axis, kept), p.to(target), ratio)
                target.index_copy_(axis, kept, mixed)
            if target.dim() == 2:
                deltas[name] = target.detach() - old
    return deltas


@dataclass
class IndexEntry:
    """One kb weight as a function of one fm weight: kb neurons along `axis` = `matrix` (kb, fm) @ fm neurons."""

    fm_name: str
    axis: int
    matrix: torch.Tensor  # (kb neurons, fm neurons)


def _index_pairs(depth: int) -> list[tuple[str, str, int]]:
    """(kb weight, fm weight, neuron axis) for every block, as in BlockTrainer's index for ViT."""
    pairs = []
    for i in range(depth):
        p = f"blocks.{i}."
        pairs += [
            (p + "attn.qkv.down.weight", p + "attn.qkv.weight", 0),  # (r, C) rows <- (3C, C) rows
            (p + "attn.proj.up.weight", p + "attn.proj.weight", 1),  # (C, r) columns <- (C, C) columns
            (p + "mlp.fc1.weight", p + "mlp.fc1.weight", 0),  # (h, C) rows <- (H, C) rows
            (p + "mlp.fc2.weight", p + "mlp.fc2.weight", 1),  # (C, h) columns <- (C, H) columns
        ]
    return pairs


def _neurons(weight: torch.Tensor, axis: int) -> torch.Tensor:
    return weight if axis == 0 else weight.T  # (neurons, features)


def _ridge_fit(target: torch.Tensor, basis: torch.Tensor, ridge: float) -> torch.Tensor:
    """argmin_I ||I @ basis − target||² + λ||I||², λ = ridge · mean squared singular value of `basis`.

    target (n_kb, d), basis (n_fm, d) -> I (n_kb, n_fm); solved in float64 through the smaller Gram matrix."""
    t, b = target.double(), basis.double()
    n_fm, d = b.shape
    lam = ridge * b.square().sum() / min(n_fm, d)
    if d <= n_fm:  # I = T (BᵀB + λ)⁻¹ Bᵀ
        x = torch.linalg.solve(b.T @ b + lam * torch.eye(d, dtype=b.dtype, device=b.device), t.T)  # (d, n_kb)
        return (b @ x).T
    # I = T Bᵀ (BBᵀ + λ)⁻¹
    y = torch.linalg.solve(b @ b.T + lam * torch.eye(n_fm, dtype=b.dtype, device=b.device), b @ t.T)  # (n_fm, n_kb)
    return y.T


def _weights(model: nn.Module, names: Sequence[str], role: str) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"the {role} has no parameter {missing[0]!r}; expected a knowledge base and its fm")
    return {n: params[n] for n in names}


@dataclass
class NeuronIndex:
    """BlockTrainer's neuron index: every kb neuron (a row or column of a kb weight) as a weighted sum of the
    corresponding fm weight's neurons, `entries` keyed by the kb weight name.

    The original learns each matrix I by SGD on ||Σ_j I[i, j]·W_fm[j] − W_kb[i]||², jointly with the gates; `fit`
    solves that loss in closed form (ridge least squares) for the final kb, its exact minimiser up to the ridge."""

    entries: dict[str, IndexEntry]

    @classmethod
    def fit(cls, kb: VisionTransformer, fm: VisionTransformer, ridge: float = 1e-3) -> NeuronIndex:
        """The index of `kb` over `fm`; `ridge` is relative to the mean squared singular value of each fm weight."""
        pairs = _index_pairs(len(kb.blocks))
        kb_w = _weights(kb, [k for k, _, _ in pairs], "kb")
        fm_w = _weights(fm, [f for _, f, _ in pairs], "fm")
        entries = {}
        for kb_name, fm_name, axis in pairs:
            target, basis = _neurons(kb_w[kb_name].detach(), axis), _neurons(fm_w[fm_name].detach(), axis)
            if target.shape[1] != basis.shape[1]:
                raise ValueError(f"{kb_name} {tuple(kb_w[kb_name].shape)} and {fm_name} do not share axis {1 - axis}")
            matrix = _ridge_fit(target, basis.to(target), ridge).to(fm_w[fm_name])
            entries[kb_name] = IndexEntry(fm_name, axis, matrix)
        return cls(entries)

    def reconstruct(self, kb_name: str, fm: VisionTransformer) -> torch.Tensor:
        """The kb weight `kb_name` as the index reads it from the fm: I @ W_fm (axis 0) or W_fm @ Iᵀ (axis 1)."""
        entry = self.entries[kb_name]
        w_fm = fm.get_parameter(entry.fm_name).detach()
        return entry.matrix @ w_fm if entry.axis == 0 else w_fm @ entry.matrix.T

    def residual(self, kb: VisionTransformer, fm: VisionTransformer) -> dict[str, float]:
        """||recon − W_kb||_F / ||W_kb||_F per entry."""
        out = {}
        for name in self.entries:
            w_kb = kb.get_parameter(name).detach()
            out[name] = float((self.reconstruct(name, fm).to(w_kb) - w_kb).norm() / w_kb.norm())
        return out

    def project_to_fm(self, fm: VisionTransformer, deltas: dict[str, torch.Tensor], alpha: float = 0.1) -> None:
        """In place: W_fm += α·Iᵀ @ ΔW_kb (axis 0) or α·ΔW_kb @ I (axis 1); deltas without an entry are ignored."""
        with torch.no_grad():
            for name, delta in deltas.items():
                entry = self.entries.get(name)
                if entry is None:
                    continue
                w_fm = fm.get_parameter(entry.fm_name)
                delta = delta.to(entry.matrix)
                update = entry.matrix.T @ delta if entry.axis == 0 else delta @ entry.matrix  # fm's shape
                w_fm.add_(update.to(w_fm), alpha=alpha)

    def pull_kb(self, kb: VisionTransformer, fm: VisionTransformer, alpha: float = 0.1) -> None:
        """In place: W_kb ← α·recon(W_fm) + (1 − α)·W_kb (BlockTrainer's fm-to-kb feedback)."""
        with torch.no_grad():
            for name in self.entries:
                w_kb = kb.get_parameter(name)
                w_kb.lerp_(self.reconstruct(name, fm).to(w_kb), alpha)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{kb weight name: index matrix}, flat and contiguous, so it saves with safetensors."""
        return {name: entry.matrix.detach().contiguous() for name, entry in self.entries.items()}

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], kb: VisionTransformer, fm: VisionTransformer
    ) -> NeuronIndex:
        """The index saved by `state_dict`; the fm names and axes follow from the kb's structure."""
        pairs = _index_pairs(len(kb.blocks))
        if set(state) != {k for k, _, _ in pairs}:
            raise ValueError("the index state does not match this kb's weights; was it fitted for another kb?")
        kb_w = _weights(kb, [k for k, _, _ in pairs], "kb")
        fm_w = _weights(fm, [f for _, f, _ in pairs], "fm")
        entries = {}
        for kb_name, fm_name, axis in pairs:
            expected = (kb_w[kb_name].shape[axis], fm_w[fm_name].shape[axis])
            if tuple(state[kb_name].shape) != expected:
                raise ValueError(f"index for {kb_name} has shape {tuple(state[kb_name].shape)}, expected {expected}")
            entries[kb_name] = IndexEntry(fm_name, axis, state[kb_name].to(fm_w[fm_name]))
        return cls(entries)
