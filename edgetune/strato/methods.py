"""The PEFT baselines STRATO-PEFT is compared with, built through `peft`'s public API: LoRA (Hu et al., 2021,
arXiv 2106.09685), rsLoRA (Kalajdzievski, 2023, arXiv 2312.03732: scaling α/√r), LoRA on the MLP only, AdaLoRA
(Zhang et al., 2023, arXiv 2303.10512) and DoRA (Liu et al., 2024, arXiv 2402.09353); "strato" is plain LoRA at the
controller's per-module `Allocation`.

A `MethodSpec` is the method's immutable hyper-parameters; `wrap` builds the `PeftModel`, `expected_trainable` gives
the closed-form trainable-parameter count it must have, and `after_optimizer_step` is the one per-step hook a method
needs (AdaLoRA's budget allocation, which `peft` leaves to the training loop).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from edgetune.strato.spec import METHODS, MLP, MODULES, Allocation, module_shapes

LORA_FAMILY = ("lora", "rslora", "lora_mlp", "dora", "strato")


@dataclass(frozen=True)
class MethodSpec:
    """One method's hyper-parameters. `rank` is the LoRA rank of every adapter (lora, rslora, dora) and the LoRA
    reference `lora_mlp` is matched to; `lora_alpha` = `alpha_per_rank` · rank everywhere, so scaling is
    `alpha_per_rank` (α/r) or `alpha_per_rank`·√r (rsLoRA). AdaLoRA: adapters start at `init_r`, its budget falls
    to `target_r` per matrix on average between `tinit_frac` and `1 − tfinal_frac` of training."""

    method: str
    rank: int = 8
    alpha_per_rank: float = 2.0
    dropout: float = 0.0
    mlp_rank: int | None = None  # lora_mlp; None → matched to LoRA's parameters at `rank`
    init_r: int = 12
    target_r: int = 8
    tinit_frac: float = 0.1
    tfinal_frac: float = 0.2
    delta_t: int = 1
    orth_reg_weight: float = 0.5

    def __post_init__(self):
        checks = [
            (self.method in METHODS, "method", self.method, f"one of {METHODS}"),
            (self.rank > 0, "rank", self.rank, "a positive integer"),
            (self.alpha_per_rank > 0, "alpha_per_rank", self.alpha_per_rank, "a positive float"),
            (0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)"),
            (self.mlp_rank is None or self.mlp_rank > 0, "mlp_rank", self.mlp_rank, "None or a positive integer"),
            (
                0 < self.target_r <= self.init_r,
                "target_r/init_r",
                (self.target_r, self.init_r),
                "0 < target_r ≤ init_r",
            ),
            (
                self.tinit_frac >= 0 and self.tfinal_frac >= 0 and self.tinit_frac + self.tfinal_frac < 1,
                "tinit_frac/tfinal_frac",
                (self.tinit_frac, self.tfinal_frac),
                "non-negative with a sum < 1 (AdaLoRA needs a budgeting phase)",
            ),
            (self.delta_t > 0, "delta_t", self.delta_t, "a positive integer"),
            (self.orth_reg_weight >= 0, "orth_reg_weight", self.orth_reg_weight, "≥ 0"),
            # peft's DoRA re-runs the frozen base layer on the dropped-out input when dropout > 0 (an extra full
            # matmul per module), which the cost model does not count; keep DoRA at dropout 0.
            (self.method != "dora" or self.dropout == 0, "dropout", self.dropout, "0 for dora"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"MethodSpec.{key} = {value!r}; expected {expected}")

    def matched_mlp_rank(self, model_config) -> int:
        """`mlp_rank`, or the MLP-only rank whose parameters are nearest LoRA's at `rank` (≥ 1)."""
        if self.mlp_rank is not None:
            return self.mlp_rank
        shapes = module_shapes(model_config)
        every = sum(sum(shapes[m]) for m in MODULES)
        mlp = sum(sum(shapes[m]) for m in MLP)
        return max(1, round(self.rank * every / mlp))


def allocation_for(spec: MethodSpec, model_config) -> Allocation | None:
    """The LoRA `Allocation` a baseline trains: uniform `rank` on all 7 modules of every layer (lora, rslora, dora),
    or the matched MLP rank on gate/up/down (lora_mlp). AdaLoRA has none (its ranks are found while training);
    STRATO's comes from its controller, so asking here is an error."""
    layers = model_config.num_hidden_layers
    if spec.method in ("lora", "rslora", "dora"):
        return Allocation.uniform(layers, spec.rank)
    if spec.method == "lora_mlp":
        return Allocation.uniform(layers, spec.matched_mlp_rank(model_config), MLP)
    if spec.method == "adalora":
        return None
    raise ValueError("method 'strato' has no fixed allocation; pass the controller's Allocation to peft_config/wrap")


def _allocation(spec: MethodSpec, model_config, allocation: Allocation | None) -> Allocation | None:
    if spec.method == "strato":
        if allocation is None:
            raise ValueError("method 'strato' needs `allocation` (the controller's Allocation)")
        return allocation
    if allocation is not None:
        raise ValueError(f"method {spec.method!r} builds its own allocation; pass allocation=None")
    return allocation_for(spec, model_config)


def peft_config(spec: MethodSpec, model_config, *, total_step: int, allocation: Allocation | None = None):
    """The `peft` config of the method: a `LoraConfig` from the allocation (rsLoRA and DoRA by their flags) or an
    `AdaLoraConfig`. `total_step` is the number of optimizer steps (AdaLoRA's schedule reads it).

    AdaLoRA gets `task_type="CAUSAL_LM"`: without a task type `get_peft_model` returns a plain `PeftModel` whose
    forward bypasses `AdaLoraModel.forward` and silently drops the orthogonal regulariser."""
    if total_step <= 0:
        raise ValueError(f"total_step = {total_step}; expected a positive number of optimizer steps")
    if spec.method == "adalora":
        from peft import AdaLoraConfig

        if allocation is not None:
            raise ValueError("method 'adalora' finds its own ranks; pass allocation=None")
        return AdaLoraConfig(
            init_r=spec.init_r,
            target_r=spec.target_r,
            tinit=int(spec.tinit_frac * total_step),
            tfinal=int(spec.tfinal_frac * total_step),
            deltaT=spec.delta_t,
            total_step=total_step,
            orth_reg_weight=spec.orth_reg_weight,
            target_modules=list(MODULES),
            lora_alpha=spec.alpha_per_rank * spec.target_r,
            lora_dropout=spec.dropout,
            task_type="CAUSAL_LM",
        )
    return _allocation(spec, model_config, allocation).to_lora_config(
        alpha_per_rank=spec.alpha_per_rank,
        dropout=spec.dropout,
        use_rslora=spec.method == "rslora",
        use_dora=spec.method == "dora",
    )


def expected_trainable(spec: MethodSpec, model_config, *, allocation: Allocation | None = None) -> int:
    """Closed-form trainable parameters while training: Σ r·(d_in + d_out) for the LoRA family, + Σ d_out (the
    magnitude vector) for DoRA, and for AdaLoRA Σ init_r·(d_in + d_out + 1) over every matrix (P, Q and the
    singular values E), since peft masks rather than shrinks."""
    shapes = module_shapes(model_config)
    if spec.method == "adalora":
        per_layer = sum(spec.init_r * (sum(shapes[m]) + 1) for m in MODULES)
        return model_config.num_hidden_layers * per_layer
    return _allocation(spec, model_config, allocation).parameters(shapes, dora=spec.method == "dora")


def adalora_final_parameters(peft_model: nn.Module, adapter: str = "default") -> int:
    """AdaLoRA's adapter size after its final allocation: Σ r_kept·(d_in + d_out + 1), with r_kept the non-zero
    entries of each module's `lora_E` (call after training, once the final mask is applied).

    This is the size of the adapter peft *saves* (cut down by `rank_pattern`). While training, AdaLoRA costs its
    `init_r` size throughout: peft zeroes pruned singular values by masking and never shrinks the tensors, so
    gradients, optimizer state and FLOPs stay at `expected_trainable`."""
    from peft.tuners.adalora import AdaLoraLayer

    total = 0
    for module in peft_model.modules():
        if isinstance(module, AdaLoraLayer) and adapter in module.lora_E:
            kept = int((module.lora_E[adapter] != 0).sum())
            total += kept * (module.in_features + module.out_features + 1)
    return total


def wrap(model: nn.Module, spec: MethodSpec, *, total_step: int, allocation: Allocation | None = None):
    """`peft.get_peft_model` with the method's config: base weights frozen, adapters trainable."""
    from peft import get_peft_model

    config = peft_config(spec, model.config, total_step=total_step, allocation=allocation)
    with warnings.catch_warnings():  # peft reads transformers' deprecated `is_gradient_checkpointing`: not ours to fix
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def after_optimizer_step(peft_model: nn.Module, spec: MethodSpec, step: int) -> None:
    """The per-step hook of a method: AdaLoRA updates its importance scores and budget mask from the current
    gradients, so it must run after `optimizer.step()` and before `optimizer.zero_grad()`. Others: nothing."""
    if spec.method == "adalora":
        peft_model.base_model.update_and_allocate(step)
