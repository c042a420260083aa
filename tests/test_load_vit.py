"""load_vit: Hugging Face ViT folders and timm checkpoints give a timm ViT with equal outputs (tiny random models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer
from transformers import ViTConfig, ViTForImageClassification, ViTModel

from edgetune.models.load import (
    hf_to_timm_state_dict,
    load_vit,
    save_timm_checkpoint,
    vit_from_kwargs,
    vit_kwargs_from_hf_config,
    vit_kwargs_from_model,
)

TINY = dict(
    image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96
)
ATOL = 1e-4


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace every parameter by N(0, 0.3) noise (HF's init leaves LayerNorms at 1/0, too easy to match)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def hf_classifier() -> ViTForImageClassification:
    return randomize(ViTForImageClassification(ViTConfig(**TINY, num_labels=5)))


@pytest.fixture(scope="module")
def hf_bare() -> ViTModel:
    return randomize(ViTModel(ViTConfig(**TINY)), seed=1)  # default add_pooling_layer=True: the pooler is dropped


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))


@pytest.fixture
def hf_folder(tmp_path: Path, hf_classifier: ViTForImageClassification) -> Path:
    hf_classifier.save_pretrained(tmp_path / "vit")
    return tmp_path / "vit"


def to_pytorch_bin(folder: Path) -> None:
    """Turn model.safetensors into a legacy pytorch_model.bin (transformers>=5 only writes safetensors)."""
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


@torch.no_grad()
def hf_logits(model: ViTForImageClassification, pixels: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=pixels).logits


# ------------------------------------------------------------------------------------------- Hugging Face


@torch.no_grad()
def test_safetensors_logits_match(hf_folder: Path, hf_classifier, pixels) -> None:
    model = load_vit(hf_folder)
    assert isinstance(model, VisionTransformer) and not model.training
    assert (hf_folder / "model.safetensors").is_file()
    assert model.norm.eps == 1e-12 and model.blocks[0].norm1.eps == 1e-12  # HF eps, not timm's 1e-6
    torch.testing.assert_close(model(pixels), hf_logits(hf_classifier, pixels), atol=ATOL, rtol=0)


@torch.no_grad()
def test_pytorch_bin_logits_match(hf_folder: Path, hf_classifier, pixels) -> None:
    to_pytorch_bin(hf_folder)
    assert sorted(p.name for p in hf_folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    torch.testing.assert_close(load_vit(hf_folder)(pixels), hf_logits(hf_classifier, pixels), atol=ATOL, rtol=0)


@torch.no_grad()
def test_in_memory_state_dict_names(hf_classifier, pixels) -> None:
    """hf_to_timm_state_dict also takes `model.state_dict()` (transformers>=5 renames modules: q_proj, mlp.fc1)."""
    config = hf_classifier.config.to_dict()
    model = vit_from_kwargs(vit_kwargs_from_hf_config(config))
    model.load_state_dict(hf_to_timm_state_dict(hf_classifier.state_dict(), config), strict=True)
    torch.testing.assert_close(model.eval()(pixels), hf_logits(hf_classifier, pixels), atol=ATOL, rtol=0)


@torch.no_grad()
def test_bare_vit_model_features(tmp_path: Path, hf_bare: ViTModel, pixels) -> None:
    hf_bare.save_pretrained(tmp_path)
    assert any(k.startswith("pooler.") for k in load_file(str(tmp_path / "model.safetensors")))
    expected = hf_bare(pixel_values=pixels).last_hidden_state[:, 0]  # CLS after the final layernorm

    features = load_vit(tmp_path, num_classes=0)
    assert features.num_classes == 0 and isinstance(features.head, torch.nn.Identity)
    torch.testing.assert_close(features(pixels), expected, atol=ATOL, rtol=0)

    assert load_vit(tmp_path).num_classes == 0  # no classifier in the checkpoint -> no head by default
    fresh = load_vit(tmp_path, num_classes=7)
    assert fresh.head.out_features == 7 and fresh(pixels).shape == (2, 7)
    pooled = fresh.forward_head(fresh.forward_features(pixels), pre_logits=True)
    torch.testing.assert_close(pooled, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_num_classes_replaces_classifier(hf_folder: Path, hf_classifier, pixels) -> None:
    expected = hf_classifier.vit(pixel_values=pixels).last_hidden_state[:, 0]
    model = load_vit(hf_folder, num_classes=3)
    assert model.head.out_features == 3 and model.pretrained_cfg["num_classes"] == 3
    torch.testing.assert_close(
        model.forward_head(model.forward_features(pixels), pre_logits=True), expected, atol=ATOL, rtol=0
    )
    assert load_vit(hf_folder, num_classes=5).head.weight.equal(hf_classifier.classifier.weight)  # same size: kept


def test_parameter_count_equal(hf_folder: Path, hf_classifier) -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(load_vit(hf_folder)) == count(hf_classifier)


@torch.no_grad()
def test_device_dtype_and_data_config(hf_folder: Path, hf_classifier, pixels) -> None:
    model = load_vit(hf_folder, device="cpu", dtype="float64")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    torch.testing.assert_close(model(pixels.double()).float(), hf_logits(hf_classifier, pixels), atol=ATOL, rtol=0)
    assert {p.dtype for p in load_vit(hf_folder, dtype=torch.bfloat16).parameters()} == {torch.bfloat16}
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.pretrained_cfg["input_size"] == (3, 32, 32)


# --------------------------------------------------------------------------------------------------- timm


@torch.no_grad()
def test_timm_checkpoint_round_trip(tmp_path: Path, hf_folder: Path, pixels) -> None:
    model = load_vit(hf_folder)
    weights, sidecar = save_timm_checkpoint(model, tmp_path / "timm" / "vit_tiny.safetensors")
    assert sidecar == tmp_path / "timm" / "vit_tiny.json"
    assert json.loads(sidecar.read_text())["norm_eps"] == 1e-12
    again = load_vit(weights)
    torch.testing.assert_close(again(pixels), model(pixels), atol=0, rtol=0)
    assert again.pretrained_cfg == model.pretrained_cfg


@torch.no_grad()
def test_timm_pth_file_and_folder(tmp_path: Path, pixels) -> None:
    timm_model = randomize(
        VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=4)
    )
    kwargs = vit_kwargs_from_model(timm_model)
    torch.save(timm_model.state_dict(), tmp_path / "ckpt.pth")
    (tmp_path / "ckpt.json").write_text(json.dumps(kwargs))
    torch.testing.assert_close(load_vit(tmp_path / "ckpt.pth")(pixels), timm_model(pixels), atol=0, rtol=0)

    folder = tmp_path / "folder"
    folder.mkdir()
    save_file(timm_model.state_dict(), str(folder / "model.safetensors"))
    (folder / "timm_config.json").write_text(json.dumps(kwargs))
    torch.testing.assert_close(load_vit(folder)(pixels), timm_model(pixels), atol=0, rtol=0)


@torch.no_grad()
def test_timm_without_sidecar_infers_architecture(tmp_path: Path, pixels) -> None:
    timm_model = randomize(VisionTransformer(img_size=32, patch_size=8, embed_dim=128, depth=1, num_heads=2))
    save_file(timm_model.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.warns(UserWarning, match="num_heads=2"):
        model = load_vit(tmp_path / "bare.safetensors")
    torch.testing.assert_close(model(pixels), timm_model(pixels), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"not found: .*nope.*config\.json"):
        load_vit(tmp_path / "nope")


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        load_vit(tmp_path)


def test_not_a_vit_config(hf_folder: Path) -> None:
    config = json.loads((hf_folder / "config.json").read_text())
    (hf_folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ValueError, match=r"model_type 'bert', not 'vit'"):
        load_vit(hf_folder)


def test_non_gelu_activation(hf_folder: Path) -> None:
    config = json.loads((hf_folder / "config.json").read_text())
    (hf_folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match=r"hidden_act must be 'gelu'.*'relu'"):
        load_vit(hf_folder)


def test_unknown_key_is_named(hf_folder: Path) -> None:
    state = load_file(str(hf_folder / "model.safetensors"))
    save_file({**state, "vit.encoder.layer.0.mystery.weight": torch.zeros(1)}, str(hf_folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"unmapped keys.*vit\.encoder\.layer\.0\.mystery\.weight"):
        load_vit(hf_folder)


def test_missing_key_is_named(hf_folder: Path) -> None:
    state = load_file(str(hf_folder / "model.safetensors"))
    del state["vit.encoder.layer.1.output.dense.weight"]
    save_file(state, str(hf_folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing timm keys \['blocks\.1\.mlp\.fc2\.weight'\]"):
        load_vit(hf_folder)


def test_missing_value_projection_is_named(hf_classifier) -> None:
    state = {k: v for k, v in hf_classifier.state_dict().items() if "v_proj.bias" not in k}
    with pytest.raises(ValueError, match=r"attention\.attention\.value\.bias"):
        hf_to_timm_state_dict(state, hf_classifier.config.to_dict())


def test_hf_weights_file_as_timm_file(hf_folder: Path) -> None:
    with pytest.raises(ValueError, match="Hugging Face ViT keys; pass its folder"):
        load_vit(hf_folder / "model.safetensors")


@pytest.mark.parametrize("damage", ["truncated", "emptied", "garbage"])
def test_a_damaged_placed_weights_file_is_named_with_what_to_do(hf_folder: Path, damage: str) -> None:
    weights = hf_folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 3], "emptied": b"", "garbage": b"\x00" * 64}[damage])
    with pytest.raises(ValueError, match=f"{weights} is not a readable weights file .*copy it again"):
        load_vit(hf_folder)


def test_a_damaged_pytorch_checkpoint_is_named(tmp_path: Path) -> None:
    file = tmp_path / "vit.pth"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, file)
    file.write_bytes(file.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{file} is not a readable weights file"):
        load_vit(file)
