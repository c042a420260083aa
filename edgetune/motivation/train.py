"""The motivation section's training loop: a ViT with an early-exit head after every block. Plain and visible;
short fine-tuning runs use `edgetune.training.finetune`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edgetune.data import streaming
from edgetune.progress import progress
from edgetune.runs import Checkpointer, Meter, RunResult
from edgetune.training import autocast, flush_history, training_flops, warmup_cosine


class EarlyExitViT(nn.Module):
    """A timm ViT plus a linear exit (LayerNorm → Linear on the CLS token) after each block but the last, whose
    exit is the ViT's own norm and head (ACME's motivation experiment, docs/motivation.md#depth-accuracy-and-energy).

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
    config: dict | None = None,
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
    stream = streaming.batches(data, batch_size, steps, g, seed=seed, start=start)
    model.train()
    with Meter(device) as meter:
        for step in progress(range(start, steps), desc="early-exit ViT", initial=start, total=steps, mininterval=2):
            if stop_after is not None and step >= stop_after:
                raise KeyboardInterrupt(f"stopped after {stop_after} steps (stop_after)")
            for group in optimizer.param_groups:  # the schedule is a pure function of the step: resumes exactly
                group["lr"] = lr * warmup_cosine(step, warmup, steps)
            x, y = next(stream)
            with autocast(device):
                losses = torch.stack([F.cross_entropy(logits.float(), y) for logits in model(x)])
            loss = losses.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pending.append(torch.stack([loss, losses[-1]]).detach())
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                history += flush_history(pending, step + 1, ["loss", "loss_last_exit"])
                ckpt.maybe_save(step + 1, model, optimizer, g, history, final=step + 1 == steps)
    stream.close()  # a real dataset's DataLoader workers stop here, not whenever the generator is collected
    return RunResult.measured(
        "motivation-early-exit",
        config or {},
        seed,
        model,
        device,
        meter,
        flops=training_flops(model, data[0].shape[-1], batch_size * (steps - start)),  # this session's steps
        history=history,
        metrics={"final_loss": history[-1]["loss"] if history else float("nan")},
    )
