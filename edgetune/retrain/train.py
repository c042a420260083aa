"""The retraining section's training loops, plainly visible: offline classification training (optionally distilled
from a teacher and with BlockTrainer's sandwich gate-sparsity schedule), and the online FeatureAlignment retraining
of an edge model (cross-entropy on labelled source data + RBF-MMD between source and target features).

Costs are counted, not timed: `step_cost` counts one retraining step's FLOPs with torch's FlopCounterMode (forward
and backward, so frozen weights cost no weight gradients) and its activation memory from the tensors autograd
saves, which makes per-window budgets reproducible on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgetune.data import streaming
from edgetune.models.vit import explicit_attention
from edgetune.progress import progress
from edgetune.retrain.kb import gate_l1, set_sparsity
from edgetune.runs import Checkpointer, Meter, RunResult
from edgetune.training import accuracy, autocast, flush_history, normalize, training_flops


def train_classifier(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    folder: Path,
    stage: str,
    config: dict | None = None,
    teacher: nn.Module | None = None,
    kd_weight: float = 0.0,
    max_sparsity: float | None = None,
    gate_weight: float = 0.0,
    checkpoint_every: int = 100,
) -> RunResult:
    """Cross-entropy training (+ `kd_weight` × soft cross-entropy to `teacher`'s predictions), resumable from
    `folder`. With `max_sparsity`, every step sets the gates' sparsity by BlockTrainer's sandwich schedule
    (step % 4: 0 → none, 1–2 → uniform in [0, max), 3 → max) and adds `gate_weight` × the gates' L1."""
    model.to(device).train()
    data = tuple(t.to(device) for t in data)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    ckpt = Checkpointer(folder / "checkpoints", every=checkpoint_every)
    start, history = ckpt.restore(model, optimizer, g)
    if teacher is not None:
        teacher.to(device).eval()
    pending: list[torch.Tensor] = []
    stream = streaming.batches(data, batch_size, steps, g, seed=seed, start=start)
    with Meter(device) as meter:
        for step in progress(range(start, steps), desc=stage, initial=start, total=steps, mininterval=2):
            if max_sparsity is not None:
                set_sparsity(model, _sandwich(step, max_sparsity, g))
            x, y = next(stream)
            with autocast(device):
                logits = model(x).float()
                loss = F.cross_entropy(logits, y)
                if teacher is not None:
                    with torch.no_grad():
                        target = teacher(x).float().softmax(-1)
                    loss = loss + kd_weight * F.cross_entropy(logits, target)
                if gate_weight:
                    loss = loss + gate_weight * gate_l1(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pending.append(loss.detach()[None])
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                history += flush_history(pending, step + 1, ["loss"])
                ckpt.maybe_save(step + 1, model, optimizer, g, history, final=step + 1 == steps)
    stream.close()  # a real dataset's DataLoader workers stop here, not whenever the generator is collected
    if max_sparsity is not None:
        set_sparsity(model, 0.0)
    final = history[-1]["loss"] if history else float("nan")
    flops = training_flops(model, data[0].shape[-1], batch_size * (steps - start), teacher)  # this session's steps
    return RunResult.measured(
        stage, config or {}, seed, model, device, meter, flops=flops, history=history, metrics={"final_loss": final}
    )


def _sandwich(step: int, top: float, g: torch.Generator) -> float:
    phase = step % 4
    if phase == 0:
        return 0.0
    if phase == 3:
        return top
    return float(torch.rand(1, generator=g)) * top


def pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C) features at the classifier's input (where BlockTrainer aligns source and target)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, kernels: int = 5, mul: float = 2.0) -> torch.Tensor:
    """Multi-kernel RBF maximum mean discrepancy between feature sets a (n, C) and b (m, C): `kernels` bandwidths
    spaced by `mul` around the mean pairwise squared distance (the usual DAN/BlockTrainer estimator)."""
    z = torch.cat([a, b]).float()
    d2 = torch.cdist(z, z).pow(2)
    n = len(z)
    base = d2.detach().sum() / (n * n - n)
    widths = [base * mul ** (k - kernels // 2) for k in range(kernels)]
    k = sum(torch.exp(-d2 / w.clamp_min(1e-12)) for w in widths)
    na = len(a)
    return k[:na, :na].mean() + k[na:, na:].mean() - 2 * k[:na, na:].mean()


def retrain_step(model, x_s, y_s, x_t, mmd_weight: float) -> torch.Tensor:
    """One FeatureAlignment loss: CE on a labelled source batch + mmd_weight × MMD(source, target features)."""
    feats = pre_logits(model, torch.cat([x_s, x_t]))
    loss = F.cross_entropy(model.head(feats[: len(x_s)]).float(), y_s)
    return loss + mmd_weight * mmd_rbf(feats[: len(x_s)], feats[len(x_s) :])


def retrain(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    source: tuple[torch.Tensor, torch.Tensor],
    unlabelled: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    mmd_weight: float,
    eval_every: int,
    seed: int,
    device: torch.device,
) -> list[dict[str, float]]:
    """Retrain `params` of `model` for `steps` (AdamW, constant lr, as the original), scoring top-1 accuracy on the
    labelled `test` before the first step, every `eval_every` steps and after the last. Target labels are never
    used for training. Returns [{"iteration", "accuracy"}, ...]."""
    model.to(device)
    source = tuple(t.to(device) for t in source)
    unlabelled = unlabelled.to(device)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    curve = [{"iteration": 0, "accuracy": accuracy(model, test, device)[0]}]
    model.train()
    stream = streaming.batches(source, batch_size, steps, g, seed=seed)
    for step in range(steps):
        x_s, y_s = next(stream)
        x_t = normalize(unlabelled[torch.randint(0, len(unlabelled), (batch_size,), generator=g).to(device)])
        with autocast(device):
            loss = retrain_step(model, x_s, y_s, x_t, mmd_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"iteration": step + 1, "accuracy": accuracy(model, test, device)[0]})
            model.train()
    stream.close()  # a real dataset's DataLoader workers stop here, not whenever the generator is collected
    return curve


def step_cost(model: nn.Module, image_size: int, batch_size: int, mmd_weight: float = 1.0) -> tuple[int, int]:
    """(training FLOPs, activation bytes) of one FeatureAlignment step at `batch_size`, counted on CPU in fp32:
    FLOPs of the forward and backward passes (FlopCounterMode; attention on its explicit path so it is counted),
    bytes of every tensor autograd saves for the backward pass."""
    model = model.to("cpu").train()
    x = torch.zeros(batch_size, 3, image_size, image_size)
    y = torch.zeros(batch_size, dtype=torch.long)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    try:
        with explicit_attention(model), FlopCounterMode(display=False) as counter:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = retrain_step(model, x, y, x, mmd_weight)
            loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops(), saved
