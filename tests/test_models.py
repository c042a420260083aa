import pytest
import torch

from edgetune.models import VIT_FAMILY, ViTShape, build_vit, prune_width, vit_shape


@pytest.mark.parametrize(
    ("name", "params"),
    [("vit-ti16", 5_717_416), ("vit-s16", 22_050_664), ("vit-b16", 86_567_656)],  # timm's counts at 1000 classes
)
def test_family_matches_the_standard_vit_sizes(name, params):
    with torch.device("meta"):
        model = build_vit(name, 1000)
    assert sum(p.numel() for p in model.parameters()) == params
    assert vit_shape(model) == VIT_FAMILY[name]


def _zero_half(model):
    """Zero the output columns of the last half of every block's heads and MLP units."""
    with torch.no_grad():
        for block in model.blocks:
            hd = block.attn.head_dim
            keep = block.attn.num_heads // 2 * hd
            block.attn.proj.weight[:, keep:] = 0
            half = block.mlp.fc2.weight.shape[1] // 2
            block.mlp.fc2.weight[:, half:] = 0
            block.mlp.fc1.weight[half:] = 0
    return model


def test_prune_width_full_is_an_exact_copy():
    torch.manual_seed(0)
    model = build_vit("edge-small", 7).eval()
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(prune_width(model, 1.0).eval()(x), model(x))


def test_prune_width_drops_the_units_that_contribute_nothing():
    torch.manual_seed(0)
    model = _zero_half(build_vit("edge-small", 7)).eval()
    small = prune_width(model, 0.5).eval()
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    shape = vit_shape(small)
    assert shape == ViTShape(32, 8, 64, 8, 2, 128, head_dim=16)
    # Per block: qkv 64·(3·32)+3·32, proj 32·64+64, fc1 64·128+128, fc2 128·64+64, two norms 4·64.
    per_block = 64 * 96 + 96 + 32 * 64 + 64 + 64 * 128 + 128 + 128 * 64 + 64 + 4 * 64
    rest = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("blocks."))
    assert sum(p.numel() for p in small.parameters()) == rest + 8 * per_block


def test_prune_width_stays_on_the_model_device():
    with torch.device("meta"):  # any non-CPU device: index tensors must be created where the weights are
        model = build_vit("edge-tiny", 3)
    small = prune_width(model, 0.5)
    assert {p.device.type for p in small.parameters()} == {"meta"}


def test_prune_width_validates():
    with pytest.raises(ValueError, match=r"width=1.5 must lie in \(0, 1\]"):
        prune_width(build_vit("edge-tiny", 2), 1.5)
    with pytest.raises(ValueError, match="unknown ViT 'vit-z'"):
        build_vit("vit-z", 2)
    with pytest.raises(ValueError, match="img_size=30 must be a multiple of patch_size=8"):
        ViTShape(img_size=30)


@pytest.mark.parametrize("section", ["motivation", "customization", "retraining", "assembling"])
def test_every_model_field_takes_a_family_name_or_a_checkpoint_path(section, tmp_path):
    """A section's `model` opens a checkpoint the same way it builds a family model; a name that is neither is
    refused naming what is accepted."""
    import torch

    from edgetune.models import build_vit, open_vit
    from edgetune.models.load import save_timm_checkpoint
    from edgetune.sections import section as find

    source = build_vit("edge-tiny", 7)
    weights, _ = save_timm_checkpoint(source, tmp_path / "ckpt" / "edge-tiny.safetensors")
    cfg = find(section).config("smoke", model=str(weights))
    opened = open_vit(cfg.model, 7)
    theirs = source.state_dict()
    assert opened.state_dict().keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in opened.state_dict().items())
    with pytest.raises(ValueError, match=r"model='nosuch'; expected a VIT_FAMILY name .* or a checkpoint path"):
        find(section).config("smoke", model="nosuch")


def _odd_vit():
    """A checkpoint-like ViT of the kind real checkpoints bring: no Q/K/V bias, LayerNorm eps 1e-12, and an MLP width
    that timm's mlp_ratio rounds one unit short (int(28 * (61 / 28)) == 60)."""
    import torch

    from edgetune.models.vit import ViTShape, build_vit

    assert int(28 * (61 / 28)) == 60
    shape = ViTShape(img_size=16, patch_size=8, embed_dim=28, depth=3, num_heads=4, mlp_hidden=61)
    shape = ViTShape(**{**shape.__dict__, "qkv_bias": False, "norm_eps": 1e-12})
    torch.manual_seed(0)
    return shape, build_vit(shape, 5).eval()


def test_build_vit_keeps_qkv_bias_norm_eps_and_exact_mlp_width():
    from edgetune.models.vit import vit_shape

    shape, model = _odd_vit()
    assert all(b.attn.qkv.bias is None and b.mlp.fc1.out_features == 61 for b in model.blocks)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-12}
    assert vit_shape(model) == shape


def test_pruning_and_subnets_keep_the_checkpoints_architecture():
    from edgetune.customize.supernet import SubnetSpec, extract_subnet
    from edgetune.models.vit import prune_width, vit_shape

    shape, model = _odd_vit()
    x = torch.rand(2, 3, 16, 16)
    same = prune_width(model, 1.0).eval()
    assert torch.equal(same(x), model(x))  # width 1: an exact copy, eps and all
    for small in (prune_width(model, 0.5), extract_subnet(model, SubnetSpec(0.5, 2 / 3))):
        got = vit_shape(small)
        assert (got.qkv_bias, got.norm_eps) == (False, 1e-12), got
        assert all(b.attn.qkv.bias is None for b in small.blocks)


def test_a_checkpoint_with_an_unroundable_mlp_width_round_trips(tmp_path):
    from edgetune.models import load_vit
    from edgetune.models.load import save_timm_checkpoint, vit_from_kwargs, vit_kwargs_from_hf_config

    _, model = _odd_vit()
    weights, _ = save_timm_checkpoint(model, tmp_path / "odd.safetensors")
    loaded = load_vit(weights).eval()
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    hf = {"hidden_size": 28, "num_attention_heads": 4, "intermediate_size": 61, "num_hidden_layers": 2}
    hf.update(image_size=16, patch_size=8, qkv_bias=False, layer_norm_eps=1e-12)
    built = vit_from_kwargs(vit_kwargs_from_hf_config(hf))
    assert built.blocks[0].mlp.fc1.out_features == 61 and built.blocks[0].attn.qkv.bias is None
