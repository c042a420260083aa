"""Small pieces every section's training loop shares: seeds derived by one rule, batches drawn by an explicit
generator, one warm-up + cosine schedule, bf16 autocast on GPU, plain cross-entropy fine-tuning and top-1 accuracy.
The loops themselves stay in each section."""

from __future__ import annotations

import contextlib
import math
import random

import torch
import torch.nn.functional as F
from torch import nn

EVALUATION_VERSION = 2  # bump when what a stage records of its test evaluation changes (2: which items were right)


def derive_seed(seed: int, *purpose: int | str) -> int:
    """The seed of one random stream of a run: a hash of the run's seed and the stream's name and indices (e.g.
    `derive_seed(seed, "domain", i, "test")`). The one rule every section uses, so two streams never share draws by
    an accident of arithmetic (10 000·seed + k meets 10 000·(seed + 1) at k = 10 000), and stable across runs,
    processes, resumes and platforms (random.Random hashes a string seed with SHA-512)."""
    return random.Random(":".join(map(str, (seed, *purpose)))).randrange(2**31)


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device | str | None = None):
    """Run a block under torch's global RNG seeded with `seed` (CPU, and `device` if it is a GPU), restoring the
    caller's RNG state afterwards: for what draws from the global generator (timm, peft and nn initializations,
    dropout), without the block's draws depending on, or changing, whatever ran before it."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] → [-1, 1] (the 0.5/0.5 normalization of the google ViT checkpoints)."""
    return x * 2 - 1


def draw_batch(x: torch.Tensor, y: torch.Tensor, size: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A random batch drawn (with replacement) by a CPU generator from data already on the training device."""
    idx = torch.randint(0, len(x), (size,), generator=g).to(x.device)
    return normalize(x[idx]), y[idx]


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (NVIDIA or ROCm) unless `enabled` is False; a no-op elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def warmup_cosine(step: int, warmup: int, steps: int, floor: float = 0.0, peak: float = 1.0) -> float:
    """The learning rate at `step` (from 0): linear warm-up to `peak` over `warmup` steps, then a cosine down to
    `floor` × `peak` at `steps`. A pure function of the step, so a resumed run continues the schedule exactly."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(progress * math.pi)))


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
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x, y = draw_batch(*data, batch_size, g)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).tolist() if losses else []


@torch.no_grad()
def accuracy(
    model, data: tuple[torch.Tensor, torch.Tensor], device, batch_size: int = 512, mixed_precision: bool = True
) -> list[float]:
    """Top-1 accuracy of every output of `model` (a classifier: one; a multi-exit model: one per exit).

    `model` is a module or any callable mapping normalized images to logits (or a list of logits).
    """
    return [sum(right) / len(right) for right in output_hits(model, data, device, batch_size, mixed_precision)]


@torch.no_grad()
def hits(model, data: tuple[torch.Tensor, torch.Tensor], device, batch_size: int = 512, mixed_precision: bool = True):
    """Whether a classifier's top-1 prediction is right, item by item (a list of 0/1, in the data's order): what
    confidence intervals over test items resample."""
    (out,) = output_hits(model, data, device, batch_size, mixed_precision)
    return out


@torch.no_grad()
def output_hits(
    model, data: tuple[torch.Tensor, torch.Tensor], device, batch_size: int = 512, mixed_precision: bool = True
) -> list[list[int]]:
    """`hits` for every output of `model` (a classifier: one list; a multi-exit model: one list per exit)."""
    if isinstance(model, nn.Module):
        model.to(device).eval()
    x_all, y_all = data
    out: list[list[int]] = []
    for start in range(0, len(x_all), batch_size):
        x = normalize(x_all[start : start + batch_size].to(device))
        with autocast(device, enabled=mixed_precision):
            outputs = model(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        y = y_all[start : start + batch_size].cpu()
        out = out or [[] for _ in outputs]
        for kept, logits in zip(out, outputs, strict=True):
            kept += (logits.argmax(-1).cpu() == y).int().tolist()
    return out


def training_flops(model: nn.Module, image_size: int, images: int, teacher: nn.Module | None = None) -> float:
    """Training FLOPs of `images` images: 3 × the forward pass (forward + backward ≈ 2 × forward), plus one forward
    of `teacher` per image where a teacher is distilled from; the forward counted by FlopCounterMode on one image."""
    from edgetune.models import forward_flops

    def per_image(net: nn.Module) -> int:
        x = torch.zeros(1, 3, image_size, image_size, device=next(net.parameters()).device)
        mode = net.training
        net.eval()  # no dropout: counting must not draw from the global RNG the caller's next stage uses
        try:
            return forward_flops(net, x)
        finally:
            net.train(mode)

    return float(images) * (3 * per_image(model) + (per_image(teacher) if teacher is not None else 0))


def flush_history(pending: list[torch.Tensor], last_step: int, names: list[str]) -> list[dict[str, float]]:
    """Turn per-step metric tensors kept on the device (one (len(names),) tensor per step, ending at `last_step`)
    into history rows with one host sync, and empty the buffer."""
    values = torch.stack(pending).tolist()
    pending.clear()
    first = last_step - len(values) + 1
    return [{"step": first + i, **dict(zip(names, row, strict=True))} for i, row in enumerate(values)]
