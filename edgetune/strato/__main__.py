"""python -m edgetune.strato --config FILE [--seed N] [--override key=value ...] [--dry-run] [--debug] [--fast-dev-run]

One PEFT run (LoRA, rsLoRA, LoRA on the MLP, AdaLoRA, DoRA or STRATO) from a YAML config with model / peft / task /
training / device sections (examples in edgetune/strato/configs/). The result JSON, the ranks and the TensorBoard
logs go to runs/cache/peft-run-<hash>/; a second identical run reuses them (--force recomputes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from types import SimpleNamespace

from edgetune.strato.config import RunConfig, load_config, to_yaml


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, RunConfig]:
    p = argparse.ArgumentParser(prog="python -m edgetune.strato", description=__doc__.split("\n\n")[1])
    p.add_argument("--config", required=True, help="a YAML run config")
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
    try:
        config = load_config(args.config, args.override, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    return args, config


def dry_run(config: RunConfig) -> dict:
    """What the run would build: the resolved device, the model's module shapes and the adapter's exact size."""
    from edgetune.strato import lm, methods
    from edgetune.strato.train import method_spec, resolve_device

    device = resolve_device(config.device.device_type)
    if config.model.path:
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(config.model.path, local_files_only=True)
    else:
        s = lm.LM_FAMILY[config.model.name]
        model_config = SimpleNamespace(
            hidden_size=s.hidden,
            intermediate_size=s.intermediate,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads,
        )
    spec = method_spec(config)
    if spec.method == "strato":
        trainable = "chosen by the controller (at most the LoRA reference: "
        reference = methods.MethodSpec(method="lora", rank=spec.rank)
        trainable += f"{methods.expected_trainable(reference, model_config)})"
    else:
        trainable = methods.expected_trainable(spec, model_config)
    return {
        "device": str(device),
        "method": spec.method,
        "task": config.task.name,
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

    from edgetune.strato.train import run

    with torch.autograd.set_detect_anomaly(args.debug):
        result, folder = run(config, force=args.force, progress=True, fast_dev_run=args.fast_dev_run)
    m = result.metrics
    print(
        f"{config.task.name}/{config.peft.method} seed {config.seed}: test score {m['test_score']:.2f}, "
        f"{m['params_adapter_final']:,} adapter parameters, {result.flops:.3e} training FLOPs, "
        f"train {m['train_s']:.1f} s"
    )
    print(f"result: {folder / 'result.json'}\ntensorboard --logdir {folder / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
