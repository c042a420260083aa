"""python -m edgetune.assemble --phase PT|MT|FT|E2E [--idx i] --out-dir DIR [...]

One process, or many: `accelerate launch -m edgetune.assemble ...` or `torchrun --nproc_per_node N -m
edgetune.assemble ...`. MT modules are independent jobs (one per --idx), runnable in parallel.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from edgetune.assemble.train import DATA, PHASES, REQUEST, AssembleConfig, InputError, RunFolderError, run


def parse(argv: list[str] | None = None) -> tuple[AssembleConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m edgetune.assemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", required=True, choices=PHASES)
    p.add_argument("--out-dir", required=True, help="where checkpoints, model.safetensors and result.json go")
    p.add_argument("--idx", type=int, default=0, help="MT: the stage this job trains")
    p.add_argument("--model", default="edge-small")
    p.add_argument("--depths", type=int, nargs="+", default=[2, 2, 2, 2], help="blocks per stage of the target")
    p.add_argument("--meta", help="MT: the PT run's output dir")
    p.add_argument("--incubation", nargs="+", default=[], help="FT: the MT runs' output dirs, in stage order")
    p.add_argument("--force", action="store_true", help="empty --out-dir first and train again")
    p.add_argument("--data", choices=DATA, default="scenes", help="imagefolder: data/<data-root>/train|val/<class>/")
    p.add_argument("--data-root", default="imagenet", help="under data/ (imagefolder)")
    for name, kind, default in (
        ("num-classes", int, 20),
        ("train-size", int, 8_000),
        ("test-size", int, 1_000),
        ("steps", int, 200),
        ("batch-size", int, 64),
        ("grad-accum", int, 1),
        ("lr", float, 2e-3),
        ("weight-decay", float, 0.05),
        ("warmup-steps", int, 0),
        ("clip-grad", float, None),
        ("seed", int, 0),
        ("checkpoint-every", int, 50),
        ("workers", int, 8),
    ):
        p.add_argument(f"--{name}", type=kind, default=default)
    args = vars(p.parse_args(argv))
    force = args.pop("force")
    args["depths"], args["incubation"] = tuple(args["depths"]), tuple(args["incubation"])
    try:
        return AssembleConfig(**args), force
    except (ValueError, OSError) as e:  # OSError: a --model path that names no checkpoint
        p.error(str(e))


RUN_FILES = {"result.json", "model.safetensors", "checkpoints", REQUEST}  # what a phase writes into its --out-dir


def main(argv: list[str] | None = None) -> int:
    cfg, force = parse(argv)
    out = Path(cfg.out_dir)
    if force:  # every process checks the folder, then one empties it while the others wait
        state = PartialState(cpu=not torch.cuda.is_available())
        state.wait_for_everyone()
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES) if out.exists() else []
        state.wait_for_everyone()
        if foreign:
            print(
                f"python -m edgetune.assemble: error: --force empties only a run's folder; {out} also holds {foreign}",
                file=sys.stderr,
            )
            return 2
        if state.is_main_process and out.exists():
            shutil.rmtree(out)
        state.wait_for_everyone()
    try:
        result = run(cfg)
    except (RunFolderError, InputError, FileNotFoundError) as e:  # another run there, a bad or missing input: exit 2
        print(f"python -m edgetune.assemble: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{result.stage}: accuracy {result.metrics['accuracy']:.4f}, {result.flops:.3e} training FLOPs, "
        f"{result.wall_time_s:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
