"""One training loop for every phase of model assembling (PT, MT, FT) and the end-to-end baseline (E2E), through
Hugging Face accelerate: one process, or many with `accelerate launch` / `torchrun` (DDP; gloo on CPU, NCCL on GPU).

* Effective batch = processes × batch × accumulation. Every step draws the *global* batch of indices from a
  generator seeded by (seed, step) — the same on every process — and each process takes its slice, so a run is
  the same whatever the split into processes and accumulation steps (up to float reduction order).
* bf16 autocast on GPU (accelerate's mixed precision), fp32 on CPU.
* Auto-resume: `out_dir/checkpoints/step_<n>` (accelerate's own state: model, optimizer, RNG); a finished run has
  `out_dir/result.json` and returns at once.
* Data: the embedded scenes, rendered and held in memory; or ImageNet-style class folders (`data="imagefolder"`:
  `data/<data_root>/train/<class>/…` and `…/val/<class>/…`), streamed by DataLoader workers with DeiT's crop, flip
  and RandAugment (`edgetune.data.streaming`), the same indices per step and an augmentation seeded by where the
  image is used, so a resumed run sees what a straight run would.
* Cost is counted in one unit for every phase: training FLOPs ≈ 3 × forward FLOPs per image × images seen (the
  frozen stages of MT still run forward and pass gradients back; counted alike, an over-estimate for MT).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import Dataset

from edgetune.assemble.model import (
    Division,
    assemble,
    build_divided,
    incubation_model,
    meta_division,
    stage_parameters,
)
from edgetune.data import streaming
from edgetune.data.readers import open_dataset
from edgetune.data.scenes import CLEAR, SceneSpec, render_scenes
from edgetune.models import forward_flops
from edgetune.models.open import architecture
from edgetune.models.vit import ViTShape
from edgetune.paths import data_dir
from edgetune.runs import RunResult, describe_device, load_weights, package_versions, save_weights, write_json
from edgetune.runs.cache import checkpoint_problem, checksum_problem, content_digest, write_checksums
from edgetune.training import derive_seed, hits, normalize, warmup_cosine

PHASES = ("PT", "MT", "FT", "E2E")
DATA = ("scenes", "imagefolder")


class RunFolderError(ValueError):
    """A run folder that holds another run (finished or not), or a damaged one."""


class InputError(ValueError):
    """A dataset the run reads does not match its settings."""


@dataclass(frozen=True)
class AssembleConfig:
    """One phase's run. `depths` is the target's division (K stages); PT ignores it but for K."""

    phase: str
    out_dir: str
    idx: int = 0
    model: str = "edge-small"
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = 20
    train_size: int = 8_000
    test_size: int = 1_000
    steps: int = 200
    batch_size: int = 64  # per process
    grad_accum: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    clip_grad: float | None = None
    seed: int = 0
    checkpoint_every: int = 50
    eval_every: int = 0  # test accuracy every this many steps into the history (0: only at the end)
    data: str = "scenes"  # or "imagefolder": data/<data_root>/train/<class>/… and …/val/<class>/…
    data_root: str = "imagenet"
    workers: int = 8  # DataLoader worker processes per training process (imagefolder)
    compile: bool = False  # torch.compile the model's forward on GPU (the same maths; ignored on CPU)
    meta: str | None = None  # PT output dir (MT)
    incubation: tuple[str, ...] = field(default_factory=tuple)  # MT output dirs in stage order (FT)

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase={self.phase!r}; expected one of {PHASES}")
        if self.data not in DATA:
            raise ValueError(f"data={self.data!r}; expected one of {DATA}")
        if not 0 <= self.workers <= 256:
            raise ValueError(f"workers={self.workers}; expected 0 (load in this process) to 256")
        if self.phase == "MT" and (self.meta is None or not 0 <= self.idx < len(self.depths)):
            raise ValueError(f"MT needs --meta (a PT output dir) and 0 <= --idx < {len(self.depths)}, got {self.idx}")
        if self.phase == "FT" and len(self.incubation) != len(self.depths):
            raise ValueError(
                f"FT needs {len(self.depths)} --incubation dirs (one MT run per stage), got {len(self.incubation)}"
            )
        for name in ("steps", "batch_size", "grad_accum", "num_classes", "train_size", "test_size"):
            if not 1 <= getattr(self, name) <= 100_000_000:
                raise ValueError(f"{name}={getattr(self, name)}; expected a positive integer (at most 100,000,000)")
        for name in ("warmup_steps", "seed", "eval_every"):
            if not 0 <= getattr(self, name) < 2**32:
                raise ValueError(f"{name}={getattr(self, name)}; expected an integer in [0, 2**32)")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every}; expected a positive integer")
        if not (math.isfinite(self.lr) and 0 < self.lr < 10) or not (
            math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            raise ValueError(
                f"lr={self.lr}, weight_decay={self.weight_decay}; expected a finite lr in (0, 10), decay ≥ 0"
            )
        if self.clip_grad is not None and not (math.isfinite(self.clip_grad) and self.clip_grad > 0):
            raise ValueError(f"clip_grad={self.clip_grad}; expected a finite positive number or None")
        blocks = self.shape.depth
        if not self.depths or min(self.depths) < 1 or sum(self.depths) != blocks:
            raise ValueError(
                f"depths={self.depths}; expected positive stage depths summing to {self.model}'s {blocks} blocks"
            )

    @property
    def shape(self) -> ViTShape:
        return architecture(self.model)  # a checkpoint's architecture only: assembling trains from scratch


def build_model(cfg: AssembleConfig):
    """The phase's model, its division, and the parameters to optimize."""
    target = Division(cfg.depths)
    if cfg.phase == "PT":
        torch.manual_seed(cfg.seed)
        division = meta_division(target.stages)
        model = build_divided(cfg.shape, division, cfg.num_classes)
        return model, division, list(model.parameters())
    if cfg.phase == "MT":
        meta = load_weights(
            build_divided(cfg.shape, meta_division(target.stages), cfg.num_classes),
            _finished(cfg.meta) / "model.safetensors",
        )
        model, division = incubation_model(meta, target, cfg.idx, cfg.shape, cfg.num_classes, seed=cfg.seed)
        return model, division, stage_parameters(model, division, cfg.idx)
    if cfg.phase == "FT":
        runs = [load_run(Path(d), cfg) for d in cfg.incubation]
        model = assemble(runs, target, cfg.shape, cfg.num_classes)
        return model, target, list(model.parameters())
    torch.manual_seed(cfg.seed)
    model = build_divided(cfg.shape, target, cfg.num_classes)
    return model, target, list(model.parameters())


def _finished(out_dir: str | Path) -> Path:
    """`out_dir` if it holds a finished, intact run: its result.json readable and its files matching the checksums it
    recorded; a missing run is a FileNotFoundError, a damaged one a RunFolderError, each naming the folder."""
    path = Path(out_dir)
    if not (path / "result.json").is_file():
        raise FileNotFoundError(f"{path} holds no finished run (no result.json); run that phase first")
    _stored_result(path)
    return path


def _stored_result(out: Path) -> RunResult:
    try:
        stored = json.loads((out / "result.json").read_text(encoding="utf-8"))
        result = RunResult.from_dict(stored)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{out / 'result.json'} is unreadable ({err}); rerun that phase with --force") from err
    problem = (
        checksum_problem(out, result.checksums)
        if stored.get("checksums")
        else "result.json carries no checksums (written by an earlier version; it cannot be verified)"
    )
    if problem:
        raise RunFolderError(f"{out}: {problem}; rerun that phase with --force")
    return result


def load_run(out_dir: Path, cfg: AssembleConfig):
    config = json.loads((_finished(out_dir) / "result.json").read_text())["config"]
    division = Division(tuple(config["division"]))
    model = build_divided(cfg.shape, division, cfg.num_classes)
    return load_weights(model, out_dir / "model.safetensors"), division


def data(cfg: AssembleConfig):
    """(train, test): tensors of rendered scenes, or lazy datasets of class folders (a seeded `train_size` subset of
    train/ with training augmentation, `test_size` of val/ with the evaluation crop)."""
    if cfg.data == "imagefolder":
        return _image_folders(cfg)
    spec = SceneSpec(cfg.num_classes, cfg.shape.img_size)
    return (
        render_scenes(spec, CLEAR, cfg.train_size, seed=derive_seed(cfg.seed, "scenes", "train")),
        render_scenes(spec, CLEAR, cfg.test_size, seed=derive_seed(cfg.seed, "scenes", "test")),
    )


def _image_folders(cfg: AssembleConfig):
    root, size = data_dir() / cfg.data_root, cfg.shape.img_size
    train = open_dataset("imagefolder", root, split="train", transform=streaming.train_transform(size))
    val = open_dataset("imagefolder", root, split="val", transform=streaming.eval_transform(size))
    if train.classes != val.classes or len(train.classes) != cfg.num_classes:
        raise InputError(
            f"{root}: train/ has {len(train.classes)} classes and val/ {len(val.classes)}"
            f"{'' if train.classes == val.classes else ' (not the same ones)'}; expected the same {cfg.num_classes}"
            " (num_classes)"
        )
    return (
        streaming.seeded_subset(train, cfg.train_size, derive_seed(cfg.seed, "train subset")),
        streaming.seeded_subset(val, cfg.test_size, derive_seed(cfg.seed, "val subset")),
    )


def global_batch(cfg: AssembleConfig, step: int, size: int, n: int) -> torch.Tensor:
    """Indices of step `step`'s global batch: a function of (seed, step) alone, identical on every process."""
    return torch.randint(0, n, (size,), generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "batch", step)))


def run(cfg: AssembleConfig, accelerator: Accelerator | None = None) -> RunResult:
    """Train one phase to completion (resuming if interrupted) and write model + result into `cfg.out_dir`.

    The folder's `run.json` records what the run was asked for (its settings and the weights it starts from, by
    content); a finished or unfinished run in the folder with other settings is a `RunFolderError` naming them."""
    out = Path(cfg.out_dir)
    gpu = torch.cuda.is_available()  # without cpu=True accelerate would not join a CPU (gloo) process group
    accelerator = accelerator or Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision="bf16" if gpu else "no", cpu=not gpu
    )
    # a missing input run: FileNotFoundError naming it, before anything starts; the process count sets the batch
    request = {**_request(cfg), "processes": accelerator.num_processes}
    if (out / "result.json").is_file():
        return _finished_run(out, request)
    model, division, params = build_model(cfg)
    flops_per_image = forward_flops(model.eval(), torch.rand(1, 3, cfg.shape.img_size, cfg.shape.img_size))
    train_data, test = data(cfg)  # inputs opened before the folder is claimed
    _claim(out, request, write=accelerator.is_main_process)  # every process checks, the main one records
    accelerator.wait_for_everyone()
    gpu_run = accelerator.device.type == "cuda"
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=gpu_run or None)
    if cfg.compile and gpu_run:
        model.compile()  # in place: the state dict keeps its keys, so checkpoints resume compiled or not
    model, optimizer = accelerator.prepare(model, optimizer)
    start, history = _resume(accelerator, out)
    history = _train(cfg, accelerator, model, optimizer, params, train_data, start, history, test)
    return _finish(cfg, accelerator, model, division, test, history, flops_per_image)


# what may differ between the run in a folder and a request for it without changing its result (the input runs
# enter by the content of their weights, `inputs`, not by their folders)
_NOT_RESULT = ("out_dir", "checkpoint_every", "meta", "incubation", "workers", "compile")
REQUEST = "run.json"


def _request(cfg: AssembleConfig) -> dict:
    """What a phase's result depends on: its settings and the SHA-256 of the weights of the runs it starts from."""
    folders = {"meta": cfg.meta} if cfg.phase == "MT" else {}
    if cfg.phase == "FT":
        folders = {f"incubation[{i}]": d for i, d in enumerate(cfg.incubation)}
    inputs = {name: content_digest(_finished(d) / "model.safetensors") for name, d in folders.items()}
    settings = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in _NOT_RESULT}
    return {**settings, "inputs": inputs}


def _differences(out: Path, stored: dict, wanted: dict, state: str) -> None:
    differ = sorted(k for k in wanted if stored.get(k) != wanted[k])
    if differ:
        change = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} asked" for k in differ)
        raise RunFolderError(
            f"{out} holds {state} run with other settings ({change}); use another --out-dir, or --force to start over"
        )


def _claim(out: Path, request: dict, write: bool = True) -> None:
    """Record the request in `out` (resuming only a run asked for the same thing); only `write`rs record it."""
    path = out / REQUEST
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RunFolderError(f"{path} is unreadable ({err}); remove it or rerun with --force") from err
        _differences(out, stored, request, "an unfinished")
    elif (out / "checkpoints").exists():
        raise RunFolderError(f"{out} holds checkpoints of a run that recorded no {REQUEST}; rerun with --force")
    elif write:
        write_json(path, request)


def _finished_run(out: Path, request: dict) -> RunResult:
    """The finished run in `out`, if it was made as requested; a folder holding another run is a `RunFolderError`
    naming the differing fields (a different --out-dir or --force), never a silently mislabelled result."""
    result = _stored_result(out)
    _differences(out, result.config, request, "a finished")
    return result


def _resume(accelerator: Accelerator, out: Path) -> tuple[int, list[dict]]:
    """The newest intact checkpoint's step and history (0 and [] when starting fresh). A checkpoint whose files do
    not match the checksums written with it is skipped, with a notice, for the one before it; every process reads
    the same files, so all of them make the same choice."""
    found = sorted((out / "checkpoints").glob("step_*/history.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    for history in reversed(found):
        folder = history.parent
        problem = checkpoint_problem(folder)
        if problem is None:
            try:
                accelerator.load_state(str(folder))
                return int(folder.name.split("_")[1]), json.loads(history.read_text())
            except (RuntimeError, ValueError, KeyError, OSError) as err:
                problem = f"unreadable ({type(err).__name__}: {str(err)[:120]})"
        if accelerator.is_main_process:
            print(f"edgetune: checkpoint {folder}: {problem}; skipping it", file=sys.stderr)
    return 0, []


def _train(cfg, accelerator, model, optimizer, params, train, start, history, test) -> list[dict]:
    """The visible loop: per step, `grad_accum` micro-batches of `batch_size` per process."""
    begin = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    batches = _batches(cfg, accelerator, train, start)
    model.train()
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, cfg.warmup_steps, cfg.steps, peak=cfg.lr)
        step_loss = torch.zeros((), device=accelerator.device)
        for _ in range(cfg.grad_accum):
            x, y = next(batches)
            x = normalize(x.to(accelerator.device, non_blocking=True))  # from pinned memory; normalized on the device
            y = y.to(accelerator.device, non_blocking=True)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = F.cross_entropy(model(x).float(), y)
                accelerator.backward(loss)
                step_loss += loss.detach() / cfg.grad_accum
                if accelerator.sync_gradients and cfg.clip_grad:
                    accelerator.clip_grad_norm_(params, cfg.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        history.append(
            {
                "step": step + 1,
                "loss": accelerator.reduce(step_loss, "mean").item(),  # mean over micro-batches and processes
                "seconds": time.perf_counter() - begin,
            }
        )
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            plain = accelerator.unwrap_model(model)
            history[-1]["accuracy"] = evaluate(plain, test, accelerator.device, cfg.workers)["accuracy"]
            model.train()
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _checkpoint(accelerator, Path(cfg.out_dir), step + 1, history)
    return history


def _batches(cfg: AssembleConfig, accelerator: Accelerator, train, start: int):
    """This process's micro-batches from step `start` on, in order: micro-batch a of a step is this process's slice of
    the global batch drawn for (seed, step), from the tensors in memory or streamed from the dataset."""
    micro, procs, rank = cfg.batch_size, accelerator.num_processes, accelerator.process_index
    n = len(train) if isinstance(train, Dataset) else len(train[0])

    def parts(step: int) -> list[torch.Tensor]:
        idx = global_batch(cfg, step, micro * procs * cfg.grad_accum, n).view(cfg.grad_accum, procs, micro)
        return [idx[a, rank] for a in range(cfg.grad_accum)]

    if isinstance(train, Dataset):
        yield from streaming.step_loader(train, streaming.StepBatches(parts, start, cfg.steps, cfg.seed), cfg.workers)
        return
    for step in range(start, cfg.steps):
        for part in parts(step):
            yield train[0][part], train[1][part]


def _checkpoint(accelerator: Accelerator, out: Path, step: int, history: list[dict]) -> None:
    """accelerate's state, then the history last: a checkpoint without history.json is incomplete and ignored."""
    folder = out / "checkpoints" / f"step_{step}"
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()  # every process's files are written before they are summed
    if accelerator.is_main_process:
        write_checksums(folder)
        write_json(folder / "history.json", history)  # last: marks the checkpoint complete
        for old in sorted((out / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))[:-2]:
            shutil.rmtree(old, ignore_errors=True)


def evaluate(model, test, device, workers: int = 0) -> dict:
    """Top-1 accuracy on `test` and which items were right ("test_correct", in order)."""
    if isinstance(test, Dataset):
        right = streaming.loader_hits(model, test, device, normalize, batch_size=256, workers=workers)
    else:
        right = hits(model, test, device, batch_size=256, mixed_precision=False)
    return {"accuracy": sum(right) / max(1, len(right)), "test_correct": right}


def _finish(cfg, accelerator, model, division, test, history, flops_per_image) -> RunResult:
    accelerator.wait_for_everyone()
    plain = accelerator.unwrap_model(model)
    images = cfg.steps * cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    result = RunResult(
        stage=f"assemble-{cfg.phase}",
        config={
            **asdict(cfg),
            "division": list(division.depths),
            "inputs": _request(cfg)["inputs"],
            "processes": accelerator.num_processes,
        },
        seed=cfg.seed,
        history=history,
        metrics=evaluate(plain, test, accelerator.device, cfg.workers),
        params_total=sum(p.numel() for p in plain.parameters()),
        params_trainable=sum(p.numel() for p in plain.parameters() if p.requires_grad),
        flops=3.0 * flops_per_image * images,
        wall_time_s=history[-1]["seconds"] if history else 0.0,
        device=f"{describe_device(accelerator.device)} × {accelerator.num_processes}",
        versions=package_versions(),
    )
    if accelerator.is_main_process:
        out = Path(cfg.out_dir)
        save_weights(plain, out / "model.safetensors")
        result.checksums = {name: content_digest(out / name) for name in ("model.safetensors", REQUEST)}
        write_json(out / "result.json", result.to_dict())  # last: its presence marks the run finished
    accelerator.wait_for_everyone()
    return result
