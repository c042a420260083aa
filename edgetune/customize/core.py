"""ACME end to end on this project's data and models: the cloud builds the elastic supernet, the edge picks a
sub-backbone (PFG) and searches a header under a parameter budget, the devices personalize the header. Every
tensor that crosses a tier boundary goes through one `Network`, which counts its bytes as it is sent."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import torch
from timm.models.vision_transformer import VisionTransformer

from edgetune import evidence
from edgetune.customize import comm, edge, heads
from edgetune.customize import device as dev
from edgetune.customize.comm import Network
from edgetune.customize.config import CustomizeConfig
from edgetune.customize.supernet import (
    DEPTHS,
    FULL,
    SubnetSpec,
    all_specs,
    extract_subnet,
    supernet_forward,
)
from edgetune.customize.train import train_head
from edgetune.data.scenes import Domain
from edgetune.data.sources import Source, load_source
from edgetune.data.streaming import LazyImages, first
from edgetune.models import forward_flops, image_size
from edgetune.paths import runs_dir
from edgetune.runs import (
    count_parameters,
)
from edgetune.training import derive_seed, hits, normalize, seeded_rng

# ---------------------------------------------------------------------------------------------- data and model
# Devices see their own conditions: their pool is rendered under a mild shift of the cloud's clear scenes.
DEVICE_DOMAIN = Domain("device field conditions", fog=0.5, brightness=-0.4, clutter=0.5, background="urban")


def sources(cfg: CustomizeConfig) -> tuple[Source, tuple[torch.Tensor, torch.Tensor]]:
    """The cloud's data (train/test) and the devices' own pool: other scenes, in field conditions
    (`DEVICE_DOMAIN`), never uploaded. With real data the devices hold the test split, shifted alike."""
    size = image_size(cfg.model, cfg.num_classes)
    cloud = load_source(
        cfg.data,
        num_classes=cfg.num_classes,
        image_size=size,
        train_size=cfg.train_size,
        test_size=cfg.test_size,
        seed=cfg.seed,
        fine_grained=cfg.fine_grained,
    )
    return cloud, cloud.domain(DEVICE_DOMAIN, cfg.device_pool_size, seed=derive_seed(cfg.seed, "device pool"))


# ---------------------------------------------------------------------------------------------- cloud
def accuracy_grid(vit: VisionTransformer, source: Source, device) -> pd.DataFrame:
    """Accuracy (the supernet's own CLS head), parameters and forward FLOPs of every (width, depth) sub-network."""
    rows, correct = [], {}
    size = vit.patch_embed.img_size[0]
    for spec in all_specs():
        right = hits(lambda x, s=spec: supernet_forward(vit, x, s), source.test, device)
        correct[(spec.width, spec.depth)] = right
        acc = sum(right) / len(right)
        sub = extract_subnet(vit, spec)
        params, _ = count_parameters(sub)
        flops = forward_flops(sub.eval(), torch.rand(1, 3, size, size, device=sub.cls_token.device))
        rows.append(
            {"width": spec.width, "depth": spec.depth, "accuracy": acc, "params": params, "gflops": flops / 1e9}
        )
    grid = pd.DataFrame(rows)
    grid.attrs["test_correct"] = correct  # (width, depth) → per test item: what the selection's interval resamples
    return grid


# ---------------------------------------------------------------------------------------------- edge
def subnet_params(vit: VisionTransformer, spec: SubnetSpec) -> int:
    """Exact parameter count of `extract_subnet(vit, spec)`, without building it (PFG's size model)."""
    c, num_heads = vit.embed_dim, vit.blocks[0].attn.num_heads
    hd, hidden = vit.blocks[0].attn.head_dim, vit.blocks[0].mlp.fc1.out_features
    heads, units = spec.heads(num_heads), spec.units(hidden, num_heads)
    per_block = 4 * c + (c + 1) * 3 * heads * hd + heads * hd * c + c + (c + 1) * units + units * c + c
    outside = sum(p.numel() for n, p in vit.named_parameters() if not n.startswith("blocks."))
    return outside + len(spec.blocks(len(vit.blocks))) * per_block


def realizable_grid(vit: VisionTransformer) -> tuple[list[float], list[float]]:
    """Width and depth ratios of whole heads and whole blocks: the sub-networks that exist (ACME's 20×20 linspace
    grid from 0 also scores widths and depths of zero heads or blocks)."""
    heads, layers = vit.blocks[0].attn.num_heads, len(vit.blocks)
    return [k / heads for k in range(1, heads + 1)], [k / layers for k in range(1, layers + 1)]


PFG_RESAMPLES = 1_000  # each one refits the accuracy surface and remakes both choices


def select_backbones(grid: pd.DataFrame, vit: VisionTransformer, cfg: CustomizeConfig) -> pd.DataFrame:
    """ACME's PFG choice against highest-accuracy, largest and random selection, under the same size limit."""
    points = {(r.width, r.depth): r.accuracy for r in grid.itertuples()}
    heads, layers = vit.blocks[0].attn.num_heads, len(vit.blocks)
    widths, depths = realizable_grid(vit)

    @functools.cache  # every resample asks for the same sizes
    def size(w: float, d: float) -> int:
        return subnet_params(vit, snap(vit, w, d))

    def select(measured: dict, method: str) -> edge.BackboneChoice:
        return edge.select_backbone(
            measured, size, size_constraint=cfg.size_constraint, method=method, seed=cfg.seed,
            widths=widths, depths=depths, heads=heads, layers=layers,
        )  # fmt: skip

    selection = pd.DataFrame([vars(select(points, m)) for m in ("pfg", "highest_accuracy", "largest", "random")])
    kept = grid.attrs.get("test_correct")
    if kept:
        keys = list(kept)
        scores = np.asarray([kept[k] for k in keys], dtype=float)  # (sub-networks, items)

        def gain(index: np.ndarray) -> float:
            """PFG's trade-off minus highest-accuracy's, with the surface refitted and both choices remade on the
            accuracies of the resampled test items (100 × score: points)."""
            measured = dict(zip(keys, scores[:, index].mean(axis=1), strict=True))
            return 100 * (select(measured, "pfg").tradeoff - select(measured, "highest_accuracy").tradeoff)

        selection.attrs["tradeoff_gain"] = evidence.over_items(scores.shape[1], gain, resamples=PFG_RESAMPLES)
    return selection


def snap(vit: VisionTransformer, width: float, depth: float) -> SubnetSpec:
    """The SubnetSpec of a selected (width, depth): whole heads and whole blocks."""
    heads, layers = vit.blocks[0].attn.num_heads, len(vit.blocks)
    return SubnetSpec(max(1, round(heads * width)) / heads, max(1, round(layers * depth)) / layers)


# Token features larger than this go to a memory-mapped file under runs/tmp/ instead of host memory (45,000 ViT-B/16
# images are 27 GB of features).
MEMMAP_BYTES = 2**30


@torch.no_grad()
def features(backbone: VisionTransformer, images, device, batch_size: int = 512) -> torch.Tensor:
    """Token features (N, 1 + P, C) of a frozen sub-backbone (after its final norm), computed once, batch by batch
    (`images`: a tensor or `LazyImages`). Beyond `MEMMAP_BYTES` they are written to a memory-mapped file whose pages
    the OS keeps or drops as memory allows; the file is unlinked at once and goes with the returned tensor."""
    backbone.to(device).eval()
    batches = (
        backbone.forward_features(normalize(images[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(images), batch_size)
    )
    head = next(batches, None)
    if head is None:
        return torch.empty(0)
    if head.element_size() * head[0].numel() * len(images) <= MEMMAP_BYTES:
        return torch.cat([head, *batches])
    out = _memmap((len(images), *head.shape[1:]))
    start = 0
    for batch in (head, *batches):
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out


def _memmap(shape: tuple[int, ...]) -> torch.Tensor:
    import tempfile

    import numpy as np

    folder = runs_dir() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npy") as handle:  # unlinked on close; the map stays
        array = np.lib.format.open_memmap(handle.name, mode="w+", dtype=np.float32, shape=shape)
    return torch.from_numpy(array)


BASELINE_HEADS = {
    "Linear": heads.LinearHead,
    "MLP": heads.MLPHead,
    "Mixer": heads.MixerHead,
    "CNN-projection": heads.CNNProjectionHead,
}


def grid_of(backbone: VisionTransformer) -> int:
    return backbone.patch_embed.grid_size[0]


def edge_proxy(cfg: CustomizeConfig, source: Source):
    """The labelled proxy set the edge trains and searches headers on: the first `header_train_size` training images
    (a lazy view for a real dataset) and their labels."""
    n = min(cfg.header_train_size, len(source.train[0]))
    return first(source.train[0], n), source.train[1][:n]


def header_data(cfg: CustomizeConfig, backbone: VisionTransformer, source: Source, device):
    """Frozen-feature training set (the first `header_train_size` images) and test set of a sub-backbone."""
    images, labels = edge_proxy(cfg, source)
    train = features(backbone, images, device), labels
    return train, (features(backbone, source.test[0], device), source.test[1])


def fit_and_score(cfg: CustomizeConfig, head: torch.nn.Module, train, test, device) -> float:
    """Train a header on frozen features for `header_steps`, then its test accuracy."""
    right = fit_and_hit(cfg, head, train, test, device)
    return sum(right) / max(len(right), 1)


def fit_and_hit(cfg: CustomizeConfig, head: torch.nn.Module, train, test, device) -> list[int]:
    """Train a header on frozen features for `header_steps`, then which test items it gets right."""
    train_head(
        head, *train, steps=cfg.header_steps, lr=cfg.header_lr, batch_size=cfg.batch_size, seed=cfg.seed, device=device
    )
    return dev.test_hits(head, *test, device=device)


def edge_header(cfg: CustomizeConfig, backbone: VisionTransformer, source: Source, device):
    """Search a header on the chosen sub-backbone under the parameter budget, then train it; returns the search
    result, the trained header and its test accuracy."""
    train, test = header_data(cfg, backbone, source, device)
    split = int(0.8 * len(train[1]))  # the reward set is held out of the child training, as in ENAS
    dims = dict(num_classes=cfg.num_classes, embed_dim=backbone.embed_dim, grid=grid_of(backbone))
    search = edge.search_header(
        train[0][:split],
        train[1][:split],
        train[0][split:],
        train[1][split:],
        **dims,
        num_nodes=cfg.header_nodes,
        channels=cfg.header_channels,
        layers=cfg.header_layers,
        max_params=cfg.header_budget,
        steps=cfg.search_steps,
        seed=cfg.seed,
        device=device,
        progress=True,
    )
    head = heads.CellHeader.from_shared(search.shared, search.arch)
    return search, head, fit_and_score(cfg, head, train, test, device)


def header_comparison(cfg: CustomizeConfig, vit: VisionTransformer, source: Source, arch, device) -> pd.DataFrame:
    """Linear, MLP, Mixer, CNN-projection and the searched cell header on sub-backbones of every depth (full
    width), each trained for the same steps on the same frozen features (ACME's header-vs-backbone-size figure)."""
    rows, correct = [], {}
    for depth in DEPTHS:
        spec = snap(vit, 1.0, depth)
        backbone = extract_subnet(vit, spec)
        train, test = header_data(cfg, backbone, source, device)
        dims = (backbone.embed_dim, grid_of(backbone), cfg.num_classes)
        makers = {
            **BASELINE_HEADS,
            "NAS (ours)": lambda *dims: heads.CellHeader(*dims, arch, cfg.header_channels, cfg.header_layers),
        }
        for name, make in makers.items():
            with seeded_rng(derive_seed(cfg.seed, "header", name), device):  # the same start at every depth
                head = make(*dims)
                right = fit_and_hit(cfg, head, train, test, device)
            correct[(spec.depth, name)] = right
            accuracy = sum(right) / max(len(right), 1)
            rows.append(
                {
                    "depth": spec.depth,
                    "backbone_params_m": subnet_params(vit, spec) / 1e6,
                    "head": name,
                    "head_params": heads.count_parameters(head),
                    "accuracy": accuracy,
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["test_correct"] = correct  # (depth, head) → per test item; every head sees the same items
    return table


# ---------------------------------------------------------------------------------------------- device
def deploy(
    network: Network,
    grid: pd.DataFrame,
    backbone: VisionTransformer,
    head: torch.nn.Module,
    edge_proxy: tuple[torch.Tensor, torch.Tensor],
    num_devices: int,
) -> None:
    """The model traffic of ACME: the cloud's accuracy table and the chosen sub-backbone go to the edge (with the
    labelled proxy set the edge searches its header on, as 8-bit pixels), then sub-backbone + header to every
    device. Counted on `network` as it is sent."""
    network.send(torch.tensor(grid[["width", "depth", "accuracy"]].to_numpy()), "cloud", "edge", "accuracy table")
    images = edge_proxy[0]
    if isinstance(images, LazyImages):  # a real dataset is not decoded just to be counted: its 8-bit bytes
        pixels = torch.empty(images.shape, dtype=torch.uint8, device="meta")
    else:
        pixels = (images * 255).to(torch.uint8)
    network.send(pixels, "cloud", "edge", "proxy images (8-bit)")
    network.send(edge_proxy[1], "cloud", "edge", "proxy labels")
    network.send(backbone.state_dict(), "cloud", "edge", "sub-backbone weights")
    for k in range(num_devices):
        network.send(backbone.state_dict(), "edge", f"device:{k}", "sub-backbone weights")
        network.send(head.state_dict(), "edge", f"device:{k}", "header weights")


def personalization(
    cfg: CustomizeConfig,
    backbone: VisionTransformer,
    head: torch.nn.Module,
    pool: tuple[torch.Tensor, torch.Tensor],
    device,
) -> tuple[pd.DataFrame, dict, dict]:
    """Every personalization method on every split. Returns per-(split, method, device) final accuracies, the
    edge's mixing matrices, and each (split, method)'s Network (importance and statistics traffic)."""
    feats = features(backbone, pool[0], device)  # each device computes its own features locally
    rows, weights, networks, correct = [], {}, {}, {}
    for setting in cfg.splits:
        splits = dev.make_devices(pool[1], setting, cfg.num_devices, fraction=cfg.device_fraction, seed=cfg.seed)
        data = dev.device_data(feats, pool[1], splits)
        for method in dev.METHODS:
            network = Network()
            result = dev.personalize(
                [copy.deepcopy(head) for _ in splits],
                data,
                method=method,
                rounds=cfg.rounds,
                prune_per_round=cfg.prune_per_round,
                local_steps=cfg.local_steps,
                network=network,
                lr=cfg.device_lr,
                seed=cfg.seed,
                device=device,
            )
            final = result.final.assign(split=setting, method=method)
            correct[(setting, method)] = result.final.attrs["test_correct"]
            rows.append(final)
            weights[(setting, method)], networks[(setting, method)] = result.weights, network
    final = pd.concat(rows, ignore_index=True)
    final.attrs["test_correct"] = correct  # (split, method) → per device, per test item
    return final, weights, networks


def communication(model_traffic: Network, device_traffic: Network, pool, splits, backbone, head) -> pd.DataFrame:
    """ACME's bytes per tier and direction against a centralized system, in which every device uploads its raw
    training data (8-bit pixels, int64 labels) and receives the trained sub-backbone and header back."""
    acme = pd.concat([model_traffic.ledger(), device_traffic.ledger()], ignore_index=True)
    acme["system"] = "ACME"
    uploads = [(pool[0][s.train], pool[1][s.train]) for s in splits]
    model_bytes = sum(
        t.numel() * t.element_size() for t in [*backbone.state_dict().values(), *head.state_dict().values()]
    )
    central = pd.DataFrame(
        [
            {
                "src": "device",
                "dst": "cloud",
                "direction": "up",
                "what": "raw training data",
                "bytes": comm.centralized_bytes(uploads),
            },
            {
                "src": "cloud",
                "dst": "device",
                "direction": "down",
                "what": "trained model",
                "bytes": model_bytes * len(splits),
            },
        ]
    ).assign(system="centralized")
    return pd.concat([acme, central], ignore_index=True)


def canonical_arch(nodes: int) -> heads.CellArch:
    """A fixed cell of `nodes` nodes (node j: sep3 of input j + avg3 of input j+1), for the header-size grid."""
    return heads.CellArch(tuple((j, "sep3", j + 1, "avg3") for j in range(nodes)))


def header_size_grid(cfg: CustomizeConfig, vit: VisionTransformer, source: Source, device) -> pd.DataFrame:
    """Accuracy of cell headers with B cells per layer × U layers at the smallest (w = d = 0.25) and the full
    backbone (ACME's NAS hyper-parameter heatmaps; a fixed canonical cell per B here, not a search per cell)."""
    rows = []
    for name, spec in (("w=d=0.25", snap(vit, 0.25, 0.25)), ("full", FULL)):
        backbone = extract_subnet(vit, spec)
        train, test = header_data(cfg, backbone, source, device)
        for nodes in cfg.header_grid:
            for layers in cfg.header_grid:
                head = heads.CellHeader(
                    backbone.embed_dim,
                    grid_of(backbone),
                    cfg.num_classes,
                    canonical_arch(nodes),
                    cfg.header_channels,
                    layers,
                    generator=torch.Generator().manual_seed(cfg.seed),
                )
                accuracy = fit_and_score(cfg, head, train, test, device)
                rows.append(
                    {
                        "backbone": name,
                        "nodes": nodes,
                        "layers": layers,
                        "head_params": heads.count_parameters(head),
                        "accuracy": accuracy,
                    }
                )
    return pd.DataFrame(rows)


def personalization_gains(final: pd.DataFrame) -> pd.DataFrame:
    """Mean device accuracy per (split, method) and its gain in points over the no-pruning reference."""
    mean = final.groupby(["split", "method"], as_index=False)["accuracy"].mean()
    reference = mean[mean.method == "none"].set_index("split")["accuracy"]
    mean["gain_pp"] = 100 * (mean.accuracy - mean.split.map(reference))
    gains = mean[mean.method != "none"].reset_index(drop=True)
    gains.attrs["test_correct"] = final.attrs.get("test_correct", {})
    return gains


def mixing_tables(weights: dict, split: str) -> dict[str, pd.DataFrame]:
    """The edge's W for EMD and JS on one split, as labelled tables."""
    return {m: pd.DataFrame(weights[(split, m)].numpy()) for m in ("emd", "js") if weights.get((split, m)) is not None}
