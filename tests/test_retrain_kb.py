import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgetune.models.vit import ViTShape, _top, build_vit, unit_l1, vit_shape
from edgetune.retrain.kb import (
    FactorizedLinear,
    Gate,
    GatedMlp,
    NeuronIndex,
    build_knowledge_base,
    edge_model,
    gate_l1,
    gated_layers,
    merge_into_kb,
    parameter_neutral_rank,
    set_sparsity,
)

SHAPE = ViTShape(32, 8, 48, 4, 3, 96)  # C = 48, 3 heads of 16, MLP 96


@pytest.fixture
def fm():
    torch.manual_seed(0)
    return build_vit(SHAPE, 5).eval()


@pytest.fixture
def kb(fm):
    torch.manual_seed(1)
    return build_knowledge_base(fm, 0.67, 0.5).eval()  # 2 heads, 48 MLP units, gated


@pytest.fixture
def sample():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_parameter_neutral_rank_rounds_up_and_clamps():
    assert parameter_neutral_rank(768, 768) == 384
    assert parameter_neutral_rank(768, 2304) == 576  # ViT-B's fused qkv
    assert parameter_neutral_rank(768, 128) == 112  # 109.7 -> 112, BlockTrainer's ViT-B kb rank
    assert parameter_neutral_rank(48, 96) == 32 and parameter_neutral_rank(32, 48) == 24  # 19.2 -> 24
    assert parameter_neutral_rank(4, 1000) == 4  # 3.98 -> 8, clamped to min(m, n)
    assert parameter_neutral_rank(1, 1) == 1
    assert parameter_neutral_rank(30, 30, divisor=1) == 15


def test_factorized_linear_is_exact_at_full_rank_and_optimal_below():
    torch.manual_seed(0)
    linear = nn.Linear(24, 40)
    x = torch.randn(2, 5, 24)
    full = FactorizedLinear.from_linear(linear, 24)
    assert torch.allclose(full(x), linear(x), atol=1e-5)
    assert full.down.weight.shape == (24, 24) and full.up.weight.shape == (40, 24) and full.gate is None
    s = torch.linalg.svdvals(linear.weight.detach().double())
    for rank in (4, 12):
        low = FactorizedLinear.from_linear(linear, rank)
        error = (low.up.weight @ low.down.weight - linear.weight).norm().item()
        assert error == pytest.approx(s[rank:].square().sum().sqrt().item(), rel=1e-4)  # Eckart-Young
        assert torch.allclose(low.up.weight.norm(dim=0), low.down.weight.norm(dim=1), atol=1e-5)  # √S both sides
    with pytest.raises(ValueError, match=r"rank=25 must lie in \[1, 24\]"):
        FactorizedLinear.from_linear(linear, 25)


def test_full_kb_without_gates_reproduces_the_fm(fm):
    before = _params(fm)
    kb = build_knowledge_base(fm, 1.0, 1.0, full_rank=True, gates=False).eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(kb(x), fm(x), atol=1e-4)
    assert vit_shape(kb) == vit_shape(fm)
    for b_kb, b_fm in zip(kb.blocks, fm.blocks, strict=True):
        assert b_kb.attn.qkv.down.weight.shape == (48, 48) and b_kb.attn.qkv.up.weight.shape == (144, 48)
        assert b_kb.mlp.fc1.weight.shape == b_fm.mlp.fc1.weight.shape
        assert b_kb.mlp.fc2.weight.shape == b_fm.mlp.fc2.weight.shape
    assert all(torch.equal(before[k], v) for k, v in _params(fm).items())  # fm untouched
    assert len(gated_layers(kb)) == 12 and all(layer.gate is None for _, _, layer in gated_layers(kb))


def test_pruned_kb_has_the_expected_parameter_count(fm):
    kb = build_knowledge_base(fm, 0.5, 0.25, gates=False)
    c, heads, hidden = 48, round(0.5 * 3), 24  # 2 heads of 16 -> attention width 32
    a = heads * 16
    r_qkv, r_proj = parameter_neutral_rank(c, 3 * a), parameter_neutral_rank(a, c)
    assert (r_qkv, r_proj) == (32, 24)
    block = (c * r_qkv + r_qkv * 3 * a + 3 * a) + (a * r_proj + r_proj * c + c)  # factorized qkv, proj
    block += (c * hidden + hidden) + (hidden * c + c) + 4 * c  # MLP, two LayerNorms
    outside = sum(p.numel() for n, p in fm.named_parameters() if not n.startswith("blocks."))
    assert sum(p.numel() for p in kb.parameters()) == outside + 4 * block
    gated = build_knowledge_base(fm, 0.5, 0.25)
    gate = (c * 6 + 6 + 6 * r_qkv + r_qkv) + (a * 4 + 4 + 4 * r_proj + r_proj) + (c * 6 + 6 + 6 * hidden + hidden)
    assert sum(p.numel() for p in gated.parameters()) == outside + 4 * (block + gate)
    # gates add parameters under `.gate.` only; every other name and shape is the ungated kb's
    plain = {n: p.shape for n, p in gated.named_parameters() if ".gate." not in n}
    assert plain == {n: p.shape for n, p in kb.named_parameters()}
    assert gated(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(("name", "value"), [("head_keep", 0.0), ("mlp_keep", 1.5)])
def test_kb_rejects_bad_shares(fm, name, value):
    with pytest.raises(ValueError, match=rf"{name}={value} must lie in \(0, 1\]"):
        build_knowledge_base(fm, **{"head_keep": 0.5, "mlp_keep": 0.5, name: value})


def test_gate_k_winners_zero_exactly_the_smallest():
    torch.manual_seed(0)
    gate = Gate(48, 32)
    assert gate.fc1.out_features == 6 and torch.equal(gate.fc2.bias, torch.ones(32))
    with torch.no_grad():
        gate.fc2.weight.mul_(0.01)  # raw ≈ 1 > 0, so every zero comes from k-winners
    x = torch.randn(5, 17, 48)
    assert torch.equal(gate(x), gate.raw) and (gate.last > 0).all()
    gate.sparsity = 0.3  # int(0.3 * 32) = 9
    g = gate(x)
    assert ((g == 0).sum(1) == 9).all()
    assert torch.equal(g[g != 0], gate.raw[g != 0]) and torch.equal(gate.last, g)
    assert (gate.raw.masked_fill(g != 0, -1).max(1).values <= gate.raw.masked_fill(g == 0, 9).min(1).values).all()
    assert gate.raw.requires_grad and not gate.last.requires_grad
    copy.deepcopy(gate)  # the cached graph does not block copying


def test_set_sparsity_and_gate_l1(kb):
    assert gate_l1(kb).item() == 0.0
    set_sparsity(kb, [0.0, 0.5, 0.25, 0.0])
    assert [layer.gate.sparsity for _, _, layer in gated_layers(kb)] == [0.0] * 3 + [0.5] * 3 + [0.25] * 3 + [0.0] * 3
    kb.train()(torch.randn(2, 3, 32, 32))
    penalty = gate_l1(kb)
    expected = sum(layer.gate.raw.abs().mean() for _, _, layer in gated_layers(kb))
    assert penalty.dim() == 0 and penalty.item() == pytest.approx(expected.item()) and penalty.item() > 0
    penalty.backward()
    assert all(layer.gate.fc2.bias.grad.abs().sum() > 0 for _, _, layer in gated_layers(kb))
    copy.deepcopy(kb)
    with pytest.raises(ValueError, match="sparsity has 3 values but the model has 4 blocks"):
        set_sparsity(kb, [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"sparsity=1.0 must lie in \[0, 1\)"):
        set_sparsity(kb, 1.0)


def test_edge_model_matches_the_gated_kb_on_its_sample(kb, sample):
    plan = [True, False, True, False]
    set_sparsity(kb, [0.75 if c else 0.0 for c in plan])
    with torch.no_grad():
        expected = kb(sample)
    small = edge_model(kb, sample, plan, 0.75)
    assert torch.allclose(small(sample), expected, atol=1e-5)
    full = {"attn.qkv": 32, "attn.proj": 24, "mlp": 48}  # kb channels: ranks 32, 24 and 48 MLP units
    for i, name, layer in gated_layers(small):
        kept = full[name] - int(0.75 * full[name]) if plan[i] else full[name]
        assert layer.channels == kept and layer.gate is None
        assert layer.kept.shape == (kept,) and layer.scale.shape == (kept,)
        assert torch.equal(layer.kept, layer.kept.sort().values)
    qkv = small.blocks[0].attn.qkv
    assert torch.equal(qkv.down.weight, kb.blocks[0].attn.qkv.down.weight[qkv.kept])
    assert torch.equal(qkv.scale, kb.blocks[0].attn.qkv.gate.last[0, qkv.kept])
    assert all(p.requires_grad for p in small.parameters())
    assert not any(".gate." in n for n, _ in small.named_parameters())
    with pytest.raises(ValueError, match="compressed has 3 entries but the kb has 4 blocks"):
        edge_model(kb, sample, plan[:3], 0.75)


def test_merge_of_an_untrained_edge_model_changes_nothing(kb, sample):
    before = _params(kb)
    small = edge_model(kb, sample, [True, True, False, False], 0.5)
    deltas = merge_into_kb(kb, small, 0.5)
    assert all(torch.equal(before[k], v) for k, v in _params(kb).items())
    assert "blocks.0.attn.qkv.down.weight" in deltas and "head.weight" in deltas
    assert all(d.shape == before[k].shape and not d.any() for k, d in deltas.items())
    assert not any(".gate." in k for k in deltas)


def test_merge_moves_the_kb_halfway_at_the_kept_positions(kb, sample):
    before = _params(kb)
    small = edge_model(kb, sample, [True, True, False, False], 0.5)
    layer = small.blocks[1].mlp
    with torch.no_grad():
        layer.fc1.weight.add_(1.0)  # every kept fc1 row
        layer.fc2.weight[:, 3] += 2.0  # one kept unit's fc2 column
    deltas = merge_into_kb(kb, small, 0.5)
    fc1, fc2 = "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.weight"
    expected1 = torch.zeros_like(before[fc1])
    expected1[layer.kept] = 0.5
    expected2 = torch.zeros_like(before[fc2])
    expected2[:, layer.kept[3]] = 1.0
    assert torch.allclose(deltas[fc1], expected1, atol=1e-6) and torch.allclose(deltas[fc2], expected2, atol=1e-6)
    assert torch.allclose(kb.get_parameter(fc1) - before[fc1], expected1, atol=1e-6)
    assert layer.kept.numel() == 24 and (deltas[fc1].abs().sum(1) > 0).sum() == 24
    after = _params(kb)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in (fc1, fc2))
    small.extra = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="small parameter 'extra' has no counterpart in the kb"):
        merge_into_kb(kb, small)


def test_neuron_index_recovers_the_kept_fc1_units(fm):
    kb = build_knowledge_base(fm, 0.67, 0.5)
    index = NeuronIndex.fit(kb, fm, ridge=1e-5)
    assert len(index.entries) == 16
    entry = index.entries["blocks.2.mlp.fc1.weight"]
    assert entry.fm_name == "blocks.2.mlp.fc1.weight" and entry.axis == 0 and entry.matrix.shape == (48, 96)
    kept = _top(unit_l1(fm.blocks[2]), 48)  # the kb's fc1 rows are these fm rows
    assert torch.equal(entry.matrix.argmax(1), kept)
    assert index.entries["blocks.0.attn.proj.up.weight"].matrix.shape == (24, 48)  # proj rank 24 over fm columns
    assert index.entries["blocks.0.attn.qkv.down.weight"].matrix.shape == (32, 144)
    residual = index.residual(kb, fm)
    assert max(residual.values()) < 1e-3
    assert index.residual(kb, fm)["blocks.2.mlp.fc1.weight"] < 1e-4
    default = NeuronIndex.fit(kb, fm).residual(kb, fm)  # the ridge (1e-3, relative) costs about that much
    assert max(default.values()) < 1e-2


def test_projection_and_pull(fm):
    kb = build_knowledge_base(fm, 0.67, 0.5)
    index = NeuronIndex.fit(kb, fm)
    name = "blocks.1.mlp.fc2.weight"
    zeros = {k: torch.zeros_like(p) for k, p in kb.named_parameters() if p.dim() == 2}
    before = _params(fm)
    index.project_to_fm(fm, zeros, alpha=0.1)
    assert all(torch.equal(before[k], v) for k, v in _params(fm).items())
    delta = torch.randn_like(kb.get_parameter(name))  # (C, h), axis 1
    index.project_to_fm(fm, {name: delta, "head.weight": torch.ones(5, 48)}, alpha=0.1)
    moved = fm.get_parameter(name) - before[name]
    assert torch.allclose(moved, 0.1 * delta @ index.entries[name].matrix, atol=1e-6)
    assert torch.equal(fm.head.weight, before["head.weight"])  # no entry: ignored
    index.pull_kb(kb, fm, alpha=1.0)
    assert torch.allclose(kb.get_parameter(name), fm.get_parameter(name) @ index.entries[name].matrix.T, atol=1e-6)


def test_neuron_index_state_dict_round_trip(fm, tmp_path):
    kb = build_knowledge_base(fm, 0.67, 0.5)
    index = NeuronIndex.fit(kb, fm)
    save_file(index.state_dict(), str(tmp_path / "index.safetensors"))
    loaded = NeuronIndex.from_state_dict(load_file(str(tmp_path / "index.safetensors")), kb, fm)
    assert loaded.entries.keys() == index.entries.keys()
    for name, entry in index.entries.items():
        other = loaded.entries[name]
        assert (other.fm_name, other.axis) == (entry.fm_name, entry.axis) and torch.equal(other.matrix, entry.matrix)
    wider = build_knowledge_base(fm, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"index for blocks.0.attn.qkv.down.weight has shape \(32, 144\)"):
        NeuronIndex.from_state_dict(index.state_dict(), wider, fm)


def test_gated_mlp_from_mlp_keeps_timm_names(fm):
    mlp = GatedMlp.from_mlp(fm.blocks[0].mlp)
    assert set(mlp.state_dict()) == set(fm.blocks[0].mlp.state_dict())
    x = torch.randn(2, 17, 48)
    assert torch.equal(mlp(x), fm.blocks[0].mlp(x))
    assert mlp.fc1.weight.data_ptr() != fm.blocks[0].mlp.fc1.weight.data_ptr()
