"""Resizing LoRA adapters: growing is exact, shrinking is the truncated SVD, the tensors really change shape, the
optimizer carries state across, the schedule respects its budget and bounds, and the emitted config rebuilds the
resized model."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from edgetune.strato.resize import (
    RankSchedule,
    adapter_layers,
    current_ranks,
    module_utility,
    rebuild_optimizer,
    resize,
    schedule_step,
    to_allocation,
)
from edgetune.strato.spec import Allocation

CONFIG = LlamaConfig(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
Q1, K1, DOWN2 = "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.2.mlp.down_proj"


def lora_model(rslora: bool = False, rank: int = 8, dora: bool = False):
    """LoRA at `rank` on every module; B randomised so every adapter has a non-zero ΔW."""
    torch.manual_seed(0)
    base = LlamaForCausalLM(CONFIG)
    config = Allocation.uniform(4, rank).to_lora_config(use_rslora=rslora, use_dora=dora)
    model = get_peft_model(base, config).eval()
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B["default"].weight.normal_(0, 0.1)
    return model


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def delta(layer) -> torch.Tensor:
    return layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight


@pytest.mark.parametrize("rslora", [False, True])
def test_grow_is_exact(rslora):
    model = lora_model(rslora)
    before, count = logits(model), trainable(model)
    layer = adapter_layers(model)[K1]
    resize(layer, 13, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(logits(model), before, atol=1e-6)
    assert trainable(model) == count + 5 * (32 + 16)
    assert layer.lora_A["default"].weight.shape == (13, 32) and layer.lora_B["default"].weight.shape == (16, 13)
    assert layer.r["default"] == 13 and layer.lora_alpha["default"] == pytest.approx(2.0 * 13)
    assert layer.scaling["default"] == pytest.approx(2.0 * 13**0.5 if rslora else 2.0)


def test_same_rank_is_a_no_op():
    model = lora_model()
    before, layer = logits(model), adapter_layers(model)[Q1]
    a = layer.lora_A["default"].weight
    resize(layer, 8, generator=torch.Generator())
    assert layer.lora_A["default"].weight is a
    assert torch.equal(logits(model), before)


@pytest.mark.parametrize("rslora", [False, True])
def test_shrinking_a_low_rank_delta_is_exact(rslora):
    model = lora_model(rslora)
    layer = adapter_layers(model)[DOWN2]
    with torch.no_grad():  # true rank 2: only two columns of B are non-zero
        layer.lora_B["default"].weight[:, 2:] = 0
    before, target, count = logits(model), delta(layer).clone(), trainable(model)
    resize(layer, 2, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(delta(layer), target, atol=1e-6)
    assert torch.allclose(logits(model), before, atol=1e-6)
    assert trainable(model) == count - 6 * (64 + 32)  # the tensors shrank, nothing is masked
    assert layer.lora_A["default"].weight.shape == (2, 64) and layer.lora_B["default"].weight.shape == (32, 2)


def test_shrink_is_the_truncated_svd():
    model = lora_model()
    layer = adapter_layers(model)[Q1]
    full = delta(layer).detach().double()
    u, s, vh = torch.linalg.svd(full)
    best = (u[:, :3] * s[:3]) @ vh[:3]
    resize(layer, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(delta(layer).double(), best, atol=1e-5)
    assert all(p.requires_grad for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight))


def test_shrinking_a_zero_adapter_keeps_it_trainable():
    model = lora_model()
    layer = adapter_layers(model)[Q1]
    with torch.no_grad():
        layer.lora_B["default"].weight.zero_()
    resize(layer, 4, generator=torch.Generator().manual_seed(1))
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    assert torch.count_nonzero(layer.lora_A["default"].weight) == 4 * 32  # fresh A rows, not A = B = 0


def test_optimizer_is_rebuilt_with_state_and_training_goes_on():
    model = lora_model().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    model(input_ids=IDS, labels=IDS).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    layer = adapter_layers(model)[Q1]
    untouched = adapter_layers(model)[DOWN2].lora_A["default"].weight
    resize(layer, 12, generator=torch.Generator().manual_seed(1))
    rebuilt = rebuild_optimizer(optimizer, model)
    assert rebuilt.state[untouched] is optimizer.state[untouched]
    new_a = layer.lora_A["default"].weight
    assert new_a not in rebuilt.state
    assert rebuilt.param_groups[0]["weight_decay"] == 0.01 and rebuilt.param_groups[0]["lr"] == 1e-3
    assert sum(p.numel() for g in rebuilt.param_groups for p in g["params"]) == trainable(model)
    loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    assert torch.isfinite(loss) and new_a.grad is not None and layer.lora_B["default"].weight.grad.abs().sum() > 0
    rebuilt.step()
    assert new_a in rebuilt.state


def test_utility_is_relative_to_the_mean():
    model = lora_model().train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    utility = module_utility(model)
    assert len(utility) == 28 and sum(utility.values()) / 28 == pytest.approx(1.0)
    assert all(u >= 0 for u in utility.values())
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="backward"):
        module_utility(model)


def test_schedule_respects_bounds():
    model = lora_model()
    schedule = RankSchedule(every=10, grow=2.0, shrink=2.0, min_rank=3, max_rank=12)
    utilities = {Q1: 5.0, K1: 0.1, DOWN2: 1.0}
    changed = schedule_step(model, schedule, utilities, budget=10**9, generator=torch.Generator().manual_seed(0))
    assert changed == {Q1: (8, 12), K1: (8, 4)}
    changed = schedule_step(model, schedule, utilities, budget=10**9, generator=torch.Generator().manual_seed(0))
    assert changed == {K1: (4, 3)}  # q at max_rank; k floored at min_rank
    assert current_ranks(model)[Q1] == 12 and current_ranks(model)[K1] == 3 and current_ranks(model)[DOWN2] == 8


def test_schedule_respects_the_budget():
    model = lora_model()
    size = sum(r * 512 for r in [8] * 4)  # Σ r(d_in + d_out) at uniform r = 8
    schedule = RankSchedule(every=1, grow=1.5, max_rank=32)
    utilities = {Q1: 3.0, K1: 2.0, DOWN2: 0.1}
    # down_proj 8 → 5 frees 3·96 = 288; q 8 → 12 costs 4·64 = 256, k 8 → 12 costs 4·48 = 192: only q fits
    changed = schedule_step(model, schedule, utilities, budget=size, generator=torch.Generator().manual_seed(0))
    assert changed == {Q1: (8, 12), DOWN2: (8, 5)}
    total = sum(
        layer.r["default"] * (layer.in_features + layer.out_features) for layer in adapter_layers(model).values()
    )
    assert total <= size == total + 288 - 256
    assert trainable(model) == total


def test_emitted_config_rebuilds_the_resized_model():
    model = lora_model(rslora=True)
    layers, g = adapter_layers(model), torch.Generator().manual_seed(0)
    resize(layers[Q1], 12, generator=g)
    resize(layers[DOWN2], 3, generator=g)
    resize(layers["model.layers.3.mlp.up_proj"], 5, generator=g)
    allocation = to_allocation(current_ranks(model), CONFIG.num_hidden_layers)
    assert allocation.rank(1, "q_proj") == 12 and allocation.rank(2, "down_proj") == 3
    torch.manual_seed(0)
    rebuilt = get_peft_model(LlamaForCausalLM(CONFIG), allocation.to_lora_config(use_rslora=True)).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(logits(rebuilt), logits(model), atol=1e-6)
    assert current_ranks(rebuilt) == current_ranks(model)


def test_refusals():
    dora = lora_model(dora=True)
    with pytest.raises(ValueError, match="DoRA"):
        resize(adapter_layers(dora)[Q1], 4, generator=torch.Generator())
    with pytest.raises(ValueError, match="new_rank"):
        resize(adapter_layers(lora_model())[Q1], 0, generator=torch.Generator())
    with pytest.raises(ValueError, match="grow"):
        RankSchedule(every=5, grow=1.0)
    with pytest.raises(ValueError, match="min_rank"):
        RankSchedule(every=5, min_rank=8, max_rank=4)
    with pytest.raises(ValueError, match="every"):
        RankSchedule(every=0)
    with pytest.raises(ValueError, match="utilities"):
        schedule_step(lora_model(), RankSchedule(every=1), {"lm_head": 2.0}, 10**6, generator=torch.Generator())
    assert RankSchedule(every=5).due(10) and not RankSchedule(every=5).due(0)
