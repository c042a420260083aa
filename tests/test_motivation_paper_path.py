"""The paper profile's code path (CIFAR-100 from data/, a Hugging Face ViT from model/) on tiny fixtures written in
the real on-disk formats: the same functions the notebook calls, at a few steps."""

import torch
from test_readers import _write_cifar  # the CIFAR-100 pickle fixture
from transformers import ViTConfig, ViTForImageClassification

from edgetune.motivation import config, core


def test_paper_path_runs_on_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _write_cifar(tmp_path / "data")
    torch.manual_seed(0)
    hf = ViTForImageClassification(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=96,
            num_labels=3,
        )
    )
    hf.save_pretrained(tmp_path / "model" / "tiny-vit")
    cfg = config(
        "paper",
        model="model/tiny-vit",
        num_classes=3,
        train_size=6,
        test_size=4,
        batch_size=2,
        train_steps=2,
        checkpoint_every=1,
        retrain_domains=1,
        retrain_size=4,
        retrain_steps=1,
        recover_steps=1,
        device="cpu",
    )
    source = core.load_source(cfg)
    assert source.train[0].shape == (6, 3, 32, 32) and source.train[1].tolist() == [0, 1, 2, 2, 1, 0]
    assert source.test[1].tolist() == [2, 2, 0, 1]
    model, run = core.trained_model(cfg, source)
    hf_params = sum(p.numel() for p in hf.parameters())
    assert run.params_total == hf_params + (2 * 48 + 48 * 3 + 3)  # one extra exit after block 1
    assert len(run.history) == 2 and run.metrics["final_loss"] > 0
    curve = core.depth_curve(model, source, torch.device("cpu"))
    assert curve.blocks.tolist() == [1, 2] and set(curve.accuracy * 4) <= {0, 1, 2, 3, 4}
    domains = core.stream(cfg)
    shift = core.stream_accuracy(cfg, model, source, domains, torch.device("cpu"))
    assert len(shift) == 13 and shift.domain.iloc[0] == "clear"
    gap = core.retraining_gap(cfg, model, source, domains)
    assert gap.model.tolist() == ["full", "compressed"] and gap.domain.nunique() == 1
