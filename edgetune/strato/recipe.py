"""The run recipe of the PEFT section: one (method, task, seed) run through the cache — the base LM, the task, STRATO's
search where the method needs it, the adapters trained by `train.train_adapters`, the test score — written as one
result in the foundation's schema. The loop itself lives in `train.py`; this module only assembles a run from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from edgetune.runs import Meter, RunResult, cached, write_json
from edgetune.runs.stages import stage_key
from edgetune.strato import cost, lm, methods, resize, search
from edgetune.strato.config import RunConfig, keyed
from edgetune.strato.spec import module_shapes
from edgetune.strato.train import (
    Loop,
    adapter_ranks,
    all_items,
    base_model,
    load_task,
    method_spec,
    resolve_device,
    scored_items,
    train_adapters,
    trainable,
)

log = logging.getLogger(__name__)


def run(config: RunConfig, *, force: bool = False, progress: bool = False, fast_dev_run: bool = False):
    """Train and score one (method, task, seed) run through the cache; returns (RunResult, folder)."""
    if fast_dev_run:
        config = fast_dev(config)
    return cached(
        "peft-run",
        run_key(config),
        lambda folder: _compute(config, folder, progress, force),
        force=force,
    )


# hyper-parameters that only one method reads; the other methods' runs are not keyed by them
ONLY_FOR = {
    "adalora": ("init_r", "target_r", "tinit_frac", "tfinal_frac", "orth_reg_weight"),
    "lora_mlp": ("mlp_rank",),
    "strato": ("strato",),
}


def run_key(config: RunConfig) -> dict:
    """What a run's result depends on: its config (files by content, `keyed`) without the hyper-parameters of
    other methods, and the versions of the task generator and the tokenizer."""
    data = keyed(config.to_dict())
    unread = [name for method, names in ONLY_FOR.items() if method != config.peft.method for name in names]
    data["peft"] = {k: v for k, v in data["peft"].items() if k not in unread}
    return stage_key({"config": data}, versions=("tasks", "tokenizer", "scoring"))


def fast_dev(config: RunConfig) -> RunConfig:
    """A few steps on a few items, to check a config end to end in seconds (`--fast-dev-run`)."""
    s = config.peft.strato
    return replace(
        config,
        task=replace(
            config.task, train=min(config.task.train, 16), dev=min(config.task.dev, 8), test=min(config.task.test, 8)
        ),
        training=replace(config.training, steps=2, eval_every=1, gradient_accumulation_steps=1),
        model=replace(
            config.model,
            pretrain_steps=min(config.model.pretrain_steps, 5),
            corpus_documents=min(config.model.corpus_documents, 200),
        ),
        peft=replace(
            config.peft, strato=replace(s, episodes=1, episodes_per_update=1, proxy_steps=1, schedule_every=1)
        ),
    )


def _compute(config: RunConfig, folder: Path, progress: bool, force: bool = False) -> RunResult:
    torch.manual_seed(config.seed)
    device = resolve_device(config.device.device_type)
    model, tokenizer, context = base_model(config, device)
    task = load_task(config)
    spec = method_spec(config)
    loop = Loop(
        train=task.train,
        dev=task.dev,
        tokenizer=tokenizer,
        context=context,
        steps=config.training.steps,
        batch_size=config.training.batch_size,
        lr=config.training.lr,
        seed=config.seed,
        device=device,
        amp=config.device.mixed_precision,
        warmup_frac=config.training.warmup_frac,
        weight_decay=config.training.weight_decay,
        accumulation=config.training.gradient_accumulation_steps,
        eval_every=config.training.eval_every,
        spec=spec,
        progress=progress,
    )
    allocation, found = None, {}
    if spec.method == "strato":
        owner = config.peft.strato.search_seed in (None, config.seed)  # the run that owns a shared search redoes it
        allocation, found = search.find_allocation(config, model, loop, force=force and owner)
        s = config.peft.strato
        if s.schedule_every:
            loop.schedule = resize.RankSchedule(every=s.schedule_every, min_rank=s.min_rank, max_rank=s.max_rank)
            loop.budget = allocation.parameters(_shapes(model))
    model = methods.wrap(model, spec, total_step=config.training.steps, allocation=allocation)
    initial_ranks = adapter_ranks(model)
    writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
    loop.writer = writer
    with Meter(device) as meter:
        trace = train_adapters(model, loop)
        eval_start = time.perf_counter()
        scored = scored_items(task, config.task.score_on)
        budget = config.training.max_new_tokens or lm.generation_budget(all_items(task), tokenizer)
        score = lm.score(model, task.kind, scored, tokenizer, context=context, device=device, max_new_tokens=budget)
        eval_s = time.perf_counter() - eval_start
    sample = lm.encode(task.train[: loop.batch_size], tokenizer, context)
    memory = cost.step_memory(model, {k: v.to(device) for k, v in sample.items()}, device)
    writer.add_scalar("test/score", score.points, loop.steps)
    writer.close()
    ranks = {"initial": initial_ranks, "final": adapter_ranks(model), "resizes": trace.resizes}
    write_json(folder / "ranks.json", ranks)
    metrics = {
        "test_score": score.points,
        "test_items": score.items,
        "test_correct": [int(c) for c in score.correct],  # per item, in order: what intervals resample
        "test_score_flexible": score.flexible,  # GSM8K's lenient match; None for the other tasks
        "score_on": config.task.score_on,
        "max_new_tokens": budget if task.kind != "choice" else None,
        "dev_proxy": trace.history[-1].get("dev_proxy", float("nan")),
        "train_flops": trace.flops,
        "flops_per_step": trace.flops_per_step[0],
        "params_trainable_peak": trace.peak_trainable,
        "params_adapter_final": _final_params(model, spec),
        "train_s": trace.train_s,
        "eval_s": eval_s,
        "schedule_s": trace.schedule_s,
        "resizes": len(trace.resizes),
        "step_memory_bytes": memory,
        **found,
    }
    result = RunResult.measured(
        "peft-run",
        config.to_dict(),
        config.seed,
        model,
        device,
        meter,
        metrics=metrics,
        history=trace.history,
        flops=trace.flops,
        artifacts={"ranks": str(folder / "ranks.json"), "tensorboard": str(folder / "tensorboard")},
    )
    log.info(
        "%s/%s seed %d: score %.2f (%d items)", config.task.name, spec.method, config.seed, score.points, score.items
    )
    return result


def _final_params(model, spec: methods.MethodSpec) -> int:
    if spec.method == "adalora":
        return methods.adalora_final_parameters(model)
    return sum(p.numel() for p in trainable(model))


def _shapes(model):
    return module_shapes(model.config)
