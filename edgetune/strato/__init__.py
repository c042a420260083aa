"""PEFT comparison: STRATO-PEFT against LoRA, rsLoRA, LoRA on the MLP, AdaLoRA and DoRA (all through `peft`).

`spec` (task examples, the Allocation → LoraConfig mapping), `tasks` (embedded tasks and the real-file readers),
`sandbox` (HumanEval-style scoring), `lm` (the small Llama, its tokenizer and cached pretraining, scoring),
`methods` (the baselines), `cost` (parameters, FLOPs, memory), `resize` (the rank schedule), `controller` (PPO +
Go-Explore archive), `search` and `train` (one run; `python -m edgetune.strato`), `core`/`plots`/`ledger` (notebook 05).
"""

from edgetune.strato.config import PARAMETERS, PROFILES, PeftComparisonConfig, RunConfig, config, load_config
from edgetune.strato.spec import MODULES, TASKS, Allocation, Example, TaskData

__all__ = [
    "MODULES",
    "PARAMETERS",
    "PROFILES",
    "TASKS",
    "Allocation",
    "Example",
    "PeftComparisonConfig",
    "RunConfig",
    "TaskData",
    "config",
    "load_config",
]
