"""ACME's device stage and the communication ledger: Taylor importance, pruning, similarity weights, aggregation,
the round loop's exact byte counts, and the centralized-upload formula. Tiny CPU problems, seconds in all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetune.customize.comm import Network, centralized_bytes, direction, payload_bytes
from edgetune.customize.device import (
    METHODS,
    DeviceData,
    aggregate,
    feature_distances,
    feature_similarity,
    local_optimizer,
    local_train,
    make_devices,
    personalize,
    prune,
    similarity_matrix,
    similarity_statistics,
    taylor_importance,
)
from edgetune.data.partition import client_classes

C, TOKENS, CLASSES = 8, 5, 4  # feature width, CLS + 2×2 patch tokens, classes


class GatedHeader(nn.Module):
    """CLS → Linear → gate → ReLU → Linear → gate → ReLU → Linear: 6 + 4 = 10 prunable channels."""

    def __init__(self, width: int = C, hidden: tuple[int, int] = (6, 4), classes: int = CLASSES):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden[0]), nn.Linear(hidden[0], hidden[1])
        self.out = nn.Linear(hidden[1], classes)
        self.gate1, self.gate2 = nn.Parameter(torch.ones(hidden[0])), nn.Parameter(torch.ones(hidden[1]))

    def channel_gates(self) -> list[nn.Parameter]:
        return [self.gate1, self.gate2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, classes)
        h = F.relu(self.fc1(x[:, 0]) * self.gate1)
        return self.out(F.relu(self.fc2(h) * self.gate2))


class TwoChannel(nn.Module):
    """logits = (CLS ∘ g) Wᵀ + b with 2 channels, so the gate gradient can be written by hand."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Parameter(torch.tensor([1.0, 0.5]))
        self.out = nn.Linear(2, 3)

    def channel_gates(self) -> list[nn.Parameter]:
        return [self.gate]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x[:, 0] * self.gate)


def header(seed: int = 0) -> GatedHeader:
    torch.manual_seed(seed)  # test setup only, outside any loop under test
    return GatedHeader()


def toy_devices(k: int = 6, n: int = 40, seed: int = 0) -> list[DeviceData]:
    """Two groups of devices with different label sets ({0, 1} and {2, 3}), CLS = class mean + noise."""
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(CLASSES, C, generator=g)
    devices = []
    for d in range(k):
        group = torch.tensor([0, 1]) if d < k // 2 else torch.tensor([2, 3])
        y = group[torch.randint(0, 2, (n,), generator=g)]
        x = torch.randn(n, TOKENS, C, generator=g)
        x[:, 0] += means[y]
        cut = n * 4 // 5
        devices.append(DeviceData(x[:cut], y[:cut], x[cut:], y[cut:]))
    return devices


# ---------------------------------------------------------------------------------------------- comm
def test_state_dict_bytes_are_exact_and_follow_dtype():
    net, layer = Network(), nn.Linear(3, 4)  # 12 weights + 4 biases
    net.send(layer.state_dict(), "edge", "device:0", "header fp32")
    net.send(layer.half().state_dict(), "edge", "device:1", "header fp16")
    assert net.ledger()["bytes"].tolist() == [16 * 4, 16 * 2]
    assert payload_bytes([torch.zeros(2, dtype=torch.int64), 1.5, 3]) == 16 + 8 + 8


def test_directions_and_totals_group_devices():
    net = Network()
    net.send(torch.zeros(10), "cloud", "edge", "backbone")
    net.send(torch.zeros(3), "edge", "device:2", "mask")
    net.send(torch.zeros(5), "device:0", "edge", "importance")
    net.send(torch.zeros(5), "device:7", "edge", "importance")
    assert net.ledger()["direction"].tolist() == ["down", "down", "up", "up"]
    totals = net.totals().set_index(["src", "dst", "direction"])["bytes"]
    assert totals[("device", "edge", "up")] == 40 and totals[("cloud", "edge", "down")] == 40
    assert net.bytes("up") == 40 and net.bytes("down") == 52 and net.bytes(what="mask") == 12
    for src, dst in [("device:1", "device:2"), ("edge", "edge"), ("phone", "edge"), ("device:x", "edge")]:
        with pytest.raises(ValueError):
            direction(src, dst)


def test_received_copy_does_not_alias_the_sender():
    net, layer = Network(), nn.Linear(2, 2)
    sent = torch.ones(3)
    got = net.send({"v": sent, "n": 2}, "device:0", "edge", "x")
    state = net.send(layer.state_dict(), "edge", "device:0", "header")
    sent.add_(1)
    with torch.no_grad():
        layer.weight.zero_()
    assert torch.equal(got["v"], torch.ones(3)) and got["n"] == 2
    assert state["weight"].abs().sum() > 0


def test_centralized_bytes_formula():
    devices = [
        (torch.rand(10, 3, 32, 32), torch.zeros(10, dtype=torch.int64)),
        (torch.rand(5, 3, 32, 32), torch.zeros(5, dtype=torch.int64)),
    ]
    assert centralized_bytes(devices) == 15 * 3 * 32 * 32 * 1 + 15 * 8  # 8-bit pixels, int64 labels
    assert centralized_bytes(devices, pixel_bytes=None, label_bytes=1) == 15 * 3 * 32 * 32 * 4 + 15


# ---------------------------------------------------------------------------------------------- importance
def test_taylor_importance_matches_hand_computed_gate_gradient():
    torch.manual_seed(0)
    model = TwoChannel()
    batches = [(torch.randn(4, TOKENS, 2), torch.randint(0, 3, (4,))) for _ in range(2)]
    expected = torch.zeros(2)
    for x, y in batches:  # dL/dz = (softmax − onehot) / B;  dL/dg = Σ_b (dL/dz_b W) ∘ h_b
        h = x[:, 0]
        z = (h * model.gate.detach()) @ model.out.weight.detach().T + model.out.bias.detach()
        dz = (z.softmax(-1) - F.one_hot(y, 3)) / len(y)
        grad = (dz @ model.out.weight.detach() * h).sum(0)
        expected += (model.gate.detach() * grad) ** 2 / len(batches)
    (got,) = taylor_importance(model, batches)
    torch.testing.assert_close(got, expected)
    (again,) = taylor_importance(
        model, (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])), batch_size=4
    )
    torch.testing.assert_close(again, expected)


def test_zero_gate_has_zero_importance_and_stays_pruned():
    model, data = header(), toy_devices(k=1)[0]
    with torch.no_grad():
        model.gate1[2] = 0
    before = model.fc1.weight.detach().clone()
    gates = {id(g) for g in model.channel_gates()}
    assert not gates & {id(p) for group in local_optimizer(model).param_groups for p in group["params"]}
    result = local_train(
        model, data.train_x, data.train_y, steps=5, lr=0.1, batch_size=8, generator=torch.Generator().manual_seed(0)
    )
    assert result.importance[0][2] == 0 and result.importance[0].sum() > 0
    assert model.gate1[2] == 0 and torch.equal(model.gate1[[0, 1, 3, 4, 5]].detach(), torch.ones(5))
    assert not torch.equal(model.fc1.weight, before)


def test_prune_uses_one_global_threshold_and_skips_pruned_channels():
    model = header()
    importance = [torch.tensor([5.0, 1.0, 7.0, 3.0, 9.0, 2.0]), torch.tensor([0.5, 8.0, 4.0, 6.0])]
    assert prune(model, importance, 3) == 3  # the 3 lowest across both vectors: 0.5, 1, 2
    assert model.gate1.tolist() == [1, 0, 1, 1, 1, 0] and model.gate2.tolist() == [0, 1, 1, 1]
    assert prune(model, importance, 2) == 2  # pruned channels are skipped: next are 3 and 4
    assert model.gate1.tolist() == [1, 0, 1, 0, 1, 0] and model.gate2.tolist() == [0, 1, 0, 1]


# ---------------------------------------------------------------------------------------------- similarity
@pytest.mark.parametrize("metric", ["emd", "js"])
def test_similarity_is_symmetric_rows_sum_to_one_and_identical_devices_tie(metric):
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(30, TOKENS, C, generator=g) + shift for shift in (0.0, 0.5, 2.0))
    stats = [similarity_statistics(f, metric) for f in (a, b, c)]
    s = similarity_matrix(feature_distances(stats, metric))
    torch.testing.assert_close(s, s.T)
    assert torch.allclose(s.diagonal(), torch.ones(3, dtype=s.dtype))
    w = feature_similarity([a, a, c], metric)
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    torch.testing.assert_close(w[0], w[1])
    assert w[0, 0] == w[0, 1] and w[2, 0] == w[2, 1]


def test_emd_ranks_a_near_device_above_a_far_one_and_temperature_sharpens():
    base = torch.randn(50, TOKENS, C, generator=torch.Generator().manual_seed(1))
    devices = [base, base + 0.1, base + 3.0]
    d = feature_distances([similarity_statistics(f, "emd") for f in devices], "emd")
    assert d[0, 1] < d[0, 2]
    w, sharp = feature_similarity(devices), feature_similarity(devices, temperature=0.02)
    assert w[0, 1] > w[0, 2] and sharp[0, 1] / sharp[0, 2] > w[0, 1] / w[0, 2]
    assert w.max() / w.min() <= torch.e + 1e-6  # temperature 1: at most e apart, ACME's near-uniform W


def test_similarity_statistics_sample_at_most_200_cls_rows():
    feats = torch.randn(300, TOKENS, C)
    assert similarity_statistics(feats, "emd", generator=torch.Generator().manual_seed(0)).shape == (200, C)
    assert similarity_statistics(feats, "js").shape == (C,)


# ---------------------------------------------------------------------------------------------- aggregate
def test_aggregate_alone_avg_personalized():
    importances = [[torch.tensor([1.0, 2.0]), torch.tensor([3.0])], [torch.tensor([3.0, 4.0]), torch.tensor([5.0])]]
    alone = aggregate(importances, torch.eye(2))
    assert [[v.tolist() for v in dev] for dev in alone] == [[[1, 2], [3]], [[3, 4], [5]]]
    avg = aggregate(importances, sizes=[1, 3])  # n_i / N = 0.25, 0.75, the same for both devices
    assert [[v.tolist() for v in dev] for dev in avg] == [[[2.5, 3.5], [4.5]]] * 2
    per = aggregate(importances, torch.tensor([[0.8, 0.2], [0.4, 0.6]]))
    for got, want in zip(per, [[[1.4, 2.4], [3.4]], [[2.2, 3.2], [4.2]]], strict=True):
        for v, w in zip(got, want, strict=True):
            torch.testing.assert_close(v, torch.tensor(w))


# ---------------------------------------------------------------------------------------------- round loop
@pytest.mark.parametrize("method", METHODS)
def test_personalize_runs_and_counts_exact_bytes(method):
    k, rounds, channels, data = 6, 2, 10, toy_devices()
    net = Network()
    result = personalize(
        [header(i) for i in range(k)],
        data,
        method=method,
        rounds=rounds,
        prune_per_round=2,
        local_steps=3,
        batch_size=8,
        lr=0.05,
        network=net,
    )
    per_round = k * rounds * channels * 4 if method in ("avg", "js", "emd") else 0
    n_train = len(data[0].train_y)  # 32 ≤ 200: every CLS row is uploaded for EMD, only the (C,) mean for JS
    stats = {"emd": k * n_train * C * 4, "js": k * C * 4}.get(method, 0)
    assert net.bytes("up") == per_round + stats and net.bytes(what="similarity statistics") == stats
    assert net.bytes("down") == per_round
    assert set(result.history.columns) >= {"method", "device", "round", "accuracy", "pruned_channels"}
    assert len(result.history) == k * (rounds + 1) and len(result.final) == k
    assert result.final["pruned_channels"].tolist() == [0 if method == "none" else rounds * 2] * k
    assert result.final["accuracy"].between(0, 1).all()


def test_personalize_is_deterministic_and_emd_weights_follow_groups():
    runs = []
    for _ in range(2):
        runs.append(
            personalize(
                [header(i) for i in range(6)],
                toy_devices(),
                method="emd",
                rounds=1,
                prune_per_round=1,
                local_steps=2,
                batch_size=8,
                network=Network(),
            )
        )
    assert runs[0].history.equals(runs[1].history)
    w = runs[0].weights  # devices 0-2 share labels {0, 1}, devices 3-5 share {2, 3}
    assert w[0, 1] > w[0, 4] and w[4, 5] > w[4, 0]


def test_make_devices_follows_acme_label_groups_with_disjoint_local_splits():
    labels = torch.arange(20).repeat_interleave(50)  # 20 classes × 50 samples
    splits = make_devices(labels, "C2", num_devices=7, fraction=0.2, seed=0)
    lists = client_classes("C2", 20)
    assert len(splits) == 7
    for k, s in enumerate(splits):
        assert set(labels[torch.cat([s.train, s.test])].tolist()) == set(lists[k % 5])
        assert not set(s.train.tolist()) & set(s.test.tolist())
        assert len(s.test) == 2 * len(lists[k % 5])  # 20% of the 10 drawn per class
