"""One PEFT run: load the base LM and the task, wrap the model with the configured method through `peft`, train the
adapters in one visible loop, score the test split and write one result in the foundation's schema.

The loop is shared by every method and by STRATO's proxy runs. Per method it differs only where the method needs it:
AdaLoRA's `update_and_allocate` after each optimizer step (before `zero_grad`), and STRATO's rank schedule, which
resizes adapters between steps and rebuilds the optimizer. Training FLOPs are counted with `FlopCounterMode` on a
fixed reference batch and re-counted after every resize, so a run's total follows its actual shapes.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass, field

import torch

from edgetune.profiles import pick_device
from edgetune.strato import cost, lm, methods, resize, tasks
from edgetune.strato.config import RunConfig
from edgetune.strato.spec import TaskData
from edgetune.training import autocast, derive_seed, warmup_cosine

log = logging.getLogger(__name__)


# --- device, base model, task -------------------------------------------------------------------------------


def resolve_device(device_type: str) -> torch.device:
    """'auto' → CUDA (NVIDIA or ROCm builds, both appear as `cuda`), then MPS, then CPU; a named device must exist."""
    if device_type == "auto":
        return pick_device("auto")
    if device_type in ("cuda", "rocm"):
        if not torch.cuda.is_available() or (device_type == "rocm") != bool(torch.version.hip):
            raise ValueError(
                f"device.device_type={device_type!r} but this torch build has no {device_type.upper()} "
                f"device; use 'auto' or 'cpu'"
            )
        return torch.device("cuda")
    if device_type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device.device_type='mps' but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(device_type)


@functools.lru_cache(maxsize=4)
def _base(name: str, path: str | None, steps: int, batch: int, lr: float, documents: int, device: str):
    if path:
        model, tokenizer = lm.load_checkpoint(path)
        return model, tokenizer, model.config.max_position_embeddings
    corpus = tasks.pretraining_corpus(seed=0, documents=documents)
    model, tokenizer, _ = lm.pretrain_lm(
        name, corpus, steps=steps, batch_size=batch, lr=lr, seed=0, device=torch.device(device)
    )
    return model, tokenizer, lm.LM_FAMILY[name].context


def base_model(config: RunConfig, device: torch.device):
    """A fresh copy of the base LM (the cached "cloud" model, or the checkpoint at model.path), its tokenizer and
    context length."""
    m = config.model
    model, tokenizer, context = _base(
        m.name, m.path, m.pretrain_steps, m.pretrain_batch, m.pretrain_lr, m.corpus_documents, str(device)
    )
    return copy.deepcopy(model).to(device), tokenizer, context


def load_task(config: RunConfig) -> TaskData:
    t = config.task
    return tasks.load_task(t.name, t.source, seed=0, train=t.train, dev=t.dev, test=t.test)


def all_items(task: TaskData) -> tuple:
    return (*task.train, *task.dev, *task.test)


def scored_items(task: TaskData, score_on: str) -> tuple:
    """The items the final score is measured on: the test split, or every item ("all")."""
    return all_items(task) if score_on == "all" else task.test


def method_spec(config: RunConfig) -> methods.MethodSpec:
    p = config.peft
    return methods.MethodSpec(
        method=p.method,
        rank=p.rank,
        alpha_per_rank=p.alpha_per_rank,
        dropout=p.dropout,
        mlp_rank=p.mlp_rank,
        init_r=p.init_r,
        target_r=p.target_r,
        tinit_frac=p.tinit_frac,
        tfinal_frac=p.tfinal_frac,
        orth_reg_weight=p.orth_reg_weight,
    )


# --- the loop -----------------------------------------------------------------------------------------------


@dataclass
class Loop:
    """What the loop needs besides the model: data, optimisation and where to report."""

    train: tuple
    dev: tuple
    tokenizer: object
    context: int
    steps: int
    batch_size: int
    lr: float
    seed: int
    device: torch.device
    amp: bool = True
    warmup_frac: float = 0.1
    weight_decay: float = 0.0
    accumulation: int = 1
    eval_every: int = 0
    spec: methods.MethodSpec | None = None
    schedule: resize.RankSchedule | None = None
    budget: int | None = None  # the rank schedule's parameter ceiling
    writer: object = None  # a TensorBoard SummaryWriter, or None
    progress: bool = False


@dataclass
class Trace:
    history: list[dict] = field(default_factory=list)
    flops: float = 0.0
    flops_per_step: list[float] = field(default_factory=list)
    resizes: list[dict] = field(default_factory=list)
    schedule_s: float = 0.0
    eval_s: float = 0.0
    count_s: float = 0.0  # re-counting FLOPs after a resize: measurement, neither training nor schedule
    train_s: float = 0.0
    peak_trainable: int = 0


def lr_at(step: int, loop: Loop) -> float:
    """Linear warmup, then cosine decay to 10 % of the peak."""
    return warmup_cosine(step, max(1, int(loop.warmup_frac * loop.steps)), loop.steps, floor=0.1, peak=loop.lr)


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_adapters(model, loop: Loop) -> Trace:
    """Train `model`'s trainable parameters (AdamW, warmup + cosine, gradient accumulation, bf16 autocast on GPU).

    Loss is the model's own (`model(**batch).loss`), so AdaLoRA's orthogonal regulariser, added inside
    `AdaLoraModel.forward`, is part of it. With a rank schedule, every `schedule.every` steps the adapters are
    resized from their gradient utilities (after backward, before the optimizer step) and the optimizer rebuilt.
    """
    from edgetune.progress import progress

    trace, g = Trace(), torch.Generator().manual_seed(loop.seed)
    reference = lm.encode(loop.train[: loop.batch_size], loop.tokenizer, loop.context)
    reference = {k: v.to(loop.device) for k, v in reference.items()}
    step_flops = cost.training_flops(model, reference) * loop.accumulation
    trace.flops_per_step.append(step_flops)
    optimizer = torch.optim.AdamW(trainable(model), lr=loop.lr, weight_decay=loop.weight_decay)
    trace.peak_trainable = sum(p.numel() for p in trainable(model))
    model.train()
    start = time.perf_counter()
    for step in progress(range(loop.steps), desc="fine-tune", leave=False, disable=not loop.progress):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, loop)
        losses = []
        for _ in range(loop.accumulation):
            idx = torch.randint(0, len(loop.train), (loop.batch_size,), generator=g).tolist()
            batch = lm.encode([loop.train[i] for i in idx], loop.tokenizer, loop.context)
            batch = {k: v.to(loop.device) for k, v in batch.items()}
            with autocast(loop.device, loop.amp):
                loss = model(**batch).loss / loop.accumulation
            loss.backward()
            losses.append(loss.detach())
        resized = False
        if loop.schedule is not None and step > 0 and step % loop.schedule.every == 0:
            optimizer, resized = _reschedule(model, optimizer, loop, trace, step)
        optimizer.step()
        if loop.spec is not None:
            methods.after_optimizer_step(model, loop.spec, step)
        optimizer.zero_grad(set_to_none=True)
        trace.flops += step_flops
        if resized:  # this step ran at the old shapes; the next ones run at the new
            t0 = time.perf_counter()
            step_flops = cost.training_flops(model, reference) * loop.accumulation
            trace.flops_per_step.append(step_flops)
            trace.peak_trainable = max(trace.peak_trainable, sum(p.numel() for p in trainable(model)))
            model.train()
            trace.count_s += time.perf_counter() - t0
        row = {"step": step + 1, "loss": float(torch.stack(losses).sum()), "lr": lr_at(step, loop)}
        if loop.eval_every and ((step + 1) % loop.eval_every == 0 or step + 1 == loop.steps):
            t0 = time.perf_counter()
            row["dev_proxy"] = lm.answer_token_accuracy(
                model, loop.dev, loop.tokenizer, context=loop.context, device=loop.device
            )
            trace.eval_s += time.perf_counter() - t0
            model.train()
        trace.history.append(row)
        _log(loop.writer, row, sum(p.numel() for p in trainable(model)))
    trace.train_s = time.perf_counter() - start - trace.schedule_s - trace.eval_s - trace.count_s
    return trace


def _reschedule(model, optimizer, loop: Loop, trace: Trace, step: int):
    """One rank-schedule decision, between backward and the optimizer step: utilities from the current gradients,
    resize, rebuild the optimizer (resized adapters start this step with no gradient and fresh Adam state)."""
    t0 = time.perf_counter()
    utilities = resize.module_utility(model)
    generator = torch.Generator().manual_seed(derive_seed(loop.seed, "batch", step))
    changed = resize.schedule_step(model, loop.schedule, utilities, loop.budget, generator=generator)
    if changed:
        optimizer = resize.rebuild_optimizer(optimizer, model)
        trace.resizes.append({"step": step, "changes": {k: list(v) for k, v in changed.items()}})
    trace.schedule_s += time.perf_counter() - t0
    return optimizer, bool(changed)


def _log(writer, row: dict, n_trainable: int) -> None:
    if writer is None:
        return
    for key, value in row.items():
        if key != "step":
            writer.add_scalar(f"train/{key}", value, row["step"])
    writer.add_scalar("train/trainable_parameters", n_trainable, row["step"])


# --- ranks of a trained model (for the heatmaps) --------------------------------------------------------------


def adapter_ranks(model) -> dict[str, int]:
    """Rank of every adapted module: LoRA's live rank, or for AdaLoRA the singular values its allocator kept."""
    ranks = {}
    for name, module in model.named_modules():
        lora_e = getattr(module, "lora_E", None)
        if lora_e is not None and "default" in lora_e:
            ranks[_short(name)] = int((lora_e["default"].detach() != 0).sum())
    return ranks or resize.current_ranks(model)


def _short(name: str) -> str:
    return name[name.index("model.layers.") :] if "model.layers." in name else name


# --- one run ------------------------------------------------------------------------------------------------
