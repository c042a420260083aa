"""The cost model: counted training FLOPs fall with the lowest adapted layer, the closed form matches the counter,
rank matters far less than placement, memory follows trainable count and depth, and the normalized cost."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from edgetune.strato.cost import (
    Cost,
    allocation_cost,
    analytic_training_flops,
    saved_activation_bytes,
    step_memory,
    training_flops,
)
from edgetune.strato.spec import MLP, Allocation


def config(hidden: int = 32, inter: int = 64) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=128,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )


CONFIG = config()
WIDE = config(512, 1024)  # d ≫ r, as in real models, for rank-vs-placement
B, T = 2, 12
IDS = torch.randint(0, 128, (B, T), generator=torch.Generator().manual_seed(0))
BATCH = {"input_ids": IDS, "labels": IDS.clone()}


def above(k: int, rank: int = 8, layers: int = 4) -> Allocation:
    """All 7 modules at `rank` in layers ≥ k."""
    return Allocation(tuple(tuple([rank if i >= k else 0] * 7) for i in range(layers)))


def peft_model(cfg, allocation: Allocation, dora: bool = False):
    torch.manual_seed(0)
    return get_peft_model(LlamaForCausalLM(cfg), allocation.to_lora_config(use_dora=dora))


def counted(cfg, allocation: Allocation | None, dora: bool = False) -> int:
    if allocation is None:  # full fine-tuning
        torch.manual_seed(0)
        return training_flops(LlamaForCausalLM(cfg), BATCH)
    return training_flops(peft_model(cfg, allocation, dora), BATCH)


def analytic(cfg, allocation: Allocation | None, dora: bool = False) -> float:
    return analytic_training_flops(cfg, allocation, tokens=B * T, seq=T, dora=dora, full=allocation is None)


def test_flops_fall_strictly_as_lowest_layer_rises():
    measured = [counted(CONFIG, above(k)) for k in range(4)]
    closed = [analytic(CONFIG, above(k)) for k in range(4)]
    assert all(a > b for a, b in zip(measured, measured[1:], strict=False))
    assert all(a > b for a, b in zip(closed, closed[1:], strict=False))


@pytest.mark.parametrize(
    "case",
    ["lora all layers", "lora top half", "lora mlp only", "full fine-tuning", "dora all layers", "holey"],
)
def test_analytic_matches_counter(case):
    allocation, dora = {
        "lora all layers": (above(0), False),
        "lora top half": (above(2), False),
        "lora mlp only": (Allocation.uniform(4, 8, MLP), False),
        "full fine-tuning": (None, False),
        "dora all layers": (above(0), True),
        "holey": (Allocation(((0,) * 7, (4, 0, 2, 0, 0, 0, 0), (0, 0, 0, 0, 0, 8, 0), (2,) * 7)), False),
    }[case]
    got, want = counted(CONFIG, allocation, dora), analytic(CONFIG, allocation, dora)
    assert abs(want / got - 1) < 0.05
    assert want == got  # matmul-exact on Llama: norms, rotary, softmax and the loss are not matmuls


def test_rank_barely_matters_next_to_placement():
    low, high = counted(WIDE, above(0, rank=2)), counted(WIDE, above(0, rank=16))
    top = counted(WIDE, above(3, rank=16))
    assert high / low - 1 < 0.10
    assert 1 - top / high > 0.20
    assert analytic(WIDE, above(0, rank=16)) / analytic(WIDE, above(0, rank=2)) - 1 < 0.10


def test_training_flops_leaves_no_gradients_and_keeps_mode():
    model = peft_model(CONFIG, above(1)).eval()
    training_flops(model, BATCH)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert model.get_base_model().config._attn_implementation == "sdpa"


def test_step_memory_follows_trainable_count_and_depth():
    cpu = torch.device("cpu")
    small, large = (
        step_memory(peft_model(CONFIG, above(0, 2)), BATCH, cpu),
        step_memory(peft_model(CONFIG, above(0, 16)), BATCH, cpu),
    )
    assert large > small
    depth = [step_memory(peft_model(CONFIG, above(k)), BATCH, cpu) for k in range(4)]
    assert all(a > b for a, b in zip(depth, depth[1:], strict=False))
    # the closed form tracks the modelled step memory (its ACT_* constants were fitted on these models)
    for k, measured in enumerate(depth):
        cost = allocation_cost(CONFIG, above(k), tokens=B * T, seq=T)
        assert abs(cost.memory_bytes / measured - 1) < 0.02


def test_saved_activations_leave_out_parameters():
    model = peft_model(CONFIG, above(3))
    saved = saved_activation_bytes(model, BATCH)
    assert 0 < saved < 4 * B * T * 1024  # activations of one layer + logits, not the model's weights
    assert all(p.grad is None for p in model.parameters())


def test_allocation_cost_params_and_flops():
    cost = allocation_cost(CONFIG, above(2), tokens=B * T, seq=T)
    assert cost.params == 2 * 8 * 512
    assert cost.flops_per_step == analytic(CONFIG, above(2))
    assert allocation_cost(CONFIG, above(2), tokens=B * T, seq=T, dora=True).params == cost.params + 2 * 256


def test_normalized_cost():
    ref = Cost(params=100, flops_per_step=1000.0, memory_bytes=50)
    cost = Cost(params=50, flops_per_step=800.0, memory_bytes=50)
    assert cost.normalized(ref, {"params": 0.5, "flops": 0.5}) == pytest.approx(0.5 * 0.5 + 0.5 * 0.8)
    assert cost.normalized(ref, {"params": 1, "flops": 1, "memory": 2}) == pytest.approx(0.5 + 0.8 + 2)
    assert ref.normalized(ref, {"flops": 3}) == pytest.approx(3)
    for weights in ({"params": -1, "flops": 2}, {"params": 0}, {}, {"latency": 1}):
        with pytest.raises(ValueError, match="weights"):
            cost.normalized(ref, weights)
    with pytest.raises(ValueError, match="memory"):
        cost.normalized(Cost(1, 1.0, 0), {"memory": 1})


def test_analytic_needs_an_allocation_or_full():
    with pytest.raises(ValueError, match="full"):
        analytic_training_flops(CONFIG, None, tokens=4, seq=4)
    with pytest.raises(ValueError, match="layers"):
        analytic_training_flops(CONFIG, above(0, layers=3), tokens=4, seq=4)
