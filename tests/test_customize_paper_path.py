"""The customization section's paper-profile path (CIFAR-100 pickles from data/, a Hugging Face ViT from model/) on
tiny fixtures written in the real formats, through the same functions the notebook calls."""

import pickle

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from edgetune.customize import cloud, config, core, ledger
from edgetune.customize.comm import Network

CLASSES = 8


def _write_cifar(root, per_class_train=12, per_class_test=10):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = [c for c in range(CLASSES) for _ in range(per_class)]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        data[:, :1024] = (np.array(labels)[:, None] * 30).astype(np.uint8)  # red channel carries the label
        entry = {
            "data": data,
            "fine_labels": labels,
            "coarse_labels": [0] * len(labels),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
            "batch_label": name,
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(
        pickle.dumps({"fine_label_names": [f"c{i}" for i in range(CLASSES)], "coarse_label_names": ["all"]})
    )


def test_paper_path_runs_on_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _write_cifar(tmp_path / "data")
    torch.manual_seed(0)
    hf = ViTForImageClassification(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=48,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=96,
            num_labels=CLASSES,
        )
    )
    hf.save_pretrained(tmp_path / "model" / "tiny-vit")
    cfg = config(
        "paper",
        model="model/tiny-vit",
        num_classes=CLASSES,
        train_size=96,
        test_size=80,
        device_pool_size=80,
        batch_size=8,
        finetune_steps=2,
        importance_batches=1,
        dynavitw_steps=1,
        dynavit_steps=1,
        checkpoint_every=1,
        header_budget=20_000,
        header_channels=8,
        header_layers=1,
        header_nodes=1,
        search_steps=2,
        header_steps=2,
        header_train_size=96,
        header_grid=(1,),
        rounds=1,
        local_steps=1,
        prune_per_round=1,
        splits=("C2",),
        device="cpu",
        device_fraction=0.5,
    )
    source, pool = core.sources(cfg)
    assert source.train[0].shape == (96, 3, 32, 32) and source.test[1].tolist() == [
        c for c in range(8) for _ in range(10)
    ]
    assert pool[0].shape == (80, 3, 32, 32)  # the devices hold the shifted test split
    supernet, runs = cloud.cloud_supernet(cfg, source)
    assert set(runs) == {"acme-finetune", "acme-dynavitw", "acme-dynavit"}
    assert runs["acme-finetune"].params_total == sum(p.numel() for p in hf.parameters())
    dev = torch.device("cpu")
    grid = core.accuracy_grid(supernet, source, dev)
    assert len(grid) == 16 and grid.params.max() == runs["acme-finetune"].params_total
    selection = core.select_backbones(grid, supernet, cfg)
    kept = grid.attrs["test_correct"]
    assert len(kept) == 16 and {len(v) for v in kept.values()} == {80}  # every sub-network, every test item
    assert sum(kept[(1.0, 1.0)]) / 80 == grid.set_index(["width", "depth"]).accuracy[(1.0, 1.0)]
    gain, by = selection.attrs["tradeoff_gain"], selection.set_index("method").tradeoff
    assert gain.items == 80 and gain.value == pytest.approx(100 * (by["pfg"] - by["highest_accuracy"]))
    backbone = core.extract_subnet(supernet, core.snap(supernet, selection.width[0], selection.depth[0]))
    search, header, _ = core.edge_header(cfg, backbone, source, dev)
    assert search.params <= cfg.header_budget
    final, _, networks = core.personalization(cfg, backbone, header, pool, dev)
    assert set(final.method) == {"none", "alone", "avg", "js", "emd"} and len(final) == 5 * cfg.num_devices
    net = Network()
    core.deploy(net, grid, backbone, header, source.train, cfg.num_devices)
    splits = core.dev.make_devices(pool[1], "C2", cfg.num_devices, fraction=cfg.device_fraction, seed=cfg.seed)
    traffic = core.communication(net, networks[("C2", "emd")], pool, splits, backbone, header)
    assert set(traffic.system) == {"ACME", "centralized"}
    gains = core.personalization_gains(final)
    rows = ledger.claims_rows(
        "paper", selection, traffic, core.header_comparison(cfg, supernet, source, search.arch, dev), gains
    )
    assert [r.section for r in rows] == ["customization"] * 4
    assert rows[0].estimate is gain and rows[0].unit == "points"  # PFG decided on the resampled selection
    assert rows[2].estimate.items == 80  # NAS vs each head: the 80 test items, averaged over the depths
