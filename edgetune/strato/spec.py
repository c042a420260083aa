"""The shared vocabulary of the PEFT section: task examples, the adapted modules of a Llama model, and an
`Allocation` — which (layer, module) pairs get a LoRA adapter and at which rank — that becomes a `peft`
`LoraConfig` with `layers_to_transform`, `rank_pattern` and `exclude_modules`.

Module names follow `transformers`' Llama: `model.layers.{i}.self_attn.{q,k,v,o}_proj` and
`model.layers.{i}.mlp.{gate,up,down}_proj`, as seen from the `LlamaForCausalLM` that `peft` wraps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
MODULES = ATTENTION + MLP
TASKS = ("mmlu", "gsm8k", "humaneval")
METHODS = ("lora", "rslora", "lora_mlp", "adalora", "dora", "strato")


@dataclass(frozen=True)
class Example:
    """One task item.

    `prompt` is what the model is given; `answer` the target completion it is fine-tuned on (teacher forcing);
    `reference` what scoring compares with: an MMLU letter ("A".."D"), a GSM8K number as a string, or HumanEval's
    test code (a `check(candidate)` function) with `entry_point` the function under test.
    """

    prompt: str
    answer: str
    reference: str
    entry_point: str = ""
    subject: str = ""


@dataclass(frozen=True)
class TaskData:
    """A task's three splits. `kind` is how it is scored: "choice" (MMLU), "number" (GSM8K) or "code"
    (HumanEval, pass@1 in the sandbox)."""

    name: str
    kind: str
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]


def module_path(layer: int, module: str) -> str:
    """The module's name inside `LlamaForCausalLM` (what `peft` matches patterns against)."""
    if module not in MODULES:
        raise ValueError(f"module {module!r}; expected one of {MODULES}")
    block = "self_attn" if module in ATTENTION else "mlp"
    return f"model.layers.{layer}.{block}.{module}"


def module_shapes(config) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each adaptable module of a Llama config (a `transformers` LlamaConfig or
    anything with the same attribute names)."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
    return {
        "q_proj": (hidden, q_out),
        "k_proj": (hidden, kv_out),
        "v_proj": (hidden, kv_out),
        "o_proj": (q_out, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


@dataclass(frozen=True)
class Allocation:
    """LoRA ranks per layer and module: `ranks[layer][j]` is the rank of `MODULES[j]` in that layer (0 = none).

    Immutable and hashable, so it can key caches; `key()` is its canonical string.
    """

    ranks: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if not self.ranks:
            raise ValueError("an Allocation needs at least one layer")
        for i, row in enumerate(self.ranks):
            if len(row) != len(MODULES):
                raise ValueError(f"layer {i} has {len(row)} ranks; expected one per module of {MODULES}")
            if any((not isinstance(r, int)) or r < 0 for r in row):
                raise ValueError(f"layer {i} ranks {row} must be non-negative integers")
        if not any(any(row) for row in self.ranks):
            raise ValueError("an Allocation must adapt at least one module (every rank is 0)")

    @classmethod
    def uniform(cls, num_layers: int, rank: int, modules: tuple[str, ...] = MODULES) -> Allocation:
        unknown = set(modules) - set(MODULES)
        if unknown:
            raise ValueError(f"modules {sorted(unknown)} unknown; expected a subset of {MODULES}")
        row = tuple(rank if m in modules else 0 for m in MODULES)
        return cls(tuple(row for _ in range(num_layers)))

    @classmethod
    def from_groups(cls, attention: list[int], mlp: list[int]) -> Allocation:
        """One rank per layer for the attention projections and one for the MLP projections."""
        if len(attention) != len(mlp):
            raise ValueError(f"{len(attention)} attention ranks but {len(mlp)} mlp ranks; give one of each per layer")
        rows = (tuple([int(a)] * len(ATTENTION) + [int(m)] * len(MLP)) for a, m in zip(attention, mlp, strict=True))
        return cls(tuple(rows))

    @property
    def num_layers(self) -> int:
        return len(self.ranks)

    def rank(self, layer: int, module: str) -> int:
        return self.ranks[layer][MODULES.index(module)]

    def adapted(self) -> list[tuple[int, str, int]]:
        """(layer, module, rank) of every adapter."""
        return [(i, m, r) for i, row in enumerate(self.ranks) for m, r in zip(MODULES, row, strict=True) if r > 0]

    @property
    def lowest_layer(self) -> int:
        """The lowest adapted layer: backward stops there, so it sets most of the training FLOPs."""
        return min(i for i, _, _ in self.adapted())

    def key(self) -> str:
        return "|".join(",".join(str(r) for r in row) for row in self.ranks)

    def parameters(self, shapes: dict[str, tuple[int, int]], *, dora: bool = False) -> int:
        """Exact LoRA trainable parameters, Σ r·(d_in + d_out) (+ d_out per adapted module for DoRA's magnitude)."""
        return sum(r * sum(shapes[m]) + (shapes[m][1] if dora else 0) for _, m, r in self.adapted())

    def to_lora_config(
        self,
        *,
        alpha_per_rank: float = 2.0,
        dropout: float = 0.0,
        use_rslora: bool = False,
        use_dora: bool = False,
        task_type: str | None = "CAUSAL_LM",
    ):
        """The `peft.LoraConfig` that builds exactly these adapters.

        `r` is the most common rank and `rank_pattern` names every module whose rank differs (anchored full
        names); `layers_to_transform` lists the adapted layers; `exclude_modules` names the (layer, module) pairs
        of adapted layers that get no adapter. `lora_alpha` = `alpha_per_rank` · rank for every module (an
        `alpha_pattern` beside the rank pattern), so each adapter has the same scaling whatever its rank.
        """
        from peft import LoraConfig

        adapted = self.adapted()
        common = Counter(r for _, _, r in adapted).most_common(1)[0][0]
        layers = sorted({i for i, _, _ in adapted})
        targets = [m for m in MODULES if any(mod == m for _, mod, _ in adapted)]
        excluded = [module_path(i, m) for i in layers for m in targets if self.rank(i, m) == 0]
        pattern = {f"^{module_path(i, m)}": r for i, m, r in adapted if r != common}
        return LoraConfig(
            r=common,
            lora_alpha=alpha_per_rank * common,
            rank_pattern=pattern,
            alpha_pattern={k: alpha_per_rank * r for k, r in pattern.items()},
            target_modules=targets,
            layers_to_transform=layers,
            layers_pattern="layers",
            exclude_modules=excluded or None,
            lora_dropout=dropout,
            use_rslora=use_rslora,
            use_dora=use_dora,
            task_type=task_type,
        )
