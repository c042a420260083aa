"""The cost model of a PEFT configuration: trainable parameters, FLOPs of one training step and its peak memory,
counted on a model (`training_flops`, `step_memory`) or in closed form from an `Allocation` (`allocation_cost`),
the latter fast enough to price every candidate the STRATO controller proposes.

The FLOP model counts matmuls, which is what `torch.utils.flop_counter.FlopCounterMode` counts (Kaplan et al.,
2020, arXiv 2001.08361: forward 2N per token, backward 2N for activation gradients + 2N for weight gradients).
With LoRA the frozen weights get no weight gradients, and autograd computes an activation gradient only for
tensors that require grad: nothing below the lowest adapted layer has a backward pass, so *where* adapters sit
moves training FLOPs far more than their rank does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from edgetune.strato.spec import MODULES, Allocation, module_shapes

FP32 = 4  # bytes
OPTIMIZER_BYTES = 16  # per trainable parameter: grad 4 + AdamW moments 8 + an fp32 master copy 4
# Activations autograd saves per adapted layer and token, in fp32 words: ACT_HIDDEN·h + ACT_INTER·intermediate
# + ACT_EXTRA, + r per adapter (its A·x bottleneck), + ACT_LOGITS·vocab once (the log-softmax of the logits).
# Fitted to `saved_activation_bytes` on tiny Llamas (fp32, CPU sdpa attention, dropout 0, 4 layers, seq 12;
# h 32/64 × intermediate 64/128/256, 1–4 top layers adapted on all 7 modules at r 8): the per-layer slope was
# exactly 7·h + 4·inter + 6 + Σr and the intercept vocab + 10 + h/4 (left out), so the model is within ~1 % of the
# measured saved bytes. Eager attention or CUDA kernels save more per layer (the T×T scores for eager).
ACT_HIDDEN = 7
ACT_INTER = 4
ACT_EXTRA = 6
ACT_LOGITS = 1


@contextlib.contextmanager
def eager_attention(model: nn.Module):
    """Switch a `transformers` model to its explicit-matmul attention for the duration (same maths):
    FlopCounterMode does not count the CPU kernel behind `scaled_dot_product_attention`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    base.set_attn_implementation("eager")
    try:
        yield model
    finally:
        base.set_attn_implementation(previous)


@contextlib.contextmanager
def _isolated_step(model: nn.Module):
    """Train mode and empty gradients for one measured step; the model's mode and gradients are restored after."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]
    training = model.training
    for p in params:
        p.grad = None
    model.train()
    try:
        yield
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        model.train(training)


def training_flops(model: nn.Module, batch: dict[str, Tensor]) -> int:
    """Matmul FLOPs of one training step (forward + backward of `model(**batch).loss`) as FlopCounterMode counts
    them, attention on its eager path. Gradients and train/eval mode are left as they were."""
    with _isolated_step(model), eager_attention(model), FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    return counter.get_total_flops()


def saved_activation_bytes(model: nn.Module, batch: dict[str, Tensor]) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one step, each storage counted once and the
    model's own parameters left out (they are weights, not activations)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with _isolated_step(model):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(**batch).loss
        loss.backward()
    return sum(seen.values())


def step_memory(model: nn.Module, batch: dict[str, Tensor], device: torch.device) -> int:
    """Peak bytes of one training step of `model` (already on `device`).

    CUDA: measured, the peak allocated over forward + backward (weights, activations, gradients) plus AdamW's two
    moments per trainable parameter (not allocated yet at the first step). Elsewhere modelled: parameter bytes
    + 16 B per trainable parameter (grad 4, Adam 8, master copy 4) + the activations autograd saves."""
    device = torch.device(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        with _isolated_step(model):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(**batch).loss.backward()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
        return peak + sum(2 * p.numel() * p.element_size() for p in trainable)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return weights + OPTIMIZER_BYTES * sum(p.numel() for p in trainable) + saved_activation_bytes(model, batch)


def _linear(d_in: int, d_out: int, rank: int, grad_in: bool, *, tokens: int, dora: bool, full: bool):
    """(forward, backward) FLOPs of one projection y = W x (+ s·B A x) over `tokens` tokens; `grad_in`: its input
    requires grad, so autograd computes ∂x."""
    n = 2 * tokens
    forward = n * d_in * d_out
    backward = n * d_in * d_out * (int(grad_in) + int(full))  # ∂x through W; ∂W only in full fine-tuning
    if rank:
        forward += n * rank * (d_in + d_out)
        # ∂B and ∂(Ax) through B; ∂A; ∂x through A only if the input needs it
        backward += n * rank * (2 * d_out + d_in + d_in * int(grad_in))
        if dora:  # peft materialises B·A as lora_B(lora_A(eye(d_in))) every forward; its result is detached
            forward += 2 * d_in * rank * (d_in + d_out)
    return forward, backward


def _layer_flops(shapes, ranks: dict[str, int], grad_in: bool, *, tokens, seq, dora, full):
    """(forward, backward, output requires grad) of one Llama decoder layer, propagating which tensors require
    grad through its dataflow: q/k/v → attention → o, residual, gate/up → act → down, residual."""
    forward = backward = 0
    needs = {}

    def project(m: str, grad_x: bool) -> None:
        nonlocal forward, backward
        f, b = _linear(*shapes[m], ranks.get(m, 0), grad_x, tokens=tokens, dora=dora, full=full)
        forward, backward = forward + f, backward + b
        needs[m] = grad_x or full or ranks.get(m, 0) > 0

    for m in ("q_proj", "k_proj", "v_proj"):
        project(m, grad_in)
    score = 2 * tokens * seq * shapes["q_proj"][1]  # one (B·H, T, T) @ (B·H, T, head_dim) product
    forward += 2 * score  # QKᵀ and PV
    q, k, v = needs["q_proj"], needs["k_proj"], needs["v_proj"]
    backward += score * (int(q) + int(k) + int(q or k) + int(v))  # ∂Q, ∂K, ∂P, ∂V
    project("o_proj", q or k or v)
    middle = grad_in or needs["o_proj"]
    project("gate_proj", middle)
    project("up_proj", middle)
    project("down_proj", needs["gate_proj"] or needs["up_proj"])
    return forward, backward, middle or needs["down_proj"]


def analytic_training_flops(
    model_config,
    allocation: Allocation | None,
    *,
    tokens: int,
    seq: int,
    dora: bool = False,
    full: bool = False,
) -> float:
    """Matmul FLOPs of one training step of a Llama with `allocation`'s LoRA adapters (or full fine-tuning with
    `full=True`) on `tokens` tokens in sequences of `seq`: what `training_flops` counts.

    Forward: 2·tokens·(Σ d_in·d_out + h·V) + attention 4·tokens·seq·h per layer + adapters 2·tokens·r(d_in+d_out)
    (+ DoRA's B·A materialisation, 2·d_in·r(d_in+d_out) per module). Backward: an activation gradient (the
    forward's matmul again) wherever the input requires grad — from the lowest adapted layer up, and inside that
    layer only downstream of an adapter — weight gradients only for adapters (or everything with `full`).
    Residual against the counter: none on Llama (norms, rotary, softmax and the loss are not matmuls)."""
    if allocation is None and not full:
        raise ValueError("pass an Allocation, or full=True for full fine-tuning")
    if allocation is not None and allocation.num_layers != model_config.num_hidden_layers:
        raise ValueError(f"allocation has {allocation.num_layers} layers; the model {model_config.num_hidden_layers}")
    shapes = module_shapes(model_config)
    forward = backward = 0
    grad = full  # full fine-tuning trains the embedding, so layer 0's input requires grad
    for layer in range(model_config.num_hidden_layers):
        ranks = {} if full else {m: allocation.rank(layer, m) for m in MODULES}
        f, b, grad = _layer_flops(shapes, ranks, grad, tokens=tokens, seq=seq, dora=dora, full=full)
        forward, backward = forward + f, backward + b
    head = 2 * tokens * model_config.hidden_size * model_config.vocab_size
    return float(forward + head + backward + head * (int(grad) + int(full)))


@dataclass(frozen=True)
class Cost:
    """A configuration's cost: trainable parameters, FLOPs of one training step, peak bytes of one step."""

    params: int
    flops_per_step: float
    memory_bytes: int

    def normalized(self, ref: Cost, weights: dict[str, float]) -> float:
        """Σ_k w_k · self.k / ref.k over k in {"params", "flops", "memory"} (a missing key weighs 0); 1.0 is the
        reference's cost when the weights sum to 1."""
        names = {"params": "params", "flops": "flops_per_step", "memory": "memory_bytes"}
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights {sorted(unknown)} unknown; expected keys among {sorted(names)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"weights {weights} must be non-negative with a positive sum")
        total = 0.0
        for key, w in weights.items():
            denominator = getattr(ref, names[key])
            if w and denominator <= 0:
                raise ValueError(f"reference {key} = {denominator}; expected a positive value to normalize by")
            total += w * getattr(self, names[key]) / denominator if w else 0.0
        return total


def base_parameters(model_config) -> int:
    """Parameters of a Llama: embedding, per layer 7 projections + 2 norms, final norm and (untied) lm_head."""
    h, vocab = model_config.hidden_size, model_config.vocab_size
    per_layer = sum(d_in * d_out for d_in, d_out in module_shapes(model_config).values()) + 2 * h
    head = 0 if getattr(model_config, "tie_word_embeddings", False) else h * vocab
    return vocab * h + model_config.num_hidden_layers * per_layer + h + head


def allocation_cost(model_config, allocation: Allocation, *, tokens: int, seq: int, dora: bool = False) -> Cost:
    """The cost of training `allocation`'s adapters, in closed form (no model): exact parameters, analytic FLOPs,
    modelled memory = fp32 weights and adapters + 16 B per trainable parameter + activations saved from the lowest
    adapted layer up (`ACT_*` per token, fitted on tiny Llamas) + the log-softmax of the logits."""
    shapes = module_shapes(model_config)
    params = allocation.parameters(shapes, dora=dora)
    flops = analytic_training_flops(model_config, allocation, tokens=tokens, seq=seq, dora=dora)
    h, inter = model_config.hidden_size, model_config.intermediate_size
    layers = model_config.num_hidden_layers - allocation.lowest_layer
    bottlenecks = sum(r for _, _, r in allocation.adapted())  # A·x, (N, r) per adapter
    per_layer = ACT_HIDDEN * h + ACT_INTER * inter + ACT_EXTRA
    words = tokens * (layers * per_layer + bottlenecks + ACT_LOGITS * model_config.vocab_size)
    memory = FP32 * base_parameters(model_config) + (FP32 + OPTIMIZER_BYTES) * params + FP32 * words
    return Cost(params=params, flops_per_step=flops, memory_bytes=memory)
