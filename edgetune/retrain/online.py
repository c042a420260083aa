"""BlockTrainer's online loop (docs/blocktrainer.md#online-loop) and its baselines at the same per-window budget.

Per window (one target domain): measure the window's statistics on the knowledge base, let the scaling law and the
planner choose which blocks to compress and for how many iterations, cut the edge model from the knowledge base with
the gates of the window's highest-entropy sample, retrain it (CE on source + 3 × MMD to the unlabelled target),
then merge the update back: edge → kb (average), kb → fm (through the neuron index), fm → kb.

Departures from the original: the budget is counted in training FLOPs and modelled memory instead of profiled
seconds (reproducible on any machine); the merged fm is scored on every domain too (the original scores only the
small model); the baselines (a fixed compressed model retrained in full, the same with LoRA, the fm without
retraining) exist here — the original ships none.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from scipy import linalg

from edgetune.data.streaming import first
from edgetune.models import image_size
from edgetune.progress import progress
from edgetune.retrain.config import RetrainingConfig
from edgetune.retrain.data import Window
from edgetune.retrain.kb import edge_model, merge_into_kb, set_sparsity
from edgetune.retrain.law import ScalingLaw
from edgetune.retrain.offline import Offline
from edgetune.retrain.planner import BlockCosts, exact, greedy
from edgetune.retrain.train import pre_logits, retrain, step_cost
from edgetune.runs import atomic_write, write_json
from edgetune.training import accuracy, derive_seed, normalize, seeded_rng

METHODS = ("blocktrainer", "fixed", "fixed-lora", "fm")
LABELS = {
    "blocktrainer": "BlockTrainer (edge model)",
    "blocktrainer-fm": "BlockTrainer (merged fm)",
    "fixed": "fixed compressed, full retraining",
    "fixed-lora": "fixed compressed + LoRA",
    "fm": "fm, no retraining",
}


# ---------------------------------------------------------------------------------------------- statistics
@torch.no_grad()
def features(model, x: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    model.to(device).eval()
    return torch.cat(
        [
            pre_logits(model, normalize(x[i : i + batch_size].to(device))).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    )


def moments(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = feats.double().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Fréchet distance between Gaussians (μ, Σ): the FID formula, as BlockTrainer's law input."""
    (mu1, s1), (mu2, s2) = a, b
    root = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


@torch.no_grad()
def window_stats(kb, source_moments, x: torch.Tensor, device) -> dict[str, float]:
    """Label-free statistics of a target window on the dense kb: Fréchet distance of its features to the source's,
    and the kb's mean max-softmax confidence."""
    set_sparsity(kb, 0.0)
    feats = features(kb, x, device)
    confidence = kb.head(feats.to(device)).float().softmax(-1).max(-1).values.mean().item()
    return {"fd": frechet(source_moments, moments(feats)) / feats.shape[1], "confidence": confidence}


@torch.no_grad()
def hardest_sample(model, x: torch.Tensor, device) -> torch.Tensor:
    """The highest-output-entropy image of a batch (the original's representative sample), normalized, (1, 3, S, S)."""
    set_sparsity(model, 0.0)
    model.to(device).eval()
    xb = normalize(x.to(device))
    p = model(xb).float().softmax(-1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return xb[int(entropy.argmax())][None]


# ---------------------------------------------------------------------------------------------- budgets
@dataclass(frozen=True)
class Budget:
    """A window's budget (training FLOPs, modelled bytes) and what every method can do with it."""

    flops: float
    memory: float
    costs: BlockCosts
    fixed_iterations: int
    lora_iterations: int
    step_flops: dict[str, float]
    step_memory: dict[str, float]


def memory_bytes(model, activations: int) -> float:
    """Modelled training memory: fp32 weights, plus gradient and two AdamW moments per trainable parameter, plus the
    activations autograd saves."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * total + 12.0 * trainable + activations


def cost(model, cfg: RetrainingConfig) -> tuple[float, float]:
    twin = copy.deepcopy(model)
    flops, acts = step_cost(twin, image_size(cfg.model, cfg.num_classes), cfg.batch_size, cfg.mmd_weight)
    return float(flops), memory_bytes(twin, acts)


def budget(cfg: RetrainingConfig, offline: Offline, fixed, lora, sample: torch.Tensor, factor: float = 1.0) -> Budget:
    """Per-block costs from the all-full and all-compressed edge models (blocks are uniform, so a plan's cost is
    exactly linear in its full blocks); budget = `window_iterations` × factor all-compressed iterations."""
    depth = len(offline.kb.blocks)
    f_full, m_full = cost(freeze_head(edge_model(offline.kb, sample, [False] * depth, cfg.sparsity)), cfg)
    f_comp, m_comp = cost(freeze_head(edge_model(offline.kb, sample, [True] * depth, cfg.sparsity)), cfg)
    costs = BlockCosts(
        time_full=np.full(depth, f_full / depth),
        time_comp=np.full(depth, f_comp / depth),
        mem_full=np.full(depth, m_full / depth),
        mem_comp=np.full(depth, m_comp / depth),
    )
    flops = cfg.window_iterations * factor * f_comp
    f_fixed, m_fixed = cost(fixed, cfg)
    f_lora, m_lora = cost(lora, cfg)
    return Budget(
        flops=flops,
        memory=m_comp + cfg.memory_share * (m_full - m_comp),
        costs=costs,
        fixed_iterations=int(flops // f_fixed),
        lora_iterations=int(flops // f_lora),
        step_flops={"all-full": f_full, "all-compressed": f_comp, "fixed": f_fixed, "fixed-lora": f_lora},
        step_memory={"all-full": m_full, "all-compressed": m_comp, "fixed": m_fixed, "fixed-lora": m_lora},
    )


def freeze_head(model):
    """Freeze the classifier head (BlockTrainer retrains everything else) and return the model."""
    for p in model.head.parameters():
        p.requires_grad_(False)
    return model


def baselines(cfg: RetrainingConfig, offline: Offline, sample: torch.Tensor):
    """The fixed compressed model (every block compressed, channels fixed once from a source sample) and its LoRA
    twin (peft LoRA of rank `lora_rank` on every linear of the blocks; only the adapters train)."""
    depth = len(offline.kb.blocks)
    fixed = freeze_head(edge_model(offline.kb, sample, [True] * depth, cfg.sparsity))
    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_rank, lora_dropout=0.0, target_modules=["down", "up", "fc1", "fc2"]
    )
    with seeded_rng(cfg.seed):  # the adapters' initialization, seeded without touching the caller's RNG
        lora = get_peft_model(copy.deepcopy(fixed), config).get_base_model()
    return fixed, lora


# ---------------------------------------------------------------------------------------------- one window
def blocktrainer_window(
    cfg,
    offline: Offline,
    law: ScalingLaw,
    source_moments,
    bud: Budget,
    stream_source,
    window: Window,
    seed: int,
    device,
) -> tuple[dict, list[dict], dict]:
    stats = window_stats(offline.kb, source_moments, first(window.unlabelled, cfg.stat_size), device)
    predict = law.predictor(np.array([stats[s] for s in law.stat_names]))
    t0 = time.perf_counter()
    plan = greedy(predict, bud.costs, bud.flops, bud.memory, quantum=cfg.quantum, cap=cfg.cap)
    greedy_ms = 1e3 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    best = exact(predict, bud.costs, bud.flops, bud.memory, cap=cfg.cap)
    exact_ms = 1e3 * (time.perf_counter() - t0)
    sample = hardest_sample(offline.kb, window.unlabelled[: cfg.batch_size], device)
    small = freeze_head(edge_model(offline.kb, sample, plan.compressed, cfg.sparsity))
    curve = retrain(
        small,
        [p for p in small.parameters() if p.requires_grad],
        stream_source,
        window.unlabelled,
        window.test,
        steps=plan.iterations,
        batch_size=cfg.batch_size,
        lr=cfg.retrain_lr,
        mmd_weight=cfg.mmd_weight,
        eval_every=cfg.eval_every,
        seed=seed,
        device=device,
    )
    predicted = predict(np.array([c["iteration"] for c in curve]), np.array([plan.compressed], dtype=float))[0]
    for c, p in zip(curve, predicted, strict=True):
        c["predicted"] = float(p)
    deltas = merge_into_kb(offline.kb, small, ratio=cfg.proxy_to_kb)
    offline.index.project_to_fm(offline.fm, deltas, alpha=cfg.kb_to_fm)
    offline.index.pull_kb(offline.kb, offline.fm, alpha=cfg.fm_to_kb)
    info = {
        **stats,
        "iterations": plan.iterations,
        "full_blocks": int(sum(not c for c in plan.compressed)),
        "plan": "".join("c" if c else "F" for c in plan.compressed),
        "greedy_objective": plan.objective,
        "exact_objective": best.objective,
        "exact_plan": "".join("c" if c else "F" for c in best.compressed),
        "exact_iterations": best.iterations,
        "greedy_ms": greedy_ms,
        "exact_ms": exact_ms,
        "plan_flops": plan.time,
        "plan_memory": plan.memory,
        "fm_accuracy": accuracy(offline.fm, window.test, device)[0],
    }
    return _row(curve), curve, info


def baseline_window(model, iterations: int, cfg, stream_source, window: Window, seed: int, device):
    params = [p for p in model.parameters() if p.requires_grad]
    curve = retrain(
        model,
        params,
        stream_source,
        window.unlabelled,
        window.test,
        steps=iterations,
        batch_size=cfg.batch_size,
        lr=cfg.retrain_lr,
        mmd_weight=cfg.mmd_weight,
        eval_every=cfg.eval_every,
        seed=seed,
        device=device,
    )
    return _row(curve), curve


def _row(curve: list[dict]) -> dict:
    acc = [c["accuracy"] for c in curve]
    return {"before": acc[0], "after": acc[-1], "mean": float(np.mean(acc)), "iterations": curve[-1]["iteration"]}


# ---------------------------------------------------------------------------------------------- the stream
def run_stream(
    cfg: RetrainingConfig,
    offline: Offline,
    law: ScalingLaw,
    stream,
    windows: list[Window],
    folder: Path,
    device,
    *,
    factor: float = 1.0,
    methods=METHODS,
    desc: str = "stream",
) -> dict:
    """Every method over `windows`, in order, each carrying its own state from window to window. Progress is saved
    after every window (states as safetensors, rows as JSON), so an interrupted stream resumes where it stopped.
    Returns {"rows", "curves", "plans"} tables. `offline` is copied, never changed."""
    folder.mkdir(parents=True, exist_ok=True)
    state = _State.start(cfg, offline, stream, law, factor, device)
    done = state.restore(folder)
    for i in progress(range(done, len(windows)), desc=desc, initial=done, total=len(windows)):
        state.step(i, windows[i], methods, cfg, stream, device)
        state.save(folder, i + 1)
    return state.tables()


@dataclass
class _State:
    offline: Offline
    law: ScalingLaw
    source_moments: tuple
    bud: Budget
    fixed: torch.nn.Module
    lora: torch.nn.Module
    fm0: torch.nn.Module
    rows: list
    curves: list
    seed: int

    @classmethod
    def start(cls, cfg, offline: Offline, stream, law, factor, device) -> _State:
        own = Offline(copy.deepcopy(offline.fm), copy.deepcopy(offline.kb), copy.deepcopy(offline.index), {})
        sample = hardest_sample(own.kb, stream.source[0][: cfg.batch_size], device)
        fixed, lora = baselines(cfg, own, sample)
        bud = budget(cfg, own, fixed, lora, sample, factor)
        src = moments(features(own.kb, first(stream.source[0], cfg.stat_size), device))
        return cls(own, law, src, bud, fixed.to(device), lora.to(device), offline.fm, [], [], cfg.seed)

    def models(self) -> dict[str, torch.nn.Module]:
        return {"fm": self.offline.fm, "kb": self.offline.kb, "fixed": self.fixed, "lora": self.lora}

    def step(self, i: int, window: Window, methods, cfg, stream, device) -> None:
        seed = derive_seed(cfg.seed, "window", i)
        base = {"window": i, "domain": window.name}
        if "blocktrainer" in methods:
            row, curve, info = blocktrainer_window(
                cfg, self.offline, self.law, self.source_moments, self.bud, stream.source, window, seed, device
            )
            self._add("blocktrainer", base, row, curve, info)
            fm_acc = info["fm_accuracy"]
            self._add(
                "blocktrainer-fm", base, {"before": fm_acc, "after": fm_acc, "mean": fm_acc, "iterations": 0}, [], {}
            )
        if "fixed" in methods:
            row, curve = baseline_window(
                self.fixed, self.bud.fixed_iterations, cfg, stream.source, window, seed, device
            )
            self._add("fixed", base, row, curve, {})
        if "fixed-lora" in methods:
            row, curve = baseline_window(self.lora, self.bud.lora_iterations, cfg, stream.source, window, seed, device)
            self._add("fixed-lora", base, row, curve, {})
        if "fm" in methods:
            acc = accuracy(self.fm0, window.test, device)[0]
            self._add("fm", base, {"before": acc, "after": acc, "mean": acc, "iterations": 0}, [], {})

    def _add(self, method: str, base: dict, row: dict, curve: list, info: dict) -> None:
        self.rows.append({**base, "method": method, **row, **info})
        self.curves += [{**base, "method": method, **c} for c in curve]

    def save(self, folder: Path, done: int) -> None:
        state = {
            f"{name}.{k}": v.detach().contiguous().cpu().clone()
            for name, m in self.models().items()
            for k, v in m.state_dict().items()
        }
        state.update({f"index.{k}": v.contiguous().cpu() for k, v in self.offline.index.state_dict().items()})
        atomic_write(folder / f"state-{done}.safetensors", lambda tmp: save_file(state, str(tmp)))
        write_json(folder / "progress.json", {"done": done, "rows": self.rows, "curves": self.curves})
        for old in folder.glob("state-*.safetensors"):
            if old.name != f"state-{done}.safetensors":
                old.unlink()

    def restore(self, folder: Path) -> int:
        progress = folder / "progress.json"
        if not progress.exists():
            return 0
        saved = json.loads(progress.read_text())
        state = load_file(str(folder / f"state-{saved['done']}.safetensors"))
        for name, m in self.models().items():
            prefix = f"{name}."
            m.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
        index = {k[len("index.") :]: v for k, v in state.items() if k.startswith("index.")}
        self.offline.index = type(self.offline.index).from_state_dict(index, self.offline.kb, self.offline.fm)
        self.rows, self.curves = saved["rows"], saved["curves"]
        return int(saved["done"])

    def tables(self) -> dict[str, pd.DataFrame]:
        """The rows and curves, columns in one fixed order (a resumed run reads them back from JSON)."""
        return {"rows": _ordered(pd.DataFrame(self.rows)), "curves": _ordered(pd.DataFrame(self.curves))}


FIRST = ("window", "domain", "method", "before", "after", "mean", "iterations", "accuracy", "predicted")


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in FIRST if c in table.columns]
    return table[first + sorted(set(table.columns) - set(first))]
