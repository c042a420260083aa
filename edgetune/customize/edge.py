"""ACME's edge stage (Dai et al., ICDCS 2025; docs/acme.md#edge-backbone-selection-pfg and #edge-header-search):
pick the sub-backbone (width, depth) by "PFG", the Pareto-Front-Grid, under a model-size constraint
(`src/eval_PFG.py`), then search a CNN header on its tokens with ENAS micro search (`src/train_search.py`,
`micro_controller.py`, `micro_child.py`).

Departures from the original code, deliberate:
* the header search has a parameter budget (`max_params`), absent in ACME: the controller's samples are drawn
  again until they fit, so an over-budget DAG is never trained, rewarded or returned;
* the header search runs on precomputed features of a frozen sub-backbone (ACME's child updates also changed the
  ViT), and picks its arch on the reward split (ACME picked `best_dag` on the test set);
* selection time is measured over the whole selection of every method (ACME timed PFG over its final sort only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgetune.customize.heads import OPS, CellArch, SharedCellHeader, header_params
from edgetune.progress import progress as progress_bar

# ------------------------------------------------------------------ PFG data (docs/acme.md#edge-backbone-selection-pfg)
# ACME's measured accuracy of the DynaViT sub-backbones with a linear CLS head, keyed (width, depth) here;
# `eval_PFG.py` lists the same 16 points as (depth, width, accuracy).
ACME_LINEAR_ACCURACY: dict[tuple[float, float], float] = {
    (1.0, 1.0): 0.9207, (0.75, 1.0): 0.906, (0.5, 1.0): 0.8677, (0.25, 1.0): 0.7054,
    (1.0, 0.75): 0.8955, (0.75, 0.75): 0.8723, (0.5, 0.75): 0.8075, (0.25, 0.75): 0.6206,
    (1.0, 0.5): 0.7921, (0.75, 0.5): 0.7337, (0.5, 0.5): 0.6401, (0.25, 0.5): 0.4236,
    (1.0, 0.25): 0.4381, (0.75, 0.25): 0.399, (0.5, 0.25): 0.3375, (0.25, 0.25): 0.2262,
}  # fmt: skip


def acme_size_proxy(width: float, depth: float) -> float:
    """ACME's "model size": int(12·w)·768 + int(12·d)·3,060,000 — a crude proxy in which depth dominates."""
    return int(12 * width) * 768 + int(12 * depth) * 3_060_000


# ---------------------------------------------------------------- PFG models (docs/acme.md#edge-backbone-selection-pfg)
def quadratic_features(width: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(..., 6) degree-2 monomials of (w, d): 1, w, d, w², w·d, d² (sklearn's PolynomialFeatures(2))."""
    return np.stack([np.ones_like(width), width, depth, width * width, width * depth, depth * depth], axis=-1)


def fit_accuracy_surface(points: Mapping[tuple[float, float], float]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """ACME's `fit_and_predict_accuracy`: a degree-2 polynomial in (width, depth) fitted by least squares to measured
    accuracies `{(w, d): acc}`; the returned surface(w, d) is clipped to [0, 1] as in ACME."""
    if len(points) < 6:
        raise ValueError(f"a degree-2 surface has 6 coefficients; got {len(points)} measured points")
    wd = np.array(list(points), dtype=float)  # (n, 2)
    acc = np.array(list(points.values()), dtype=float)  # (n,)
    coef, *_ = np.linalg.lstsq(quadratic_features(wd[:, 0], wd[:, 1]), acc, rcond=None)

    def surface(width, depth) -> np.ndarray:
        features = quadratic_features(np.asarray(width, dtype=float), np.asarray(depth, dtype=float))
        return np.clip(features @ coef, 0.0, 1.0)

    return surface


def candidate_grid(widths: Sequence[float] | None = None, depths: Sequence[float] | None = None):
    """Every (w, d) of widths × depths as two flat arrays, width-major; both default to ACME's linspace(0, 1, 20)."""
    widths = np.linspace(0, 1, 20) if widths is None else np.asarray(widths, dtype=float)
    depths = np.linspace(0, 1, 20) if depths is None else np.asarray(depths, dtype=float)
    w, d = np.meshgrid(widths, depths, indexing="ij")
    return w.ravel(), d.ravel()


def unit_counts(width, depth, heads: int = 12, layers: int = 12, rounding: str = "round"):
    """(w_n, d_n): heads and layers a (w, d) sub-backbone keeps.

    "round" matches `edgetune.models.prune_width`; ACME truncates (`int(12 * w)`), which is "floor".
    """
    if rounding not in ("round", "floor"):
        raise ValueError(f"rounding={rounding!r}: expected 'round' or 'floor'")
    to_int = np.rint if rounding == "round" else np.floor
    return to_int(heads * np.asarray(width)).astype(int), to_int(layers * np.asarray(depth)).astype(int)


@dataclass(frozen=True)
class EnergyModel:
    """ACME's assumed device model (`calculate_energy_consumption`): with w_n heads and d_n layers,
    power P = G + ΔG·w_n·d_n + p·G^β, time T = L + ΔL·w_n·d_n, energy E = k·P·T. All constants are ACME's
    assumptions, not measurements."""

    G: float = 100.0
    dG: float = 10.0  # ΔG, per head·layer
    p: float = 128.0
    G_beta: float = 50.0  # G^β
    L: float = 1.0
    dL: float = 0.1  # ΔL, per head·layer
    k: float = 10.0  # epochs

    def latency(self, w_n, d_n) -> np.ndarray:
        return self.L + self.dL * np.asarray(w_n) * np.asarray(d_n)

    def energy(self, w_n, d_n) -> np.ndarray:
        power = self.G + self.dG * np.asarray(w_n) * np.asarray(d_n) + self.p * self.G_beta
        return self.k * power * self.latency(w_n, d_n)


def min_max(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x, dtype=float)


def candidate_table(
    points: Mapping[tuple[float, float], float],
    size: Callable[[float, float], float],
    widths: np.ndarray,
    depths: np.ndarray,
    *,
    heads: int = 12,
    layers: int = 12,
    rounding: str = "round",
    energy: EnergyModel | None = None,
) -> dict[str, np.ndarray]:
    """Every candidate's predicted accuracy and min–max normalized latency, energy and size (ACME's `combined_df`).

    `size(w, d)` gives the parameter count of the (w, d) sub-backbone; "params" keeps it unnormalized.
    """
    energy = energy or EnergyModel()
    w_n, d_n = unit_counts(widths, depths, heads, layers, rounding)
    params = np.array([size(float(w), float(d)) for w, d in zip(widths, depths, strict=True)], dtype=float)
    return {
        "width": widths,
        "depth": depths,
        "num_heads": w_n,
        "num_layers": d_n,
        "accuracy": fit_accuracy_surface(points)(widths, depths),
        "latency": min_max(energy.latency(w_n, d_n)),
        "energy": min_max(energy.energy(w_n, d_n)),
        "size": min_max(params),
        "params": params,
    }


# ---------------------------------------------------------------------------------------------- PFG selection
def grid_cells(objectives: np.ndarray, ideal, nadir, cells: int = 10, sigma: float = 1e-6) -> np.ndarray:
    """(n, m) int cell coordinates, ACME's `ceil((ideal − x + σ) / ((ideal − nadir + 2σ) / K))` per objective.

    An objective strictly between its nadir and ideal lands in 1..K. For a minimized objective (ideal 0, nadir 1),
    x = 0 gives cell 0 and x = 1 gives K + 1: as in ACME, those points fall outside every scanned cell.
    """
    ideal, nadir = np.asarray(ideal, dtype=float), np.asarray(nadir, dtype=float)
    step = (ideal - nadir + 2 * sigma) / cells
    return np.ceil((ideal - objectives + sigma) / step).astype(int)


def pareto_front_grid(objectives: np.ndarray, ideal=(1.0, 0.0, 0.0), nadir=(0.0, 1.0, 1.0), cells: int = 10):
    """ACME's "Pareto front": indices of, per occupied cell of the K^m grid, the point nearest the ideal point.

    `objectives` is (n, 3): (accuracy, normalized latency, normalized energy). Not a non-dominance filter: a
    dominated point survives when it is the best of its cell. Ties go to the lower index (pandas' idxmin).
    """
    cell = grid_cells(objectives, ideal, nadir, cells)  # (n, 3)
    dist = np.linalg.norm(objectives - np.asarray(ideal), axis=1)  # (n,)
    inside = np.all((cell >= 1) & (cell <= cells), axis=1)
    best: dict[tuple[int, ...], int] = {}
    for i in np.flatnonzero(inside):
        key = tuple(cell[i])
        if key not in best or dist[i] < dist[best[key]]:
            best[key] = int(i)
    return np.array([best[key] for key in sorted(best)], dtype=int)  # in ACME's (l, m, n) scan order


def tradeoff_score(accuracy, size, energy):
    """ACME's figure metric (`draw_experi/PFG.py`): acc − 0.5·(normalized size + normalized energy)."""
    return accuracy - 0.5 * (size + energy)


SELECTORS = ("pfg", "highest_accuracy", "largest", "random")


def selection_index(table: dict[str, np.ndarray], method: str, size_constraint: float, seed: int, cells: int) -> int:
    """The candidate `method` picks among those with normalized size ≤ `size_constraint` (ACME's selectors)."""
    fits = table["size"] <= size_constraint
    if method == "pfg":
        objectives = np.stack([table["accuracy"], table["latency"], table["energy"]], axis=1)  # (n, 3)
        pool = pareto_front_grid(objectives, cells=cells)
        pool = pool[fits[pool]]
    else:
        pool = np.flatnonzero(fits)
    if len(pool) == 0:
        raise ValueError(f"no {method!r} candidate has normalized size <= {size_constraint}; relax the constraint")
    if method in ("pfg", "highest_accuracy"):
        return int(pool[np.argmax(table["accuracy"][pool])])
    if method == "largest":
        return int(pool[np.argmax(table["size"][pool])])
    # equals pandas' `sample(n=1, random_state=seed)`, ACME's call: seed 0 reproduces its re-run
    return int(pool[np.random.RandomState(seed).permutation(len(pool))[0]])


@dataclass(frozen=True)
class BackboneChoice:
    """A selected sub-backbone: its ratios and unit counts, predicted accuracy, normalized size and energy, ACME's
    trade-off score, raw size (`size(w, d)`) and the selection's wall time in seconds."""

    method: str
    width: float
    depth: float
    num_heads: int
    num_layers: int
    accuracy: float
    size: float
    energy: float
    tradeoff: float
    params: float
    seconds: float


def select_backbone(
    points: Mapping[tuple[float, float], float],
    size: Callable[[float, float], float],
    *,
    size_constraint: float = 0.8,
    method: str = "pfg",
    seed: int = 0,
    widths: Sequence[float] | None = None,
    depths: Sequence[float] | None = None,
    heads: int = 12,
    layers: int = 12,
    rounding: str = "round",
    energy: EnergyModel | None = None,
    cells: int = 10,
) -> BackboneChoice:
    """ACME's backbone selection (docs/acme.md#edge-backbone-selection-pfg): fit the accuracy surface to measured
    `{(w, d): acc}`, model size and energy over the widths × depths grid, and pick by `method`:

    "pfg": the most accurate point of the Pareto-Front-Grid (K = `cells` per objective over accuracy, latency and
    energy) within the size constraint; "highest_accuracy", "largest" (normalized size) and "random": ACME's
    comparison selectors, all under the same constraint. `rounding="floor"` reproduces ACME's unit counts.
    """
    if method not in SELECTORS:
        raise ValueError(f"method={method!r}: expected one of {SELECTORS}")
    w, d = candidate_grid(widths, depths)
    table = candidate_table(points, size, w, d, heads=heads, layers=layers, rounding=rounding, energy=energy)
    start = time.perf_counter()
    i = selection_index(table, method, size_constraint, seed, cells)
    seconds = time.perf_counter() - start
    acc, sz, en = (float(table[k][i]) for k in ("accuracy", "size", "energy"))
    return BackboneChoice(
        method, float(w[i]), float(d[i]), int(table["num_heads"][i]), int(table["num_layers"][i]),
        acc, sz, en, float(tradeoff_score(acc, sz, en)), float(table["params"][i]), seconds,
    )  # fmt: skip


# ------------------------------------------------------------------------- controller (docs/acme.md#edge-header-search)
def draw_choice(logits: torch.Tensor, generator, forced: int | None = None) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Sample one index from (1, n) logits, or take `forced`: (index, its log-probability, the entropy, detached)."""
    log_p = F.log_softmax(logits, dim=-1)  # (1, n)
    index = int(torch.multinomial(log_p.exp(), 1, generator=generator)) if forced is None else forced
    return index, log_p[0, index], -(log_p.exp() * log_p).sum().detach()


class Controller(nn.Module):
    """ACME's ENAS micro controller (`micro_controller.py`): an LSTMCell that, for every node, picks input a and
    input b (attention over the states' anchors), then op a and op b.

    Input logits: tanh_constant·tanh(attention / temperature). Op logits: (tanh_constant / op_tanh_reduce)·
    tanh((W h + b_soft) / temperature) + (0.25, 0.25, −0.25, …), with the learnable b_soft starting at 10 on the
    two separable convs — ACME's and ENAS's constants. ACME's LSTM has 100 units; here `hidden`. The controller
    is tiny and runs on the CPU, with the CPU `generator` it samples from.
    """

    def __init__(
        self,
        num_nodes: int,
        hidden: int = 64,
        *,
        temperature: float = 5.0,
        tanh_constant: float = 1.1,
        op_tanh_reduce: float = 2.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_nodes, self.hidden = num_nodes, hidden
        self.temperature, self.tanh_constant, self.op_tanh = temperature, tanh_constant, tanh_constant / op_tanh_reduce
        self.embed = nn.Embedding(len(OPS) + 1, hidden)  # row 0: "start", row 1 + o: op o was chosen
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.w_soft = nn.Linear(hidden, len(OPS), bias=False)
        self.w_attn_1 = nn.Linear(hidden, hidden, bias=False)
        self.w_attn_2 = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        for param in self.parameters():
            nn.init.uniform_(param, -0.1, 0.1, generator=generator)
        self.b_soft = nn.Parameter(torch.tensor([10.0, 10.0] + [0.0] * (len(OPS) - 2)))
        self.register_buffer("b_fixed", torch.tensor([0.25, 0.25] + [-0.25] * (len(OPS) - 2)))

    def sample(
        self, generator: torch.Generator | None = None, arch: CellArch | None = None
    ) -> tuple[CellArch, torch.Tensor, torch.Tensor]:
        """One cell: (CellArch, summed log-probability of the 4·num_nodes decisions, summed entropy).

        Given `arch`, its decisions are taken instead of sampled (teacher forcing), to score a known cell.
        """
        if arch is not None and arch.num_nodes != self.num_nodes:
            raise ValueError(f"arch has {arch.num_nodes} nodes; this controller samples {self.num_nodes}")
        forced = [(a, b, OPS.index(oa), OPS.index(ob)) for a, oa, b, ob in arch.nodes] if arch else None
        h = c = torch.zeros(1, self.hidden)
        start = self.embed.weight[:1]  # (1, hidden)
        anchors, keys, x = [], [], start
        for _ in range(2):  # the cell's two inputs: zero anchors, as in ENAS
            h, c = self.lstm(x, (h, c))
            anchors.append(torch.zeros_like(h))
            keys.append(self.w_attn_1(h))
        nodes, log_probs, entropies = [], [], []
        for i in range(self.num_nodes):
            picks = []
            for _ in range(2):  # inputs a, b
                h, c = self.lstm(x, (h, c))
                attention = self.v_attn(torch.tanh(torch.cat(keys) + self.w_attn_2(h))).view(1, -1)  # (1, states)
                logits = self.tanh_constant * torch.tanh(attention / self.temperature)
                s, lp, ent = draw_choice(logits, generator, forced[i][len(picks)] if forced else None)
                picks.append(s)
                log_probs.append(lp)
                entropies.append(ent)
                x = anchors[s]
            for _ in range(2):  # ops a, b
                h, c = self.lstm(x, (h, c))
                logits = self.op_tanh * torch.tanh((self.w_soft(h) + self.b_soft) / self.temperature) + self.b_fixed
                o, lp, ent = draw_choice(logits, generator, forced[i][len(picks)] if forced else None)
                picks.append(o)
                log_probs.append(lp)
                entropies.append(ent)
                x = self.embed.weight[o + 1 : o + 2]
            h, c = self.lstm(x, (h, c))  # the node's anchor
            anchors.append(h)
            keys.append(self.w_attn_1(h))
            x = start
            nodes.append((picks[0], OPS[picks[2]], picks[1], OPS[picks[3]]))
        return CellArch(tuple(nodes)), torch.stack(log_probs).sum(), torch.stack(entropies).sum()


# ---------------------------------------------------------------------------------------------- header search
def smallest_arch(num_nodes: int) -> CellArch:
    """The cheapest DAG of the space: no weighted op, one loose end (node i reads states i and i + 1)."""
    return CellArch(tuple((i, "identity", i + 1, "identity") for i in range(num_nodes)))


def sample_within(
    controller: Controller, cost: Callable[[CellArch], int], max_params: int, generator, max_tries: int = 1000
) -> tuple[CellArch, int]:
    """Draw from the controller until a DAG has `cost(arch) <= max_params`: (arch, number of draws rejected).

    This samples the controller's distribution restricted to the budget; REINFORCE on `controller.sample(arch=arch)`
    then omits the gradient of the log of the in-budget mass, a term the moving-average baseline makes vanish in
    expectation. Rewarding over-budget DAGs 0 instead would teach nothing while the baseline is still 0, and ENAS's
    op bias (b_soft = 10 on the separable convs) makes most early samples large.
    """
    with torch.no_grad():
        for rejected in range(max_tries):
            arch = controller.sample(generator)[0]
            if cost(arch) <= max_params:
                return arch, rejected
    raise RuntimeError(f"no DAG within max_params={max_params} in {max_tries} draws; raise max_params")


def draw_rows(feats: torch.Tensor, labels: torch.Tensor, size: int, generator: torch.Generator, device):
    """A batch of `size` rows drawn without replacement (all rows if fewer) by a CPU generator, moved to `device`."""
    idx = torch.randperm(len(feats), generator=generator)[:size]
    return feats[idx].to(device), labels[idx].to(device)


@torch.no_grad()
def shared_accuracy(shared: SharedCellHeader, arch: CellArch, feats, labels, device, batch_size: int = 256) -> float:
    """Top-1 accuracy of the shared header under `arch`, in eval mode."""
    shared.eval()
    correct = 0
    for i in range(0, len(feats), batch_size):
        logits = shared(feats[i : i + batch_size].to(device), arch)  # (b, K)
        correct += (logits.argmax(-1).cpu() == labels[i : i + batch_size].cpu()).sum().item()
    return correct / len(feats)


@dataclass(frozen=True)
class SearchResult:
    """The searched header: `arch` (within budget), its `params`, its reward-set `accuracy` under the shared
    weights; per controller step the `rewards` and the `sampled_params` of the rewarded DAG; how many over-budget
    draws were `rejected` in all; wall `seconds`; and the trained `shared` header
    (`CellHeader.from_shared(result.shared, result.arch)` warm-starts the final training)."""

    arch: CellArch
    params: int
    accuracy: float
    rewards: list[float]
    sampled_params: list[int]
    rejected: int
    seconds: float
    shared: SharedCellHeader


def search_header(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    reward_feats: torch.Tensor,
    reward_labels: torch.Tensor,
    *,
    num_classes: int,
    embed_dim: int,
    grid: int,
    num_nodes: int = 2,
    channels: int = 32,
    layers: int = 2,
    max_params: int,
    steps: int = 100,
    child_lr: float = 0.05,
    controller_lr: float = 0.0025,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    child_batches: int = 2,
    reward_batch_size: int = 128,
    entropy_weight: float = 1e-4,
    baseline_decay: float = 0.99,
    final_candidates: int = 20,
    progress: bool = True,
) -> SearchResult:
    """ACME's ENAS header search (docs/acme.md#edge-header-search) on features (B, N, C) of a frozen sub-backbone,
    under a parameter budget.

    Each step: `child_batches` minibatches of child training (SGD, momentum 0.9, weight decay 1e-4, cosine lr from
    `child_lr`, grad-norm clip 5), each on a DAG sampled from the controller; then one REINFORCE update of the
    controller (Adam, betas (0.1, 0.999), eps 1e-3) with reward = accuracy on a reward batch + `entropy_weight`·
    entropy and a moving-average baseline (decay `baseline_decay`). Budget: every sample is redrawn until its
    `header_params` is at most `max_params` (`sample_within`). At the end the last `final_candidates` distinct DAGs
    the controller was rewarded for are scored on the whole reward set with the final shared weights, and the best
    is returned (ties: the earliest).

    The shared header runs without dropout (dropout draws from the global RNG): `seed` alone fixes the result.
    """
    dims = (embed_dim, grid, num_classes)

    def cost(arch: CellArch) -> int:
        return header_params(*dims, arch, channels, layers)

    if max_params < cost(smallest_arch(num_nodes)):
        raise ValueError(f"max_params={max_params} is below the smallest header of this space "
                         f"({cost(smallest_arch(num_nodes))}); raise it or lower channels/layers")  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    shared = SharedCellHeader(*dims, num_nodes, channels, layers, dropout=0.0, generator=gen).to(device)
    controller = Controller(num_nodes, generator=gen)
    gates = {id(g) for g in shared.channel_gates()}  # masks for the device stage: not trained here
    weights = [p for p in shared.parameters() if id(p) not in gates]
    child_opt = torch.optim.SGD(weights, lr=child_lr, momentum=0.9, weight_decay=1e-4)
    controller_opt = torch.optim.Adam(controller.parameters(), lr=controller_lr, betas=(0.1, 0.999), eps=1e-3)
    baseline, rewards, sampled_params, rewarded, rejected = 0.0, [], [], [], 0
    start = time.perf_counter()
    for step in progress_bar(range(steps), desc="header search", mininterval=2, disable=not progress):
        for group in child_opt.param_groups:  # cosine from child_lr to child_lr / 200 (ACME: 0.1 → 5e-4)
            group["lr"] = child_lr * (0.005 + 0.995 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        for _ in range(child_batches):  # child phase: shared weights, one sampled DAG per minibatch
            arch, skipped = sample_within(controller, cost, max_params, gen)
            x, y = draw_rows(train_feats, train_labels, batch_size, gen, device)
            shared.train()
            loss = F.cross_entropy(shared(x, arch), y)
            child_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(weights, 5.0)
            child_opt.step()
            rejected += skipped

        arch, skipped = sample_within(controller, cost, max_params, gen)  # controller phase: REINFORCE
        _, log_prob, entropy = controller.sample(arch=arch)  # its log-probability, with gradient
        x, y = draw_rows(reward_feats, reward_labels, reward_batch_size, gen, device)
        reward = shared_accuracy(shared, arch, x, y, device) + entropy_weight * float(entropy)
        baseline = baseline_decay * baseline + (1 - baseline_decay) * reward  # updated first, as in ENAS
        controller_opt.zero_grad(set_to_none=True)
        (-log_prob * (reward - baseline)).backward()
        controller_opt.step()
        rewards.append(reward)
        sampled_params.append(cost(arch))
        rewarded.append(arch)
        rejected += skipped

    candidates = list(dict.fromkeys(reversed(rewarded)))[:final_candidates][::-1]  # latest distinct, oldest first
    scores = [shared_accuracy(shared, a, reward_feats, reward_labels, device) for a in candidates]
    best = candidates[int(np.argmax(scores))]
    assert cost(best) <= max_params, f"returned arch has {cost(best)} > max_params={max_params} parameters"
    seconds = time.perf_counter() - start
    return SearchResult(best, cost(best), max(scores), rewards, sampled_params, rejected, seconds, shared)
