"""ACME's device stage: fine-grained personalization of the header by Taylor channel pruning with importances
aggregated at the edge (ACME, ICDCS 2025; docs/acme.md#device-personalized-pruning; original code `src/third_part/`).

Each round, each device trains its own header locally and accumulates the first-order Taylor importance of every
gated header channel (Molchanov et al., CVPR 2019, "method 22"). The device sends the importance up to the edge.
The edge mixes the importances of all devices and sends each device its own mix. The device momentum-averages what
it receives and zeroes the gates of its least important channels. There are four ways to mix:
    alone   a device's own importance (nothing is sent)
    avg     I = Σ_i (n_i / N) · I_i, the same for every device (FedAvg-style)
    js/emd  I_k = Σ_i W[k, i] · I_i, with W from the similarity of the devices' feature distributions (ACME)
    none    local training only, with no pruning (ACME's "wo_pruning" reference)
Only importances move. Weights are never averaged, and no raw data leaves a device, except for the one-off
feature statistics that W needs.

Departures from the original, chosen to fit the budget:
- The backbone is frozen, and features are precomputed once per device. ACME's optimizer also trained each device's
  own copy of the backbone. ACME's similarity features came from the full-width, full-depth backbone; here they
  come from whatever backbone produced the features that are passed in.
- Importances are the plain mean over the round's batches. ACME's `add_criteria` returns a running sum, and the
  client sums those returns, which weights early batches more (`pruning_engine.py`, `distributed/client.py`).
- Exactly `n` new channels are pruned per round. ACME prunes every channel at or below a threshold, so ties can
  prune more.
- The learning rate is constant. ACME's ×0.1 decay every 10 local epochs never fires with one local epoch per round.
- JS compares the per-dimension mean of the clamped CLS features (C values), not the 200×C flattened matrix.
  The flattened form pairs sample i of one device with sample i of another, which depends on sample order.
  ACME's `batchmean` also divides by 200, which makes W even flatter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance
from torch import nn

from edgetune.customize.comm import Network, device_tier
from edgetune.data.partition import LABEL_GROUP_SETTINGS, label_group_split
from edgetune.training import derive_seed, seeded_rng

METHODS = ("none", "alone", "avg", "js", "emd")
METRICS = ("emd", "js")
JS_EPS = 1e-6  # ACME adds 1e-6 to each normalized distribution before the logs (distributed_prune.py JS_distance)

Importance = list[torch.Tensor]  # one (C_l,) vector per gate vector of a header


# ---------------------------------------------------------------------------------------------- devices and data
@dataclass(frozen=True)
class DeviceSplit:
    """Indices into the shared sample pool: a device's local training and local test samples."""

    train: torch.Tensor
    test: torch.Tensor


@dataclass(frozen=True)
class DeviceData:
    """A device's precomputed backbone features (n, N, C) and labels (n,), for local training and local testing."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def make_devices(
    labels: torch.Tensor,
    setting: str,
    num_devices: int = 5,
    *,
    fraction: float = 0.1,
    test_share: float = 0.2,
    seed: int = 0,
) -> list[DeviceSplit]:
    """ACME's label-group devices (IID/C2/C3/C4), each split per class into local train and test sets (80/20).

    ACME draws `fraction` of each of a client's classes from the training set, and 20% of them from the test set.
    Here a device's draw from one pool is split per class, so that every class has test samples. Devices beyond
    the 5 of a setting repeat its label lists with fresh draws (a seed derived per draw): device k uses list k mod 5.
    The draws are independent, so devices overlap (as in ACME). A sample can be in one device's training set and
    in another device's test set.
    """
    if setting not in LABEL_GROUP_SETTINGS:
        raise ValueError(f"unknown label-group setting {setting!r}; expected one of {list(LABEL_GROUP_SETTINGS)}")
    if num_devices < 1 or not 0 < test_share < 1:
        raise ValueError(f"need num_devices >= 1 and 0 < test_share < 1, got {num_devices}, {test_share}")
    per_draw = len(LABEL_GROUP_SETTINGS[setting])  # 5 clients in every ACME setting
    draws = [
        label_group_split(labels, setting, fraction, derive_seed(seed, "label groups", r))
        for r in range(math.ceil(num_devices / per_draw))
    ]
    pools = [idx for draw in draws for idx in draw][:num_devices]
    g = torch.Generator().manual_seed(seed)
    return [_split_per_class(labels, idx, test_share, g) for idx in pools]


def _split_per_class(labels: torch.Tensor, idx: torch.Tensor, test_share: float, g: torch.Generator) -> DeviceSplit:
    train, test = [], []
    for c in torch.unique(labels[idx]):
        own = idx[labels[idx] == c]
        own = own[torch.randperm(len(own), generator=g)]
        k = round(test_share * len(own)) if len(own) > 1 else 0  # a lone sample stays in training
        test.append(own[:k])
        train.append(own[k:])
    return DeviceSplit(torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values)


def device_data(features: torch.Tensor, labels: torch.Tensor, splits: list[DeviceSplit]) -> list[DeviceData]:
    """Index the pool's precomputed features (M, N, C) and labels (M,) by each device's split."""
    return [DeviceData(features[s.train], labels[s.train], features[s.test], labels[s.test]) for s in splits]


# ---------------------------------------------------------------------------------------------- local step
@dataclass(frozen=True)
class LocalResult:
    """One round of local training: mean loss, and Taylor importance averaged over the round's batches."""

    loss: float
    importance: Importance


def local_optimizer(
    header: nn.Module, lr: float = 1e-3, momentum: float = 0.5, weight_decay: float = 1e-4
) -> torch.optim.SGD:
    """ACME's local SGD (lr 1e-3, momentum 0.5, weight decay 1e-4) over every trainable parameter except the gates."""
    gates = {id(g) for g in header.channel_gates()}
    params = [p for p in header.parameters() if p.requires_grad and id(p) not in gates]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """`steps` shuffled batches, running through fresh permutations of the n samples as needed."""
    size = min(batch_size, n)
    epochs = math.ceil(steps * size / n)
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(epochs)])
    yield from order[: steps * size].view(steps, size)


def _add_taylor(gates: list[nn.Parameter], sums: Importance) -> None:
    """Add (g · ∂L/∂g)² per channel (method 22). A channel with a zero gate adds exactly 0."""
    for g, s in zip(gates, sums, strict=True):
        if g.grad is not None:
            s += (g.detach() * g.grad).pow(2)


def local_train(
    header: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    optimizer: torch.optim.Optimizer | None = None,
) -> LocalResult:
    """ACME's local step (`distributed/client.py`): CE loss, backward, Taylor importance read off the gate
    gradients of each batch, then an SGD step. The gates are not in the optimizer, so zero gates stay zero.

    Pass the device's persistent `optimizer` (ACME keeps one per client, with its momentum, across rounds).
    Without one, a fresh `local_optimizer(header, lr)` is used.
    """
    if steps < 1:
        raise ValueError(f"local_train needs steps >= 1, got {steps}")
    header.to(device).train()
    gates = header.channel_gates()
    optimizer = local_optimizer(header, lr) if optimizer is None else optimizer
    sums = [torch.zeros_like(g, requires_grad=False) for g in gates]
    total = 0.0
    for idx in _batches(len(labels), batch_size, steps, generator):
        x, y = feats[idx].to(device), labels[idx].to(device)  # (B, N, C), (B,)
        header.zero_grad(set_to_none=True)  # the gates too: the optimizer does not own them
        loss = F.cross_entropy(header(x), y)
        loss.backward()
        _add_taylor(gates, sums)
        optimizer.step()
        total += loss.item()
    return LocalResult(total / steps, [s / steps for s in sums])


def taylor_importance(
    header: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 64,
) -> Importance:
    """Per gate vector, the mean over batches of (g · ∂L/∂g)² per channel, without training (ACME's method 22).

    `data` is either a (features, labels) pair, which is read in order in batches of `batch_size`, or any
    iterable of (x, y) batches, such as a DataLoader. The header runs in eval mode (no dropout) and its mode is
    restored afterwards. Parameter gradients are left set.
    """
    if isinstance(data, tuple) and isinstance(data[0], torch.Tensor):
        feats, labels = data
        data = [(feats[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
    was_training, gates = header.training, header.channel_gates()
    header.to(device).eval()
    sums, batches = [torch.zeros_like(g, requires_grad=False) for g in gates], 0
    for x, y in data:
        header.zero_grad(set_to_none=True)
        F.cross_entropy(header(x.to(device)), y.to(device)).backward()
        _add_taylor(gates, sums)
        batches += 1
    header.train(was_training)
    return [s / max(batches, 1) for s in sums]


@torch.no_grad()
def evaluate(header: nn.Module, feats: torch.Tensor, labels: torch.Tensor, *, device="cpu", batch_size=256) -> float:
    """Top-1 accuracy on a device's own local test split (ACME's per-client `val_acc`)."""
    right = test_hits(header, feats, labels, device=device, batch_size=batch_size)
    return sum(right) / max(len(labels), 1)


@torch.no_grad()
def test_hits(header: nn.Module, feats: torch.Tensor, labels: torch.Tensor, *, device="cpu", batch_size=256):
    """Whether the header is right on each item of a device's test split (0/1, in order)."""
    header.to(device).eval()
    out: list[int] = []
    for i in range(0, len(labels), batch_size):
        logits = header(feats[i : i + batch_size].to(device))
        out += (logits.argmax(-1).cpu() == labels[i : i + batch_size].cpu()).int().tolist()
    return out


# ---------------------------------------------------------------------------------------------- similarity (edge)
def similarity_statistics(
    feats: torch.Tensor, metric: str, *, samples: int = 200, generator: torch.Generator | None = None
) -> torch.Tensor:
    """What a device uploads, once, so that the edge can compute W (ACME's `cal_distances` drew 200 images).

    `feats` are token features (n, N, C) or CLS features (n, C). At most `samples` CLS rows are kept. For
    "emd" the device sends those rows (s, C), whose values form the 1-D distribution. For "js" it sends only
    the per-dimension mean of the rows clamped at 0 (C,), which is all that the JS distance needs.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown similarity metric {metric!r}; expected one of {METRICS}")
    cls = (feats[:, 0] if feats.dim() == 3 else feats).float()  # (n, C)
    if len(cls) > samples:
        cls = cls[torch.randperm(len(cls), generator=generator)[:samples]]
    return cls if metric == "emd" else cls.clamp_min(0).mean(0)


def _js(p: torch.Tensor, q: torch.Tensor) -> float:
    """ACME's JS form: 0.5·[KL(M‖p) + KL(M‖q)] on p, q clamped at 0, normalized, then +1e-6 (not renormalized)."""
    p, q = (v.double().clamp_min(0) / v.double().clamp_min(0).sum().clamp_min(1e-12) + JS_EPS for v in (p, q))
    m = 0.5 * (p + q)
    return float(0.5 * ((m * (m.log() - p.log())).sum() + (m * (m.log() - q.log())).sum()))


def feature_distances(stats: list[torch.Tensor], metric: str) -> torch.Tensor:
    """(K, K) distances between the devices' uploaded statistics: EMD (scipy 1-D Wasserstein of all values) or JS."""
    k = len(stats)
    d = torch.zeros(k, k, dtype=torch.float64)
    flat = [s.detach().cpu().double().flatten().numpy() for s in stats]
    for i in range(k):
        for j in range(i + 1, k):  # both distances are symmetric
            d[i, j] = d[j, i] = wasserstein_distance(flat[i], flat[j]) if metric == "emd" else _js(stats[i], stats[j])
    return d


def similarity_matrix(distances: torch.Tensor) -> torch.Tensor:
    """ACME's S: s = 1 / (1 + d), symmetrized as sqrt(s ∘ sᵀ). Its diagonal is 1 and its entries lie in (0, 1]."""
    s = 1.0 / (1.0 + distances)
    return torch.sqrt(s * s.T)


def similarity_weights(stats: list[torch.Tensor], metric: str, *, temperature: float = 1.0) -> torch.Tensor:
    """The edge's mixing matrix W = row-softmax(S / temperature), a (K, K) float32 tensor whose rows sum to 1.

    temperature = 1 is ACME. Since S lies in (0, 1], W can then be at most e ≈ 2.7 times uniform. ACME's
    10-client W had rows between 0.085 and 0.121 (EMD) and between 0.0999 and 0.1002 (JS), which is nearly
    FedAvg (docs/acme.md#device-personalized-pruning). A small temperature (ACME's heatmap scaled S by 50, i.e.
    T = 0.02) makes W concentrate on similar devices.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = similarity_matrix(feature_distances(stats, metric))
    return torch.softmax(s / temperature, dim=1).float()


def feature_similarity(
    device_features: list[torch.Tensor],
    metric: str = "emd",
    *,
    samples: int = 200,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """W (K, K) straight from the devices' features: their statistics, then `similarity_weights`."""
    stats = [similarity_statistics(f, metric, samples=samples, generator=generator) for f in device_features]
    return similarity_weights(stats, metric, temperature=temperature)


# ---------------------------------------------------------------------------------------------- aggregate and prune
def aggregate(
    importances: list[Importance], weights: torch.Tensor | None = None, sizes: torch.Tensor | None = None
) -> list[Importance]:
    """Device k receives Σ_i weights[k, i] · I_i, for each gate vector.

    Pass eye(K) for Alone, W for ACME's personalized mix (`distance_importances`), or weights=None with the
    devices' training-set `sizes` for Avg (`average_importances`, n_i / N, the same for every device).
    """
    k = len(importances)
    if weights is None:
        if sizes is None:
            raise ValueError("aggregate needs either a (K, K) weight matrix or the devices' sizes for Avg")
        share = torch.as_tensor(sizes, dtype=torch.float32) / float(sum(sizes))
        weights = share.expand(k, k)
    stacked = [torch.stack(vectors) for vectors in zip(*importances, strict=True)]  # per gate vector: (K, C_l)
    mixed = [weights.to(s) @ s for s in stacked]  # per gate vector: (K, C_l)
    return [[m[i] for m in mixed] for i in range(k)]


def pruned_channels(header: nn.Module) -> int:
    """Number of channels whose gate is zero."""
    return sum(int((g == 0).sum()) for g in header.channel_gates())


@torch.no_grad()
def prune(header: nn.Module, importance: Importance, n_prune: int) -> int:
    """Zero the gates of the `n_prune` least important live channels, ranked across all gate vectors together.

    This is ACME's single global threshold (`compute_saliency`). Already pruned channels count as importance 0
    and are skipped, so exactly min(n_prune, live channels) new channels are pruned. Ties go to the earlier
    channel. Only the gates are zeroed, as in ACME, where the pruned "parameters" are the gate layers. A zero gate
    removes the channel's contribution, so the weights feeding it no longer matter. Returns the number pruned.
    """
    gates = header.channel_gates()
    live = torch.cat([g.flatten() != 0 for g in gates])  # (total,)
    scores = torch.cat([s.flatten().to(live.device) for s in importance]).masked_fill(~live, math.inf)
    n = min(n_prune, int(live.sum()))
    keep = torch.ones_like(live)
    keep[torch.sort(scores, stable=True).indices[:n]] = False
    for g, mask in zip(gates, keep.split([g.numel() for g in gates]), strict=True):
        g.mul_(mask.view_as(g).to(g.dtype))
    return n


# ---------------------------------------------------------------------------------------------- the round loop
@dataclass(frozen=True)
class Personalization:
    """Per-round accuracy of every device (`history`; round 0 = before any local training), the final round
    (`final`), and the mixing matrix the edge used (None for "none")."""

    history: pd.DataFrame
    final: pd.DataFrame
    weights: torch.Tensor | None


def _mixing_matrix(method, data, network, *, samples, temperature, generator) -> torch.Tensor | None:
    """The edge's (K, K) weights: eye for Alone, n_i / N rows for Avg, W from uploaded statistics for JS/EMD."""
    k = len(data)
    if method in ("none", "alone"):
        return None if method == "none" else torch.eye(k)
    if method == "avg":
        sizes = torch.tensor([len(d.train_y) for d in data], dtype=torch.float32)
        return (sizes / sizes.sum()).expand(k, k)
    stats = [similarity_statistics(d.train_x, method, samples=samples, generator=generator) for d in data]
    received = [network.send(s, device_tier(i), "edge", "similarity statistics") for i, s in enumerate(stats)]
    return similarity_weights(received, method, temperature=temperature)


def _exchange(method: str, importances: list[Importance], mix: torch.Tensor, network: Network) -> list[Importance]:
    """Devices send their importances up, and the edge mixes them and sends each device its own mix down."""
    if method == "alone":
        return importances  # Alone never leaves the device
    up = [network.send(imp, device_tier(k), "edge", "importance") for k, imp in enumerate(importances)]
    mixed = aggregate(up, mix)
    return [network.send(imp, "edge", device_tier(k), "personalized importance") for k, imp in enumerate(mixed)]


def _momentum(old: Importance | None, new: Importance, beta: float) -> Importance:
    """ACME's criteria momentum across rounds: beta · old + (1 − beta) · new, with the first round taken as is."""
    return new if old is None else [beta * o + (1 - beta) * n for o, n in zip(old, new, strict=True)]


def personalize(
    headers: list[nn.Module],
    device_data: list[DeviceData],
    *,
    method: str = "emd",
    rounds: int = 10,
    prune_per_round: int = 10,
    local_steps: int | None = None,
    network: Network,
    lr: float = 1e-3,
    batch_size: int = 64,
    pruning_momentum: float = 0.9,
    similarity_samples: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Personalization:
    """ACME's device stage (`distributed_prune.py main`). `headers[k]` is trained and pruned in place: pass copies.

    Each round: local training (with importance accumulated over the batches), then importances up, the edge's
    mix down, momentum, and pruning. Every transfer goes through `network.send`. Per round, "avg", "js" and "emd"
    send K × (total gate channels) float32 values up and the same amount down. "js" and "emd" also upload each
    device's similarity statistics once, before the first round. "none" and "alone" send nothing.
    `local_steps=None` is about one local epoch per round (ACME's `local_epochs = 1`): ceil(n_k / batch_size).
    The run is deterministic given `seed`: batches and samples come from one explicit Generator, and the global
    RNG (dropout) is seeded once and restored afterwards.
    """
    if method not in METHODS or len(headers) != len(device_data) or rounds < 1 or prune_per_round < 0:
        raise ValueError(
            f"personalize needs a method in {METHODS} (got {method!r}), one header per device ({len(headers)} "
            f"for {len(device_data)}), rounds >= 1 (got {rounds}) and prune_per_round >= 0 (got {prune_per_round})"
        )
    generator = torch.Generator().manual_seed(seed)
    local = {"lr": lr, "batch_size": batch_size, "generator": generator, "device": device}
    with seeded_rng(seed, device):
        mix = _mixing_matrix(
            method, device_data, network, samples=similarity_samples, temperature=temperature, generator=generator
        )
        optimizers = [local_optimizer(h.to(device), lr) for h in headers]
        running: list[Importance | None] = [None] * len(headers)
        rows = [
            _row(method, k, 0, h, d, device, math.nan)
            for k, (h, d) in enumerate(zip(headers, device_data, strict=True))
        ]
        for r in range(1, rounds + 1):
            results = []
            for h, d, opt in zip(headers, device_data, optimizers, strict=True):
                steps = local_steps or math.ceil(len(d.train_y) / batch_size)
                results.append(local_train(h, d.train_x, d.train_y, steps=steps, optimizer=opt, **local))
            if method != "none":
                received = _exchange(method, [res.importance for res in results], mix, network)
                for k, header in enumerate(headers):
                    running[k] = _momentum(running[k], received[k], pruning_momentum)
                    prune(header, running[k], prune_per_round)
            for k, (h, d, res) in enumerate(zip(headers, device_data, results, strict=True)):
                rows.append(_row(method, k, r, h, d, device, res.loss))
    history = pd.DataFrame(rows)
    final = history[history["round"] == rounds].drop(columns=["round", "train_loss"]).reset_index(drop=True)
    # which test items each device's final header gets right: what the ledger's intervals resample
    final.attrs["test_correct"] = [
        test_hits(h, d.test_x, d.test_y, device=device) for h, d in zip(headers, device_data, strict=True)
    ]
    return Personalization(history, final, mix)


def _row(method: str, k: int, r: int, header: nn.Module, data: DeviceData, device, loss: float) -> dict:
    return {
        "method": method,
        "device": k,
        "round": r,
        "accuracy": evaluate(header, data.test_x, data.test_y, device=device),
        "pruned_channels": pruned_channels(header),
        "train_loss": loss,
    }
