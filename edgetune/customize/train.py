"""ACME's training loops. The cloud's: importance of heads and MLP units, and the elastic training of DynaViTw (every
width, every step) and DynaViT (every width × depth, every step) by distillation from the fine-tuned model (soft
cross-entropy on logits + 0.1 × MSE on hidden states). The edge's: a header trained on frozen features. The
stages that call them, in order, are in `cloud.py`; the devices' local loop is in `device.py`.

Departures from the original code (docs/acme.md#departures-from-the-original), deliberate:
* the launch script's phase-name bug made the shipped DynaViTw train with plain CE and no rewiring; here the
  intended algorithm runs (rewiring, distillation);
* the original DynaViT stage loaded a teacher and never used it; here it distils too (student block j is matched
  to the teacher's output of the block it stands for);
* importance is accumulated on training batches, not on the test split.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from edgetune.customize.supernet import FULL, SubnetSpec, accumulate_importance, supernet_forward
from edgetune.data import streaming
from edgetune.progress import progress
from edgetune.runs import Checkpointer, Meter, RunResult
from edgetune.training import autocast, flush_history


def importance_scores(
    vit: VisionTransformer,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    batches: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Head and MLP-unit importance of the fine-tuned model, summed over `batches` training batches."""
    vit.to(device).eval()
    data = tuple(t.to(device) for t in data)
    g = torch.Generator().manual_seed(seed)
    scores = None
    for x, y in streaming.batches(data, batch_size, batches, g, seed=seed):
        vit.zero_grad(set_to_none=True)
        F.cross_entropy(vit(x).float(), y).backward()
        scores = accumulate_importance(vit, scores)
    vit.zero_grad(set_to_none=True)
    return scores


def distillation_loss(
    student: tuple[torch.Tensor, list[torch.Tensor]],
    teacher: tuple[torch.Tensor, list[torch.Tensor]],
    spec: SubnetSpec,
    depth: int,
    hidden_weight: float,
) -> torch.Tensor:
    """Soft cross-entropy on logits + `hidden_weight` × Σ MSE over hidden states (DynaBERT / ACME).

    The student's embedding output is matched to the teacher's, and its j-th kept block to the teacher block it
    stands for (`spec.blocks(depth)[j]`); teacher hidden states are [embedding, block 0, …, block L−1].
    """
    (s_logits, s_hidden), (t_logits, t_hidden) = student, teacher
    soft_ce = -(F.softmax(t_logits.float(), -1) * F.log_softmax(s_logits.float(), -1)).sum(-1).mean()
    targets = [t_hidden[0]] + [t_hidden[i + 1] for i in spec.blocks(depth)]
    mse = sum(F.mse_loss(s.float(), t.float()) for s, t in zip(s_hidden, targets, strict=True))
    return soft_ce + hidden_weight * mse


def train_elastic(
    vit: VisionTransformer,
    teacher: VisionTransformer | None,
    data: tuple[torch.Tensor, torch.Tensor],
    specs: list[SubnetSpec],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    hidden_weight: float,
    seed: int,
    folder: Path,
    checkpoint_every: int,
    device: torch.device,
    stage: str,
    config: dict | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Every step visits every spec (largest first), accumulating gradients, then clips the norm to 1 and takes
    one AdamW step (linear decay, no warm-up: ACME's schedule). With `teacher=None` the loss is plain CE.
    Resumes from the newest checkpoint in `folder`; `stop_after` interrupts after that many steps (tests)."""
    vit.to(device).train()
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
    data = tuple(t.to(device) for t in data)
    optimizer = torch.optim.AdamW(vit.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    ckpt = Checkpointer(folder / "checkpoints", every=checkpoint_every)
    start, history = ckpt.restore(vit, optimizer, g)
    pending: list[torch.Tensor] = []
    depth = len(vit.blocks)
    stream = streaming.batches(data, batch_size, steps, g, seed=seed, start=start)
    with Meter(device) as meter:
        for step in progress(range(start, steps), desc=stage, initial=start, total=steps, mininterval=2):
            if stop_after is not None and step >= stop_after:
                raise KeyboardInterrupt(f"stopped after {stop_after} steps (stop_after)")
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - step / steps)
            x, y = next(stream)
            with torch.no_grad(), autocast(device):
                target = None if teacher is None else supernet_forward(teacher, x, FULL, return_hidden=True)
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for spec in specs:
                with autocast(device):
                    out = supernet_forward(vit, x, spec, return_hidden=True)
                    loss = (
                        F.cross_entropy(out[0].float(), y)
                        if target is None
                        else distillation_loss(out, target, spec, depth, hidden_weight)
                    )
                loss.backward()  # gradients of all specs accumulate into the shared weights
                losses.append(loss.detach())
            torch.nn.utils.clip_grad_norm_(vit.parameters(), 1.0)
            optimizer.step()
            pending.append(torch.stack(losses))
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                history += flush_history(pending, step + 1, [str(s) for s in specs])
                ckpt.maybe_save(step + 1, vit, optimizer, g, history, final=step + 1 == steps)
    stream.close()  # a real dataset's DataLoader workers stop here, not whenever the generator is collected
    return RunResult.measured(
        stage,
        config or {},
        seed,
        vit,
        device,
        meter,
        history=history,
        metrics={"final_loss_full": history[-1][str(specs[0])] if history else math.nan},
    )


def train_head(
    head: torch.nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device,
) -> torch.nn.Module:
    """Adam on a header over frozen features; channel gates stay fixed at 1 (they are masks for the devices)."""
    gates = {id(g) for g in head.channel_gates()} if hasattr(head, "channel_gates") else set()
    head.to(device).train()
    optimizer = torch.optim.Adam([p for p in head.parameters() if id(p) not in gates], lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(feats), (batch_size,), generator=g)
        loss = torch.nn.functional.cross_entropy(head(feats[idx].to(device)), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return head.eval()
