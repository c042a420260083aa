"""Non-IID device splits: ACME's label-group settings (IID, C2, C3, C4) and Dirichlet(α) label skew.

ACME (docs/acme.md#non-iid-device-splits) splits CIFAR-100's classes into four disjoint quarter lists L1..L4 and
gives each of 5 clients one list, or a mix of lists:
    IID: L1, L1, L1, L1, L1          C2: L1, L1, L1, L2, L2
    C3:  L1, L2, L1∪L3, L1, L2       C4: L1, L2, L1∪L2∪L3, L1, L1∪L4
(the mixed lists take about the same number of classes as a quarter, in the original's proportions: 13+11 for
L1∪L3, 9+8+7 for L1∪L2∪L3, 11+14 for L1∪L4, scaled to `num_classes`). Each client then draws `fraction` of
every one of its classes' samples without replacement, independently of the other clients, so clients overlap.
"""

from __future__ import annotations

import torch

LABEL_GROUP_SETTINGS = {
    "IID": ("L1", "L1", "L1", "L1", "L1"),
    "C2": ("L1", "L1", "L1", "L2", "L2"),
    "C3": ("L1", "L2", "L13", "L1", "L2"),
    "C4": ("L1", "L2", "L123", "L1", "L14"),
}
# Share of a quarter list taken from each of its parts, as in the original's 25-class lists.
MIXES = {"L13": {0: 13 / 25, 2: 11 / 25}, "L123": {0: 9 / 25, 1: 8 / 25, 2: 7 / 25}, "L14": {0: 11 / 25, 3: 14 / 25}}


def quarter_lists(num_classes: int) -> list[list[int]]:
    """Four disjoint, contiguous class lists of (nearly) equal size."""
    if num_classes < 4:
        raise ValueError(f"label-group splits need at least 4 classes, got {num_classes}")
    bounds = [round(i * num_classes / 4) for i in range(5)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(4)]


def client_classes(setting: str, num_classes: int) -> list[list[int]]:
    """The class list of each of the 5 clients under an ACME setting (IID, C2, C3 or C4)."""
    if setting not in LABEL_GROUP_SETTINGS:
        raise ValueError(f"unknown label-group setting {setting!r}; expected one of {list(LABEL_GROUP_SETTINGS)}")
    quarters = quarter_lists(num_classes)
    lists = {f"L{i + 1}": q for i, q in enumerate(quarters)}
    for name, parts in MIXES.items():
        lists[name] = [
            c for part, share in parts.items() for c in quarters[part][: max(1, round(share * len(quarters[part])))]
        ]
    return [lists[name] for name in LABEL_GROUP_SETTINGS[setting]]


def _share(share: float, classes: list[int]) -> int:
    return max(1, round(share * len(classes)))


def label_group_split(labels: torch.Tensor, setting: str, fraction: float = 0.1, seed: int = 0) -> list[torch.Tensor]:
    """Sample indices per client: `fraction` of each of its classes' samples, without replacement per client."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must lie in (0, 1]")
    num_classes = int(labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c, as_tuple=True)[0] for c in range(num_classes)]
    splits = []
    for classes in client_classes(setting, num_classes):
        picks = []
        for c in classes:
            pool = by_class[c]
            take = max(1, round(fraction * len(pool)))
            picks.append(pool[torch.randperm(len(pool), generator=g)[:take]])
        splits.append(torch.sort(torch.cat(picks)).values)
    return splits


def dirichlet_split(labels: torch.Tensor, num_clients: int, alpha: float, seed: int = 0) -> list[torch.Tensor]:
    """Disjoint split where each class's samples go to clients in Dirichlet(α) proportions (small α: more skew)."""
    if alpha <= 0 or num_clients < 1:
        raise ValueError(f"dirichlet_split needs alpha > 0 and num_clients >= 1, got alpha={alpha}, {num_clients}")
    g = torch.Generator().manual_seed(seed)
    concentration = torch.full((num_clients,), float(alpha))
    parts: list[list[torch.Tensor]] = [[] for _ in range(num_clients)]
    for c in range(int(labels.max()) + 1):
        pool = torch.nonzero(labels == c, as_tuple=True)[0]
        pool = pool[torch.randperm(len(pool), generator=g)]
        shares = _sample_dirichlet(concentration, g)
        cuts = (torch.cumsum(shares, 0) * len(pool)).round().long().tolist()
        for k, (lo, hi) in enumerate(zip([0, *cuts[:-1]], cuts, strict=True)):
            parts[k].append(pool[lo:hi])
    return [torch.sort(torch.cat(p)).values for p in parts]


def _sample_dirichlet(concentration: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # torch.distributions does not take a Generator; Gamma draws via torch._standard_gamma would, but it is
    # private. A Dirichlet is normalized Gammas; Gamma(α) for α < 1 by Marsaglia–Tsang boosting.
    draws = _gamma(concentration, g)
    return draws / draws.sum().clamp_min(1e-12)


def _gamma(alpha: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Gamma(α, 1) samples with an explicit generator (Marsaglia–Tsang; α < 1 boosted by U^(1/α))."""
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha)
    d = a - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    out = torch.empty_like(alpha)
    todo = torch.ones_like(alpha, dtype=torch.bool)
    while todo.any():
        z = torch.randn(alpha.shape, generator=g)
        u = torch.rand(alpha.shape, generator=g)
        t = (1 + c * z) ** 3
        ok = todo & (t > 0) & (torch.log(u) < 0.5 * z**2 + d - d * t + d * torch.log(t.clamp_min(1e-12)))
        out = torch.where(ok, d * t, out)
        todo &= ~ok
    u = torch.rand(alpha.shape, generator=g)
    return torch.where(boost, out * u ** (1 / alpha), out)


def label_histogram(labels: torch.Tensor, splits: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(clients, classes) sample counts, for plotting the non-IID-ness of a split."""
    return torch.stack([torch.bincount(labels[idx], minlength=num_classes) for idx in splits])
