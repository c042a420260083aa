"""The PEFT baselines through peft: trainable counts match the closed forms, rsLoRA scales by α/√r, AdaLoRA's
regulariser is active and its budget masks singular values while training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from edgetune.strato.methods import (
    MethodSpec,
    adalora_final_parameters,
    after_optimizer_step,
    allocation_for,
    expected_trainable,
    peft_config,
    wrap,
)
from edgetune.strato.spec import Allocation, module_shapes

CONFIG = LlamaConfig(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
# non-uniform, with rank-0 holes (layer 0 unadapted, k/v and down missing in places)
HOLEY = Allocation(((0, 0, 0, 0, 0, 0, 0), (4, 0, 2, 4, 8, 8, 0), (2, 2, 2, 2, 0, 0, 6), (8, 8, 8, 8, 4, 4, 4)))


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(CONFIG).eval()


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def batch(seed: int = 0, size: int = 2, seq: int = 12) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, CONFIG.vocab_size, (size, seq), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "labels": ids.clone()}


@pytest.mark.parametrize("method", ["lora", "rslora", "lora_mlp", "dora", "adalora", "strato"])
def test_trainable_count_matches_closed_form(method):
    spec = MethodSpec(method)
    allocation = HOLEY if method == "strato" else None
    model = wrap(tiny_model(), spec, total_step=20, allocation=allocation)
    assert trainable(model) == expected_trainable(spec, CONFIG, allocation=allocation) > 0


def test_closed_forms_by_hand():
    shapes = module_shapes(CONFIG)  # Σ(d_in + d_out) over the 7 modules = 512, over the MLP = 288
    assert sum(sum(s) for s in shapes.values()) == 512
    assert expected_trainable(MethodSpec("lora"), CONFIG) == 4 * 8 * 512
    assert expected_trainable(MethodSpec("dora"), CONFIG) == 4 * (8 * 512 + 32 + 16 + 16 + 32 + 64 + 64 + 32)
    assert expected_trainable(MethodSpec("adalora"), CONFIG) == 4 * 12 * (512 + 7)


def test_rslora_scales_by_alpha_over_sqrt_r():
    lora = wrap(tiny_model(), MethodSpec("lora", rank=4), total_step=1)
    rslora = wrap(tiny_model(), MethodSpec("rslora", rank=4), total_step=1)
    q = "base_model.model.model.layers.1.self_attn.q_proj"
    alpha = 2.0 * 4
    assert lora.get_submodule(q).scaling["default"] == pytest.approx(alpha / 4)
    assert rslora.get_submodule(q).scaling["default"] == pytest.approx(alpha / math.sqrt(4))


def test_lora_mlp_matches_lora_parameters():
    spec = MethodSpec("lora_mlp", rank=8)
    assert spec.matched_mlp_rank(CONFIG) == 14  # round(8 · 512 / 288)
    assert allocation_for(spec, CONFIG).rank(0, "q_proj") == 0
    mlp, lora = expected_trainable(spec, CONFIG), expected_trainable(MethodSpec("lora", rank=8), CONFIG)
    assert abs(mlp - lora) / lora < 0.1
    assert expected_trainable(MethodSpec("lora_mlp", mlp_rank=3), CONFIG) == 4 * 3 * 288


def test_adalora_orthogonal_regulariser_is_active():
    model = wrap(tiny_model(), MethodSpec("adalora"), total_step=20).train()
    b = batch()
    out = model(**b)
    logits = out.logits[:, :-1].reshape(-1, CONFIG.vocab_size)
    ce = F.cross_entropy(logits.float(), b["labels"][:, 1:].reshape(-1))
    assert out.loss.item() > ce.item() + 0.1  # A, B ~ N(0, 0.02): PᵀP and QQᵀ are far from I at init


def test_adalora_masks_singular_values_after_budgeting():
    spec = MethodSpec("adalora", init_r=12, target_r=4)
    model = wrap(tiny_model(), spec, total_step=20).train()
    config = model.peft_config["default"]
    assert (config.tinit, config.tfinal, config.total_step) == (2, 4, 20)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    matrices = 4 * 7
    kept = []
    for step in range(20):
        model(**batch(step)).loss.backward()
        optimizer.step()
        after_optimizer_step(model, spec, step)
        optimizer.zero_grad(set_to_none=True)
        kept.append(sum(int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n))
    assert kept[0] == 12 * matrices  # the first step moves every singular value off 0, no mask before tinit
    assert kept[-1] <= 4 * matrices < kept[0]  # after T − tfinal the final mask holds the target budget
    final = adalora_final_parameters(model)
    assert 0 < final < expected_trainable(spec, CONFIG) == trainable(model)  # peft masks; the tensors keep init_r


def test_after_optimizer_step_is_a_no_op_for_lora():
    model = wrap(tiny_model(), MethodSpec("lora"), total_step=5)
    before = {n: p.clone() for n, p in model.named_parameters()}
    after_optimizer_step(model, MethodSpec("lora"), 3)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_adalora_config_fields():
    config = peft_config(MethodSpec("adalora", target_r=6, alpha_per_rank=3.0), CONFIG, total_step=100)
    assert (config.tinit, config.tfinal, config.deltaT, config.lora_alpha) == (10, 20, 1, 18.0)
    assert config.task_type == "CAUSAL_LM" and sorted(config.target_modules) == sorted(module_shapes(CONFIG))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MethodSpec("qlora"), "method"),
        (lambda: MethodSpec("dora", dropout=0.1), "dropout"),
        (lambda: MethodSpec("lora", rank=0), "rank"),
        (lambda: MethodSpec("adalora", init_r=4, target_r=8), "target_r"),
        (lambda: MethodSpec("adalora", tinit_frac=0.6, tfinal_frac=0.5), "tinit_frac"),
        (lambda: peft_config(MethodSpec("strato"), CONFIG, total_step=10), "allocation"),
        (lambda: peft_config(MethodSpec("lora"), CONFIG, total_step=10, allocation=HOLEY), "allocation"),
        (lambda: allocation_for(MethodSpec("strato"), CONFIG), "controller"),
        (lambda: peft_config(MethodSpec("lora"), CONFIG, total_step=0), "total_step"),
    ],
)
def test_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()
