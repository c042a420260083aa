"""`edgetune rehearse`: a section's paper profile end to end, every stage cut to a few steps, measured.

Before spending GPU-days on a paper profile, a user runs its pipeline once with every step count cut to `--steps`:
the same notebook, the same stages, on their own data and checkpoints when they are placed under `data/` and
`model/`, and otherwise on random data and random-weight checkpoints written in the real formats
(`edgetune.data.fixtures`) in a temporary project. Every stage the notebook computes is measured (wall time, peak
GPU and host memory, through `EDGETUNE_STAGE_LOG`), and its full paper-profile time is projected from the ratio of
the paper's step count to the rehearsed one.

`--scale true` keeps the paper's shapes (ViT-B/16 at 224 px, batch sizes, Llama-2-7B): for a GPU. `--scale tiny`
shrinks models and images so every section's rehearsal runs on a laptop CPU in CI; its projections mean little, its
point is that every paper path runs.

The projection is first-order: a stage's time is scaled by the largest ratio of paper to rehearsed steps among the
step counts its key holds. Work that does not scale with steps (evaluation over a test set larger than the
rehearsal's, a controller search whose episodes nest proxy runs) is not projected exactly; the table says so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetune.paths import root, runs_dir
from edgetune.runs.cache import STAGE_LOG
from edgetune.runs.io import write_json, write_text

SCALES = ("tiny", "true")


@dataclass(frozen=True)
class Plan:
    """How one section is rehearsed: its step-count fields (cut to --steps), the fixtures and overrides per scale."""

    section: str
    step_fields: tuple[str, ...]  # cut to --steps
    fixtures: Callable[[Path, str, int], dict[str, Any]]  # (project, scale, steps) → overrides; writes data, model
    inputs: tuple[str, ...]  # the paths (under the project) the paper profile reads; the user's are used if present
    drivers: dict[str, tuple[tuple[str, ...], ...]]  # stage → its loops (each a product of step-count fields)
    capped: dict[str, int] = field(default_factory=dict)  # fields cut to min(paper value, this) at every scale
    repeated: tuple[str, ...] = ()  # list fields the rehearsal shortens, each repeating every stage in the paper


def _vit_shape(scale: str) -> dict[str, int]:
    if scale == "true":  # google/vit-base-patch16-224
        return dict(image_size=224, patch_size=16, hidden=768, layers=12, heads=12, mlp=3072)
    return dict(image_size=32, patch_size=8, hidden=48, layers=4, heads=3, mlp=96)


def _vit(project: Path, scale: str, num_labels: int) -> None:
    from edgetune.data.fixtures import write_vit_checkpoint

    folder = project / "model" / "vit-base-patch16-224"
    if not folder.exists():
        write_vit_checkpoint(folder, num_labels=num_labels, **_vit_shape(scale))


def _cifar(project: Path, scale: str) -> tuple[int, int]:
    """CIFAR-100 and a ViT-B/16 checkpoint (unless the user placed theirs); the batch size and split size."""
    from edgetune.data.fixtures import write_cifar100

    batch = 32 if scale == "true" else 8
    n = max(batch * 2, 200)
    if not (project / "data" / "cifar-100-python").exists():
        write_cifar100(project / "data", train=n, test=n)
    _vit(project, scale, 100)
    return batch, n


def _motivation(project: Path, scale: str, steps: int) -> dict[str, Any]:
    batch, n = _cifar(project, scale)
    tiny = dict(num_domains=10, retrain_domains=2, latency_models=("edge-tiny",)) if scale == "tiny" else {}
    return dict(train_size=n, test_size=n, retrain_size=n, batch_size=batch, checkpoint_every=steps, **tiny)


def _customization(project: Path, scale: str, steps: int) -> dict[str, Any]:
    batch, n = _cifar(project, scale)
    tiny = dict(header_channels=16, header_layers=1, header_budget=200_000) if scale == "tiny" else {}
    return dict(
        train_size=n,
        test_size=n,
        device_pool_size=n,
        header_train_size=n,
        batch_size=batch,
        checkpoint_every=steps,
        **tiny,
    )


def _retraining(project: Path, scale: str, steps: int) -> dict[str, Any]:
    from edgetune.data.fixtures import write_image_folders

    classes = 345 if scale == "true" else 4
    per_class = 2 if scale == "true" else 8
    size = 224 if scale == "true" else 32
    domains = ("real", "clipart", "painting", "sketch")
    if not (project / "data" / "domainnet").exists():
        write_image_folders(project / "data" / "domainnet", {d: per_class for d in domains}, classes, size)
    _vit(project, scale, classes)
    n = classes * per_class
    batch = 64 if scale == "true" else 8
    return dict(
        num_classes=classes,
        train_size=int(n * 0.9),
        window_size=n // 2,
        test_size=n // 4,
        stat_size=n // 4,
        batch_size=batch,
        num_domains=3,
        budget_domains=1,
        law_trials=4,
    )


def _assembling(project: Path, scale: str, steps: int) -> dict[str, Any]:
    from edgetune.data.fixtures import write_image_folders

    classes = 1000 if scale == "true" else 4
    batch = 256 if scale == "true" else 8
    size = 224 if scale == "true" else 32
    train_per_class = max(1, batch // classes * 2) if scale == "true" else 8
    if not (project / "data" / "imagenet").exists():
        write_image_folders(project / "data" / "imagenet", {"train": train_per_class, "val": 1}, classes, size)
    tiny = dict(model="edge-tiny", depths=(2, 2), grad_accum=1, workers=0) if scale == "tiny" else {}
    return dict(
        num_classes=classes,
        train_size=classes * train_per_class,
        test_size=classes,
        batch_size=batch,
        fractions=(1.0,),
        **tiny,
    )


def _peft(project: Path, scale: str, steps: int) -> dict[str, Any]:
    from edgetune.data.fixtures import write_gsm8k, write_mmlu
    from edgetune.strato.lm import LLAMA_2_7B, LLAMA_TINY, write_random_llama

    if not (project / "data" / "mmlu").exists():
        write_mmlu(project / "data" / "mmlu")
    if not (project / "data" / "gsm8k").exists():
        write_gsm8k(project / "data" / "gsm8k")
    folder = project / "model" / "llama"
    if not folder.exists():
        write_random_llama(folder, LLAMA_2_7B if scale == "true" else LLAMA_TINY)
    tiny = dict(max_new_tokens=16) if scale == "tiny" else {}  # a tiny random model only has to produce tokens
    return dict(seeds=(42,), dev_size=8, **tiny)


PLANS: dict[str, Plan] = {
    p.section: p
    for p in (
        Plan(
            "motivation",
            ("train_steps", "retrain_steps", "recover_steps"),
            _motivation,
            ("data/cifar-100-python", "model/vit-base-patch16-224"),
            drivers={
                "motivation-early-exit": (("train_steps",),),
                "motivation-retraining-gap": (("recover_steps",), ("retrain_domains", "retrain_steps")),
            },
        ),
        Plan(
            "customization",
            ("finetune_steps", "dynavitw_steps", "dynavit_steps", "search_steps", "header_steps", "local_steps"),
            _customization,
            ("data/cifar-100-python", "model/vit-base-patch16-224"),
            drivers={
                "acme-finetune": (("finetune_steps",),),
                "acme-dynavitw": (("dynavitw_steps",),),
                "acme-dynavit": (("dynavit_steps",),),
            },
            capped={"importance_batches": 2, "rounds": 2},
        ),
        Plan(
            "retraining",
            ("lora_steps", "kb_steps", "gate_steps", "law_iterations", "window_iterations", "eval_every"),
            _retraining,
            ("data/domainnet", "model/vit-base-patch16-224"),
            drivers={
                "retraining-pretrain": (("pretrain_steps",),),
                "retraining-lora": (("lora_steps",),),
                "retraining-kb": (("kb_steps",), ("gate_steps",)),
                "retraining-law": (("law_trials", "law_iterations"),),
                "retraining-online": (("num_domains", "window_iterations"),),
                "retraining-budget": (("budget_domains", "window_iterations"),),
            },
        ),
        Plan(
            "assembling",
            ("pt_steps", "mt_steps", "ft_steps", "warmup_steps", "eval_every"),
            _assembling,
            ("data/imagenet",),
            drivers={"assembling": (("phase_steps",),)},
            repeated=("fractions",),
        ),
        Plan(
            "peft",
            ("steps", "proxy_steps", "episodes", "schedule_every", "eval_every"),
            _peft,
            ("data/mmlu", "data/gsm8k", "model/llama"),
            drivers={"peft-run": (("steps",),), "strato-search": (("episodes", "proxy_steps"),)},
            repeated=("seeds",),
        ),
    )
}


def rehearse(
    section: str, reproduce: Callable[..., int], *, steps: int = 2, scale: str = "tiny", out: Path | None = None
) -> dict[str, Any]:
    """Rehearse `section`'s paper profile through `reproduce` (`edgetune.cli.reproduce`, which runs the notebook);
    returns the report (also written as JSON, a table and a figure)."""
    from edgetune.sections import section as find

    if section not in PLANS:
        raise ValueError(f"unknown section {section!r}; expected one of {', '.join(PLANS)}")
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}; expected one of {SCALES}")
    if steps < 1:
        raise ValueError(f"steps={steps}; expected a positive integer")
    plan, paper = PLANS[section], find(section).config("paper")
    out = Path(out) if out else runs_dir() / "rehearsals" / f"{section}-{scale}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"rehearse-{section}-") as tmp:
        project = Path(tmp)
        placed = _project(project, plan)
        fitted = plan.fixtures(project, scale, steps)
        if any(p.startswith("data") for p in placed):  # the user's data: its own classes and sizes stand
            fitted = {k: v for k, v in fitted.items() if k != "num_classes" and not k.endswith("_size")}
        overrides = {**fitted, **_cut(plan, paper, steps)}
        log = project / "stages.jsonl"
        env = {
            "EDGETUNE_ROOT": str(project),
            "EDGETUNE_RUNS": str(project / "runs"),
            "EDGETUNE_FIGURES": str(project / "figures"),
            STAGE_LOG: str(log),
        }
        start = time.perf_counter()
        with _environment(env):
            assignments = [f"{k}={_literal(v)}" for k, v in overrides.items()]
            status = reproduce([section], "paper", assignments, force=False, timeout=None)
        wall = time.perf_counter() - start
        records = _records(log)
        executed = project / "runs" / "notebooks"
        if executed.exists():  # kept: where a failed rehearsal says what went wrong
            shutil.copytree(executed, out / "notebooks", dirs_exist_ok=True)
    cut = find(section).config("paper", **overrides)
    report = _report(section, scale, steps, plan, paper, cut, overrides, placed, records, wall, status)
    write_json(out / "rehearsal.json", report)
    write_text(out / "rehearsal.md", table(report))
    figure(report, out / "projected_gpu_hours.png")
    return report


def _records(log: Path) -> list[dict]:
    """The stage log's records; a line cut short (a kernel killed mid-write) is skipped."""
    records = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _project(project: Path, plan: Plan) -> list[str]:
    """A temporary project: the notebooks and pyproject of this one, and the user's own placed inputs (linked, so
    nothing is copied or written into them); returns the inputs that were the user's."""
    real = root()
    for name in ("pyproject.toml", "notebooks"):
        (project / name).symlink_to(real / name)
    placed = []
    for relative in plan.inputs:
        source = real / relative
        if source.exists() and not (source.is_dir() and not any(p.name != "README.md" for p in source.iterdir())):
            target = project / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
            placed.append(relative)
    for folder in ("data", "model"):
        (project / folder).mkdir(exist_ok=True)
    return placed


def _cut(plan: Plan, paper, steps: int) -> dict[str, Any]:
    cut = {name: min(getattr(paper, name), steps) for name in plan.step_fields if getattr(paper, name) > 0}
    cut |= {name: min(getattr(paper, name), cap) for name, cap in plan.capped.items()}
    return cut


def _literal(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


class _environment:
    """Set environment variables for a block, and put back what was there."""

    def __init__(self, values: dict[str, str]):
        self.values, self.saved = values, {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ratio(plan: Plan, stage: str, paper, cut) -> float | None:
    """Paper to rehearsed work of a stage: Σ over its loops of the product of their step counts, paper over cut (a
    loop nested in another multiplies). None for a stage the plan does not know."""
    loops = next((v for k, v in plan.drivers.items() if stage == k or stage.startswith(k + "-")), None)
    if loops is None:
        return None

    def work(cfg) -> int:
        return sum(math.prod(_steps(cfg, f, stage) for f in loop) for loop in loops)

    done, full = work(cut), work(paper)
    if done == 0:
        return 1.0 if full == 0 else None  # a stage the paper skips too (retraining's pretrain_steps=0)
    return full / done * _repeats(plan, paper, cut)


def _repeats(plan: Plan, paper, cut) -> float:
    """How many more times the paper runs every stage: more data shares (assembling), more seeds (PEFT)."""
    return math.prod(len(getattr(paper, f)) / len(getattr(cut, f)) for f in plan.repeated)


def _detail(key: dict) -> str:
    """What tells a stage's records apart: the PEFT run's task, method and seed; a phase's module index."""
    config = key.get("config", {})
    if isinstance(config, dict) and "task" in config:
        return f" ({config['task']['name']}, {config['peft']['method']}, seed {config['seed']})"
    return f" ({key['idx']})" if key.get("phase") == "MT" and "idx" in key else ""


def _steps(cfg, name: str, stage: str) -> int:
    if name == "phase_steps":  # assembling: the steps of the phase the stage is
        phase = stage.rsplit("-", 1)[-1].upper()
        per_phase = {"PT": cfg.pt_steps, "MT": cfg.mt_steps, "FT": cfg.ft_steps}
        per_phase["E2E"] = cfg.pt_steps + len(cfg.depths) * cfg.mt_steps + cfg.ft_steps
        return per_phase[phase]
    return int(getattr(cfg, name))


def _report(section, scale, steps, plan, paper, cut, overrides, placed, records, wall, status) -> dict[str, Any]:
    import torch

    rows = []
    for r in records:
        ratio = _ratio(plan, r["stage"], paper, cut)
        rows.append(
            {
                "stage": r["stage"] + _detail(r["key"]),
                "seconds": round(r["seconds"], 3),
                "peak_gpu_gib": round(r["peak_gpu_gib"], 2),
                "peak_host_gib": round(r["peak_host_gib"], 2),
                "paper_to_rehearsed_work": None if ratio is None else round(ratio, 1),
                "projected_hours": round(r["seconds"] * (ratio or 1.0) / 3600, 3),
            }
        )
    outside = wall - sum(r["seconds"] for r in rows)
    rows.append(  # the notebook's own work between cached stages (evaluations, tables, figures): not projected
        {
            "stage": "outside cached stages",
            "seconds": round(outside, 3),
            "peak_gpu_gib": None,
            "peak_host_gib": None,
            "paper_to_rehearsed_work": None,
            "projected_hours": round(outside / 3600, 3),
        }
    )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    hours = sum(r["projected_hours"] for r in rows)
    return {
        "section": section,
        "scale": scale,
        "steps": steps,
        "status": "ok" if status == 0 else "failed",
        "wall_s": round(wall, 1),
        "device": gpu or f"{platform.machine()} CPU, {os.cpu_count()} threads",
        "gpus": torch.cuda.device_count(),
        "inputs": {"the user's": placed, "random fixtures": [p for p in plan.inputs if p not in placed]},
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "stages": rows,
        "projected_paper_hours": round(hours, 2),
        "projected_paper_gpu_hours": round(hours, 2) if gpu else None,  # the rehearsal runs on one GPU
        "command": "edgetune rehearse " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["rehearse"] else None,
        "note": PROJECTION,
    }


PROJECTION = (
    "projected: a cached stage's time × (paper work / rehearsed work), its work being the sum over its loops of the"
    " product of their step counts; fixed costs (loading, evaluation) are scaled too (an over-estimate), evaluation"
    " over test sets larger than the rehearsal's is not (an under-estimate); work outside cached stages is not scaled"
)


def table(report: dict[str, Any]) -> str:
    lines = [
        f"# Rehearsal: {report['section']} (paper profile, {report['scale']} scale, {report['steps']} steps)",
        "",
        f"Device: {report['device']}. Status: {report['status']}. Wall time {report['wall_s']} s.",
        "",
        "| stage | s | peak GPU GiB | peak host GiB | paper/rehearsed work | projected h |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["stages"]:
        cells = [r[k] for k in ("stage", "seconds", "peak_gpu_gib", "peak_host_gib", "paper_to_rehearsed_work")]
        lines.append("| " + " | ".join("—" if c is None else str(c) for c in cells) + f" | {r['projected_hours']} |")
    lines += ["", f"Projected paper-profile time: {report['projected_paper_hours']} h on this device.", ""]
    lines += [f"({report['note']}.)", ""]
    return "\n".join(lines)


def figure(report: dict[str, Any], path: Path) -> None:
    """Projected hours per stage, as a bar chart (a matplotlib Figure of its own: no pyplot, no backend chosen)."""
    from matplotlib.figure import Figure

    rows = report["stages"]
    fig = Figure(figsize=(6, 0.4 * max(3, len(rows)) + 1))
    ax = fig.subplots()
    ax.barh([r["stage"] for r in rows], [r["projected_hours"] for r in rows], color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("projected hours of the paper profile on " + report["device"])
    ax.set_title(f"{report['section']}: rehearsal at {report['scale']} scale, {report['steps']} steps")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120, metadata={"Software": None})
    os.replace(tmp, path)


def main(sections: list[str], steps: int, scale: str, out: str | None, reproduce: Callable[..., int]) -> int:
    status = 0
    for name in sections or list(PLANS):
        folder = Path(out) / f"{name}-{scale}" if out else None
        report = rehearse(name, reproduce, steps=steps, scale=scale, out=folder)
        print(table(report))
        status = status or (report["status"] != "ok")
    return status
