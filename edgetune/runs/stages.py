"""Cached stages and their keys, by one rule for every section.

A `Stage` declares the config fields it reads and the stages whose results it starts from. Its compute function
receives only those fields, as a frozen sub-config: reading any other field is an AttributeError naming the stage,
and a compute function that captures the whole config is refused. So a stage cannot depend on a value its key does
not hold. The key (`stage_key`) is the sub-config, the cache keys of the upstream stages and the versions of the
generated data or code the stage depends on; the cache hashes it into the stage's folder name.

Sections whose configs are nested (the PEFT section's run config) or whose stages are built per call (assembling's
phases) build their sub-configs themselves and key them through the same `stage_key`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetune.paths import root
from edgetune.runs.cache import cached, config_hash, content_digest
from edgetune.runs.schema import RunResult

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")  # a `model` value naming a weights file

# Where a run happens never changes its result: no key holds the device.
UNKEYED = ("device",)

# The versions a key may hold, by the name the key gives them: (module, attribute), imported only when asked for.
VERSIONS: dict[str, tuple[str, str]] = {
    "scenes_version": ("edgetune.data.scenes", "SCENES_VERSION"),
    "tasks": ("edgetune.strato.tasks", "VERSION"),
    "tokenizer": ("edgetune.strato.lm", "TOKENIZER_VERSION"),
    "scoring": ("edgetune.strato.lm", "SCORING_VERSION"),
    "evaluation": ("edgetune.training", "EVALUATION_VERSION"),
}


# The version of the shared numerics every stage uses (`training.derive_seed`, `training.warmup_cosine`): bumped when
# they change what any stage computes, so no stage reuses a result made under the old rule.
NUMERICS = 2


def stage_key(config: Mapping[str, Any], upstream: Mapping[str, str] = {}, versions: tuple[str, ...] = ()) -> dict:
    """The one rule: a stage's key is its own sub-config (a checkpoint path as the SHA-256 of its content), the cache
    keys (folder names) of the stages whose results it reads, by stage, the named versions (`VERSIONS`) of the
    data or code it depends on, and the version of the shared numerics (`NUMERICS`)."""
    unknown = [name for name in versions if name not in VERSIONS]
    if unknown:
        raise ValueError(f"unknown version name(s) {unknown}; expected some of {sorted(VERSIONS)}")
    key = {name: _by_content(name, value) for name, value in config.items() if name not in UNKEYED}
    if upstream:
        key["upstream"] = dict(sorted(upstream.items()))
    for name in versions:
        module, attribute = VERSIONS[name]
        key[name] = getattr(importlib.import_module(module), attribute)
    key["numerics"] = NUMERICS  # every stage draws seeds and schedules through `edgetune.training`
    return key


@dataclass(frozen=True)
class Stage:
    """A cached stage of a section with a flat config: its name (the cache folder's prefix), the config fields it
    reads, the stages it starts from and the versions it depends on."""

    name: str
    reads: tuple[str, ...]
    after: tuple[Stage, ...] = ()
    versions: tuple[str, ...] = ("scenes_version",)
    unkeyed: tuple[str, ...] = ()  # fields the stage reads that never change its result (how often to checkpoint)

    def config(self, cfg: Any) -> Any:
        """The frozen sub-config of `cfg` this stage reads, its unkeyed fields and the device (which no key holds)."""
        values = {name: getattr(cfg, name) for name in (*self.reads, *self.unkeyed)}
        if hasattr(cfg, "device"):
            values.setdefault("device", cfg.device)
        return _sub_config_class(self.name, tuple(values))(**values)

    def key(self, cfg: Any, **extra: Any) -> dict:
        """The stage's cache key under `cfg`; `extra` adds values the stage reads that are not config fields (a fitted
        law, say)."""
        upstream = {stage.name: stage.folder_name(cfg) for stage in self.after}
        own = {name: getattr(cfg, name) for name in self.reads}
        return stage_key({**own, **extra}, upstream, self.versions)

    def folder_name(self, cfg: Any) -> str:
        return f"{self.name}-{config_hash(self.key(cfg))}"

    def fields(self) -> set[str]:
        """Every config field the key depends on: the stage's own reads and those of the stages it starts from."""
        return set(self.reads).union(*(stage.fields() for stage in self.after))

    def run(
        self, cfg: Any, compute: Callable[[Any, Path], RunResult], *, force: bool = False, **extra: Any
    ) -> tuple[RunResult, Path]:
        """The stage's result and folder through the cache; `compute(sub_config, folder)` runs only when no finished
        result exists. `compute` may not capture `cfg` itself: it reads its fields through the sub-config."""
        if any(value is cfg for value in _captured(compute)):
            raise TypeError(
                f"stage {self.name!r}: its compute function captures the whole config; take the fields it reads "
                "from the sub-config it is given (its first argument)"
            )
        sub, key = self.config(cfg), self.key(cfg, **extra)

        def stamped(folder: Path) -> RunResult:
            result = compute(sub, folder)
            result.config = key  # a result records the key it was cached under
            return result

        return cached(self.name, key, stamped, force=force)


def _by_content(name: str, value: Any) -> Any:
    """A `model` that is a checkpoint path, as the SHA-256 of what it holds: a checkpoint replaced at the same path is
    a new key, the same checkpoint at another path the same key."""
    if name != "model" or not isinstance(value, str) or not ("/" in value or value.endswith(CHECKPOINT_SUFFIXES)):
        return value  # a family name (the rule of `models.check_model`)
    path = Path(value) if Path(value).is_absolute() else root() / value
    return f"sha256:{content_digest(path)}" if path.exists() else value


def _captured(function: Callable) -> list[Any]:
    """The values a function's closure holds (those assigned so far)."""
    values = []
    for cell in function.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # a closure variable not yet assigned
            continue
    return values


_CLASSES: dict[tuple[str, tuple[str, ...]], type] = {}


def _sub_config_class(stage: str, names: tuple[str, ...]) -> type:
    if (stage, names) not in _CLASSES:
        title = "".join(part.title() for part in stage.replace("_", "-").split("-")) + "Config"

        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            raise AttributeError(
                f"stage {stage!r} does not read {name!r}: add it to the stage's reads (and so to its cache key) "
                f"to use it; it reads {', '.join(names)}"
            )

        _CLASSES[stage, names] = dataclasses.make_dataclass(
            title, [(n, Any) for n in names], frozen=True, namespace={"__getattr__": __getattr__}
        )
    return _CLASSES[stage, names]
