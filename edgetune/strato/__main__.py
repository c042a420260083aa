"""python -m edgetune.strato (--config FILE | --profile P [--task T] [--method M]) [--seed N]
    [--override key=value ...] [--dry-run] [--debug] [--fast-dev-run] [--force]

One PEFT run (LoRA, rsLoRA, LoRA on the MLP, AdaLoRA, DoRA or STRATO) from a YAML config with model / peft / task /
training / device sections (examples in edgetune/strato/configs/), or one run of a notebook profile. The result JSON,
the ranks and the TensorBoard logs go to runs/cache/peft-run-<hash>/; a second identical run reuses them (--force
recomputes). --dry-run checks everything a run needs (config, method, checkpoint config, task files, generation
budget) without loading weights or training.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from types import SimpleNamespace

from edgetune.strato.config import METHODS, PROFILES, RunConfig, from_dict, load_config, to_yaml
from edgetune.strato.spec import TASKS


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, RunConfig]:
    p = argparse.ArgumentParser(prog="python -m edgetune.strato", description=__doc__.split("\n\n")[1])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a YAML run config")
    source.add_argument("--profile", choices=sorted(PROFILES), help="one run of a notebook profile instead")
    p.add_argument("--task", choices=TASKS, help="with --profile: the task (default: the profile's first)")
    p.add_argument("--method", choices=METHODS, help="with --profile: the method (default: lora)")
    p.add_argument("--seed", type=int, help="overrides the config's seed")
    p.add_argument(
        "--override",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="dotted keys, e.g. training.lr=1e-3 peft.strato.lam=0.3 task.name=gsm8k",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and validate the config, print it and the adapter size, train nothing",
    )
    p.add_argument("--debug", action="store_true", help="debug logging, autograd anomaly detection")
    p.add_argument("--fast-dev-run", action="store_true", help="2 steps on a few items, end to end")
    p.add_argument("--force", action="store_true", help="recompute even if a finished result exists")
    args = p.parse_args(argv)
    if args.config and (args.task or args.method):
        p.error("--task and --method go with --profile; with --config set task.name= and peft.method= by --override")
    try:
        if args.config:
            config = load_config(args.config, args.override, seed=args.seed)
        else:
            profile = PROFILES[args.profile]
            task, method = args.task or profile.tasks[0], args.method or "lora"
            run = profile.run_config(task, profile.seeds[0] if args.seed is None else args.seed, method)
            config = from_dict(run.to_dict(), args.override)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    return args, config


@functools.lru_cache(maxsize=4)
def _corpus_tokenizer(documents: int):
    """The tokenizer the embedded model's pretraining stage trains on its corpus (the same, without the model)."""
    from edgetune.strato import lm, tasks

    return lm.train_tokenizer(tasks.pretraining_corpus(seed=0, documents=documents))


def dry_run(config: RunConfig) -> dict:
    """What the run would build, checked without loading weights or training: the resolved device, the checkpoint's
    config (or the embedded model's shape), the method's `peft` config (AdaLoRA's and the others' own validation),
    the task's files read in full with their split sizes, and the generation budget the scorer will use."""
    from edgetune.strato import lm, methods
    from edgetune.strato.spec import Allocation
    from edgetune.strato.train import all_items, load_task, method_spec, resolve_device, scored_items

    device = resolve_device(config.device.device_type)
    if config.model.path:
        from transformers import AutoConfig, AutoTokenizer

        lm.check_checkpoint(config.model.path)
        model_config = AutoConfig.from_pretrained(config.model.path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(config.model.path, local_files_only=True)
    else:
        s = lm.LM_FAMILY[config.model.name]
        model_config = SimpleNamespace(
            hidden_size=s.hidden,
            intermediate_size=s.intermediate,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads,
        )
        tokenizer = _corpus_tokenizer(config.model.corpus_documents)
    spec = method_spec(config)
    allocation = Allocation.uniform(model_config.num_hidden_layers, spec.rank) if spec.method == "strato" else None
    methods.peft_config(spec, model_config, total_step=config.training.steps, allocation=allocation)
    if spec.method == "strato":
        trainable = "chosen by the controller (at most the LoRA reference: "
        reference = methods.MethodSpec(method="lora", rank=spec.rank)
        trainable += f"{methods.expected_trainable(reference, model_config)})"
    else:
        trainable = methods.expected_trainable(spec, model_config)
    task = load_task(config)
    budget = config.training.max_new_tokens or lm.generation_budget(all_items(task), tokenizer)
    return {
        "device": str(device),
        "method": spec.method,
        "task": config.task.name,
        "source": config.task.source,
        "items": {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        "scored_on": f"{config.task.score_on} ({len(scored_items(task, config.task.score_on))} items)",
        "max_new_tokens": None if task.kind == "choice" else budget,
        "layers": model_config.num_hidden_layers,
        "trainable_parameters": trainable,
    }


def main(argv: list[str] | None = None) -> int:
    args, config = parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(message)s")
    print(to_yaml(config), end="")
    if args.dry_run:
        print(json.dumps(dry_run(config), indent=2))
        return 0
    import torch

    from edgetune.strato.recipe import run

    with torch.autograd.set_detect_anomaly(args.debug):
        result, folder = run(config, force=args.force, progress=True, fast_dev_run=args.fast_dev_run)
    m = result.metrics
    print(
        f"{config.task.name}/{config.peft.method} seed {config.seed}: test score {m['test_score']:.2f} "
        f"on {m['test_items']} items, "
        f"{m['params_adapter_final']:,} adapter parameters, {result.flops:.3e} training FLOPs, "
        f"train {m['train_s']:.1f} s"
    )
    print(f"result: {folder / 'result.json'}\ntensorboard --logdir {folder / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
