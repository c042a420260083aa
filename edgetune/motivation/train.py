"""Training loops of the motivation section: a ViT with an early-exit head after every block, and short
fine-tuning runs (recovering a compressed model, retraining on a new domain). Plain, visible loops."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from tqdm import tqdm

from edgetune.runs import Checkpointer, Meter, RunResult, count_parameters, describe_device, package_versions


class EarlyExitViT(nn.Module):
    """A timm ViT plus a linear exit (LayerNorm → Linear on the CLS token) after each block but the last, whose
    exit is the ViT's own norm and head (ACME's motivation experiment, reference/acme.md §7).

    The wrapped ViT keeps timm's parameter names under `vit.`, so `model.vit` is a plain deployable classifier.
    """

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.vit = vit
        dim, classes = vit.embed_dim, vit.num_classes
        self.exits = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes)) for _ in range(len(vit.blocks) - 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, shallowest first: a list of depth tensors (B, classes)."""
        final, inter = self.vit.forward_intermediates(x, return_prefix_tokens=True, output_fmt="NLC")
        logits = [head(prefix[:, 0]) for head, (_, prefix) in zip(self.exits, inter[:-1], strict=True)]
        return [*logits, self.vit.forward_head(final)]


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → [-1, 1] (the 0.5/0.5 normalization of the google ViT checkpoints)."""
    return x * 2 - 1


def _batch(x: torch.Tensor, y: torch.Tensor, size: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A random batch drawn (with replacement) by a CPU generator from data already on the training device."""
    idx = torch.randint(0, len(x), (size,), generator=g).to(x.device)
    return normalize(x[idx]), y[idx]


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_early_exit(
    model: EarlyExitViT,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    folder: Path,
    checkpoint_every: int,
    device: torch.device,
    config: dict,
    stop_after: int | None = None,
) -> RunResult:
    """Train every exit jointly (sum of the exits' cross-entropies, as ACME does), resuming from `folder`.

    AdamW with linear warm-up (5 %) and cosine decay. `stop_after` interrupts the loop after that many steps
    (tests use it to simulate a crash); a later call resumes from the newest checkpoint.
    """
    model.to(device)
    data = tuple(t.to(device) for t in data)  # the whole (small) training set lives on the device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 20)
    g = torch.Generator().manual_seed(seed)
    ckpt = Checkpointer(folder / "checkpoints", every=checkpoint_every)
    start, history = ckpt.restore(model, optimizer, g)
    pending: list[torch.Tensor] = []  # per-step losses kept on the device: one host sync per checkpoint, not per step
    model.train()
    with Meter(device) as meter:
        for step in tqdm(range(start, steps), desc="early-exit ViT", initial=start, total=steps, mininterval=2):
            if stop_after is not None and step >= stop_after:
                raise KeyboardInterrupt(f"stopped after {stop_after} steps (stop_after)")
            for group in optimizer.param_groups:  # the schedule is a pure function of the step: resumes exactly
                group["lr"] = lr * _lr_factor(step, warmup, steps)
            x, y = _batch(*data, batch_size, g)
            with _autocast(device):
                losses = torch.stack([F.cross_entropy(logits.float(), y) for logits in model(x)])
            loss = losses.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pending.append(torch.stack([loss, losses[-1]]).detach())
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                history += _flush(pending, step + 1)
                ckpt.maybe_save(step + 1, model, optimizer, g, history, final=step + 1 == steps)
    total, trainable = count_parameters(model)
    return RunResult(
        stage="motivation-early-exit",
        config=config,
        seed=seed,
        history=history,
        metrics={"final_loss": history[-1]["loss"] if history else float("nan")},
        params_total=total,
        params_trainable=trainable,
        wall_time_s=meter.wall_time_s,
        peak_memory_bytes=meter.peak_memory_bytes,
        device=describe_device(device),
        versions=package_versions(),
    )


def _flush(pending: list[torch.Tensor], last_step: int) -> list[dict[str, float]]:
    """Turn the device-side losses of the steps up to `last_step` into history rows, and empty the buffer."""
    values = torch.stack(pending).tolist()
    pending.clear()
    first = last_step - len(values) + 1
    return [{"step": first + i, "loss": total, "loss_last_exit": last} for i, (total, last) in enumerate(values)]


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(progress * math.pi))


def finetune(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
) -> list[float]:
    """Plain cross-entropy fine-tuning of a classifier for `steps` (AdamW, constant lr); returns the losses."""
    model.to(device).train()
    data = tuple(t.to(device) for t in data)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x, y = _batch(*data, batch_size, g)
        with _autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).tolist() if losses else []


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], device, batch_size: int = 512) -> list[float]:
    """Top-1 accuracy of every output of `model` (one for a classifier, one per exit for an EarlyExitViT)."""
    model.to(device).eval()
    x_all, y_all = data
    correct = None
    for start in range(0, len(x_all), batch_size):
        x = normalize(x_all[start : start + batch_size].to(device))
        y = y_all[start : start + batch_size].to(device)
        with _autocast(device):
            outputs = model(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        hits = torch.stack([(o.argmax(-1) == y).sum() for o in outputs]).cpu()
        correct = hits if correct is None else correct + hits
    return (correct.double() / len(x_all)).tolist()
