"""Headers for a frozen ViT sub-backbone: ACME's hand-made baselines and its searchable ENAS cell header.

ACME (Dai et al., ICDCS 2025), edge stage: the cloud ships a (width, depth) sub-backbone, the edge searches a small
CNN "header" on top of its tokens (docs/acme.md#edge-header-search), and devices prune the header's channels
(docs/acme.md#device-personalized-pruning). Every header maps features (B, N, C), N = 1 + g·g (CLS first, then the
g×g patch grid row-major, as timm's `forward_features` emits them), to logits (B, num_classes) and is built as
`Head(embed_dim, grid, num_classes, ...)`.

Headers whose channels devices may prune expose `channel_gates()`: 1-D parameters of ones multiplied into the
channel activations (a 0 removes the channel); they take gradients for Taylor importance, but are masks rather than
weights, so `count_parameters` and `header_params` leave them out.

The file reads: token helpers, the four baselines (docs/acme.md#hand-made-headers), the cell search space and its
op modules, the standalone `CellHeader`, the weight-sharing `SharedCellHeader` with extraction, and parameter
counting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------- tokens
def patch_grid(features: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, 1 + g·g, C) tokens → (B, C, g, g) patch map; the patch token r·g + c lands at spatial (r, c)."""
    b, n, c = features.shape
    if n != 1 + grid * grid:
        raise ValueError(f"features have {n} tokens; a {grid}x{grid} grid needs 1 + {grid}*{grid} = {1 + grid * grid}")
    return features[:, 1:].transpose(1, 2).reshape(b, c, grid, grid)  # (B, C, g, g)


# --------------------------------------------------------------------------- baselines (docs/acme.md#hand-made-headers)
class LinearHead(nn.Module):
    """ACME's "Linear-EE" (`ViTWithLinear`): CLS token → Linear."""

    def __init__(self, embed_dim: int, grid: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features[:, 0])  # (B, K)


class MLPHead(nn.Module):
    """ACME's "MLP-EE" (`ViTWithLayerNorm`): CLS token → LayerNorm (eps 1e-6) → Linear."""

    def __init__(self, embed_dim: int, grid: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(features[:, 0]))  # (B, K)


def mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MixerHead(nn.Module):
    """ACME's "Mixer-EE" (`ViTWithMixerBlock`): one MLP-Mixer block over all N tokens, then CLS → Linear.

    Token mixing (LayerNorm over channels, MLP across the N tokens, residual), then channel mixing (LayerNorm, MLP
    across channels, residual). ACME sizes both hidden layers 4·C (`token_mixer_hidden_dim = hidden_size * 4`).
    """

    def __init__(
        self,
        embed_dim: int,
        grid: int,
        num_classes: int,
        token_hidden: int | None = None,
        channel_hidden: int | None = None,
    ):
        super().__init__()
        tokens = 1 + grid * grid
        self.norm1 = nn.LayerNorm(embed_dim)
        self.token_mlp = mlp(tokens, token_hidden or 4 * embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.channel_mlp = mlp(embed_dim, channel_hidden or 4 * embed_dim)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features + self.token_mlp(self.norm1(features).transpose(1, 2)).transpose(1, 2)  # (B, N, C)
        x = x + self.channel_mlp(self.norm2(x))  # (B, N, C)
        return self.fc(x[:, 0])  # (B, K)


class CNNProjectionHead(nn.Module):
    """ACME's "CNN-Project-EE" (`ViTWithCNNProject`): CLS concatenated to every patch → conv3×3 to 16 channels →
    ELU → maxpool 2 → Linear.

    Departs from the original on purpose: ACME reshapes the patch tokens with a raw `.view(B, C, g, g)` of the
    (B, g·g, C) tensor, which scrambles channels and positions; here `patch_grid` transposes first, so the patch at
    grid (r, c) sits at spatial (r, c).
    """

    def __init__(self, embed_dim: int, grid: int, num_classes: int, conv_channels: int = 16):
        super().__init__()
        if grid < 2:
            raise ValueError(f"grid={grid}: the 2×2 max-pool needs a grid of at least 2")
        self.grid = grid
        self.conv = nn.Conv2d(2 * embed_dim, conv_channels, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(conv_channels * (grid // 2) ** 2, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        patches = patch_grid(features, self.grid)  # (B, C, g, g)
        cls = features[:, 0, :, None, None].expand_as(patches)  # (B, C, g, g)
        x = self.pool(F.elu(self.conv(torch.cat([cls, patches], dim=1))))  # (B, 16, g/2, g/2)
        return self.fc(x.flatten(1))  # (B, K)


# ----------------------------------------------------------------------- search space (docs/acme.md#edge-header-search)
# ENAS micro ops, in ACME's index order: separable 3×3, 5×5, average pool, max pool, separable "1×1", identity.
OPS = ("sep3", "sep5", "avg3", "max3", "sep1", "identity")
SEP_KERNEL = {"sep3": 3, "sep5": 5, "sep1": 1}


@dataclass(frozen=True)
class CellArch:
    """One ENAS normal cell: `nodes[i] = (input_a, op_a, input_b, op_b)`, node i = op_a(state a) + op_b(state b).

    States 0 and 1 are the cell's two inputs (the previous two layer outputs); node i is state i + 2 and may read any
    state before it. Ops are names from `OPS`.
    """

    nodes: tuple[tuple[int, str, int, str], ...]

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(tuple(node) for node in self.nodes))
        if not self.nodes:
            raise ValueError("a CellArch needs at least one node")
        for i, node in enumerate(self.nodes):
            check_node(i, node)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def loose_ends(self) -> tuple[int, ...]:
        """The states no node reads (cell inputs included, as in ENAS); the cell outputs their concatenation."""
        used = {node[0] for node in self.nodes} | {node[2] for node in self.nodes}
        return tuple(s for s in range(self.num_nodes + 2) if s not in used)

    def __str__(self) -> str:
        return " | ".join(f"{i + 2}={oa}({a})+{ob}({b})" for i, (a, oa, b, ob) in enumerate(self.nodes))


def check_node(i: int, node: tuple) -> None:
    """Raise a ValueError naming node `i` if it is not (input < i + 2, op in OPS, input < i + 2, op in OPS)."""
    if len(node) != 4:
        raise ValueError(f"node {i} {node!r}: expected (input_a, op_a, input_b, op_b)")
    for slot, state, op in (("a", node[0], node[1]), ("b", node[2], node[3])):
        if not isinstance(state, int) or not 0 <= state < i + 2:
            raise ValueError(
                f"node {i} {node!r}: input_{slot}={state!r} must be an int in [0, {i + 2}) "
                f"(the two cell inputs and the nodes before it)"
            )
        if op not in OPS:
            raise ValueError(f"node {i} {node!r}: op_{slot}={op!r} is not one of {OPS}")


def sep_conv(channels: int, kernel: int) -> nn.Sequential:
    """ENAS/ACME separable conv, applied twice: (ReLU → depthwise k×k → pointwise 1×1 → BN) × 2."""
    layers = []
    for _ in range(2):
        layers += [
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        ]
    return nn.Sequential(*layers)


def make_op(name: str, channels: int) -> nn.Module:
    """The module of op `name`; every op keeps (B, c, g, g)."""
    if name in SEP_KERNEL:
        return sep_conv(channels, SEP_KERNEL[name])
    return {"avg3": nn.AvgPool2d(3, 1, 1), "max3": nn.MaxPool2d(3, 1, 1), "identity": nn.Identity()}[name]


def op_params(name: str, channels: int) -> int:
    """Parameters of op `name`: 2 × (depthwise c·k² + pointwise c² + BN 2c) for a separable conv, else 0."""
    k = SEP_KERNEL.get(name)
    return 0 if k is None else 2 * (channels * k * k + channels * channels + 2 * channels)


def run_dag(arch: CellArch, states: list[torch.Tensor], op_at: Callable) -> torch.Tensor:
    """Run the cell DAG on its two inputs; `op_at(node, slot, input, op)` gives the module to apply.

    Returns the loose ends concatenated in state order: (B, L·c, g, g).
    """
    states = list(states)
    for i, (a, op_a, b, op_b) in enumerate(arch.nodes):
        states.append(op_at(i, 0, a, op_a)(states[a]) + op_at(i, 1, b, op_b)(states[b]))  # (B, c, g, g)
    return torch.cat([states[s] for s in arch.loose_ends()], dim=1)


def stack_forward(head: nn.Module, features: torch.Tensor, layer_fn: Callable) -> torch.Tensor:
    """The header body shared by `CellHeader` and `SharedCellHeader`; `layer_fn(layer, [prev, cur])` runs a layer.

    CLS is dropped, as in ACME (`hidden_state[:, 1:, :]`); the patch grid goes through the 1×1 stem, then every
    layer reads the previous two layer outputs (both the stem output for the first layer, as ACME's `[x, x]`).
    Each gate multiplies its layer's output channels.
    """
    x = head.stem(patch_grid(features, head.grid)) * head.gates[0].view(1, -1, 1, 1)  # (B, c, g, g)
    prev = cur = x
    for i, layer in enumerate(head.layers):
        prev, cur = cur, layer_fn(layer, [prev, cur]) * head.gates[i + 1].view(1, -1, 1, 1)
    pooled = F.relu(cur).mean(dim=(2, 3))  # (B, c)
    return head.fc(head.dropout(pooled))  # (B, K)


def init_weights(module: nn.Module, generator: torch.Generator | None) -> None:
    """Kaiming-normal conv and linear weights with zero biases (ACME's `_init_param`), drawn from `generator`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, SharedCellLayer):  # one (c_out, c_in) 1×1 kernel per state: fan-in c_in
            nn.init.normal_(m.combine_weight, std=math.sqrt(2 / m.channels), generator=generator)


def header_stem(embed_dim: int, channels: int, layers: int) -> tuple[nn.Sequential, nn.ParameterList]:
    """ACME's stem (1×1 conv without bias → BN) and the `layers + 1` channel gates."""
    stem = nn.Sequential(nn.Conv2d(embed_dim, channels, 1, bias=False), nn.BatchNorm2d(channels))
    gates = nn.ParameterList([nn.Parameter(torch.ones(channels)) for _ in range(layers + 1)])
    return stem, gates


# ---------------------------------------------------------------------------------------------- standalone header
class CellLayer(nn.Module):
    """One layer of a fixed cell: the DAG's ops, then loose ends → ReLU → 1×1 conv back to c → BN (ENAS)."""

    def __init__(self, arch: CellArch, channels: int):
        super().__init__()
        self.arch = arch
        self.ops = nn.ModuleList(
            nn.ModuleList([make_op(op_a, channels), make_op(op_b, channels)]) for _, op_a, _, op_b in arch.nodes
        )
        loose = len(arch.loose_ends())
        self.combine = nn.Sequential(
            nn.ReLU(), nn.Conv2d(loose * channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(run_dag(self.arch, states, lambda i, slot, _s, _o: self.ops[i][slot]))  # (B, c, g, g)


class CellHeader(nn.Module):
    """ACME's searched header (`ENASCNN` with a fixed DAG), docs/acme.md#edge-header-search.

    Patch grid (B, C, g, g) → stem 1×1 conv to `channels` + BN → `layers` layers of the same cell → ReLU → global
    average pool → dropout → Linear. A gate of `channels` ones follows the stem and every layer. As in ACME: CLS
    is dropped; a node is op_a(state a) + op_b(state b); a layer concatenates its unread states and maps them back
    to `channels` with ReLU → 1×1 conv → BN; a separable conv is (ReLU → depthwise → pointwise → BN) twice.

    Departures from the original: ACME's `child_num_layers = U` builds U + 2 layers, here `layers` is the count
    built; its dropout is `F.dropout2d(..., 0.1)` with the default `training=True`, so it also dropped channels at
    evaluation; here `nn.Dropout` follows train/eval mode. ACME's BNs use batch statistics only
    (`track_running_stats=False`); here they keep running statistics, so the header works in eval mode on any batch.
    """

    def __init__(
        self,
        embed_dim: int,
        grid: int,
        num_classes: int,
        arch: CellArch,
        channels: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.embed_dim, self.grid, self.num_classes, self.channels = embed_dim, grid, num_classes, channels
        self.arch = arch
        self.stem, self.gates = header_stem(embed_dim, channels, layers)
        self.layers = nn.ModuleList(CellLayer(arch, channels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self, generator)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return stack_forward(self, features, lambda layer, states: layer(states))  # (B, K)

    def channel_gates(self) -> list[nn.Parameter]:
        return list(self.gates)

    @classmethod
    def from_shared(cls, shared: SharedCellHeader, arch: CellArch, dropout: float = 0.1) -> CellHeader:
        """A standalone header holding the weights (and BN statistics) `shared` uses under `arch`."""
        scratch = torch.Generator().manual_seed(0)  # the weights are overwritten; keep the global RNG untouched
        dims = (shared.embed_dim, shared.grid, shared.num_classes, arch, shared.channels, len(shared.layers))
        head = cls(*dims, dropout=dropout, generator=scratch)
        ref = shared.fc.weight
        head.to(device=ref.device, dtype=ref.dtype)
        state = {k: v for k, v in shared.state_dict().items() if not k.startswith("layers.")}
        for i, layer in enumerate(shared.layers):
            state.update(layer.extract_state(arch, prefix=f"layers.{i}."))
        head.load_state_dict(state, strict=True)
        return head


# ---------------------------------------------------------------------------------------------- weight sharing
class SharedCellLayer(nn.Module):
    """Every candidate op for every (node, slot, input state), as ENAS shares them: `ops[i][slot][state][op]`.

    The output 1×1 conv keeps one (c, c) kernel per state (`combine_weight[s]`), and a sampled DAG uses the kernels
    of its loose ends. ACME instead `.view`s the selected rows of `final_conv` (num_states, c²) into (c, L·c),
    which hands a state a different slice of weights depending on how many loose ends the DAG has; here a state
    always owns the same kernel, so weights are truly shared.
    """

    def __init__(self, num_nodes: int, channels: int):
        super().__init__()
        self.num_nodes, self.channels = num_nodes, channels
        self.ops = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(nn.ModuleDict({op: make_op(op, channels) for op in OPS}) for _ in range(i + 2))
                for _ in range(2)
            )
            for i in range(num_nodes)
        )
        self.combine_weight = nn.Parameter(torch.empty(num_nodes + 2, channels, channels))  # (states, c_out, c_in)
        self.combine_bn = nn.BatchNorm2d(channels)

    def combine_kernel(self, arch: CellArch) -> torch.Tensor:
        """(c, L·c, 1, 1) kernel of the loose ends, in the order `run_dag` concatenates them."""
        w = self.combine_weight[list(arch.loose_ends())]  # (L, c_out, c_in)
        return w.permute(1, 0, 2).reshape(self.channels, -1, 1, 1)

    def forward(self, states: list[torch.Tensor], arch: CellArch) -> torch.Tensor:
        if arch.num_nodes != self.num_nodes:
            raise ValueError(f"arch has {arch.num_nodes} nodes; this shared header was built for {self.num_nodes}")
        cat = run_dag(arch, states, lambda i, slot, s, op: self.ops[i][slot][s][op])  # (B, L·c, g, g)
        return self.combine_bn(F.conv2d(F.relu(cat), self.combine_kernel(arch)))  # (B, c, g, g)

    def extract_state(self, arch: CellArch, prefix: str) -> dict[str, torch.Tensor]:
        """The state dict of a `CellLayer(arch)` holding the weights this layer uses under `arch`, under `prefix`."""
        state = {f"{prefix}combine.1.weight": self.combine_kernel(arch)}
        state.update({f"{prefix}combine.2.{k}": v for k, v in self.combine_bn.state_dict().items()})
        for i, (a, op_a, b, op_b) in enumerate(arch.nodes):
            for slot, (s, op) in enumerate(((a, op_a), (b, op_b))):
                chosen = self.ops[i][slot][s][op].state_dict()
                state.update({f"{prefix}ops.{i}.{slot}.{k}": v for k, v in chosen.items()})
        return {k: v.detach().clone() for k, v in state.items()}


class SharedCellHeader(nn.Module):
    """The ENAS weight-sharing header of ACME's search: `forward(features, arch)` runs the sampled DAG.

    Same stem, gates, pooling and classifier as `CellHeader`; `CellHeader.from_shared(shared, arch)` extracts the
    sub-network. BN running statistics of a shared op are averaged over the DAGs that used it.
    """

    def __init__(
        self,
        embed_dim: int,
        grid: int,
        num_classes: int,
        num_nodes: int,
        channels: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.embed_dim, self.grid, self.num_classes, self.channels = embed_dim, grid, num_classes, channels
        self.num_nodes = num_nodes
        self.stem, self.gates = header_stem(embed_dim, channels, layers)
        self.layers = nn.ModuleList(SharedCellLayer(num_nodes, channels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self, generator)

    def forward(self, features: torch.Tensor, arch: CellArch) -> torch.Tensor:
        return stack_forward(self, features, lambda layer, states: layer(states, arch))  # (B, K)

    def channel_gates(self) -> list[nn.Parameter]:
        return list(self.gates)


# ---------------------------------------------------------------------------------------------- parameter counts
def count_parameters(head: nn.Module) -> int:
    """Trainable parameters of a header, its channel gates left out (they are masks, not weights).

    Unlike `edgetune.runs.count_parameters`, which returns (total, trainable) of any model.
    """
    gates = {id(g) for g in head.channel_gates()} if hasattr(head, "channel_gates") else set()
    return sum(p.numel() for p in head.parameters() if p.requires_grad and id(p) not in gates)


def header_params(embed_dim: int, grid: int, num_classes: int, arch: CellArch, channels: int, layers: int) -> int:
    """Exact `count_parameters(CellHeader(embed_dim, grid, num_classes, arch, channels, layers))`, without building it.

    Stem C·c + BN 2c; per layer the ops' weights plus the output 1×1 conv (L·c)·c + BN 2c, L = loose ends; the
    classifier c·K + K. The grid does not enter: the header pools globally. This is what lets the search check
    its parameter budget before training anything.
    """
    cell = sum(op_params(op_a, channels) + op_params(op_b, channels) for _, op_a, _, op_b in arch.nodes)
    combine = len(arch.loose_ends()) * channels * channels + 2 * channels
    return embed_dim * channels + 2 * channels + layers * (cell + combine) + channels * num_classes + num_classes
