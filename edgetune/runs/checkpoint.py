"""Weights as safetensors, and resumable training checkpoints.

A training checkpoint is a folder `ckpt-<step>/` holding `model.safetensors` (the weights) and `state.pt`
(optimizer state, the data generator's and torch's RNG states, the step and the metric history), and
`checksums.json` (their SHA-256). It is built in a temp folder and renamed into place, so a crash mid-save leaves the
previous checkpoint intact; on restore a checkpoint whose files do not match their checksums is skipped, with a
notice, for the one before it (or a fresh start).
"""

from __future__ import annotations

import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from edgetune.runs.cache import checkpoint_problem, write_checksums
from edgetune.runs.io import atomic_write


def _load(checkpoint: Path, model, optimizer, generator) -> tuple[int, list[dict[str, float]]]:
    load_weights(model, checkpoint / "model.safetensors")
    state: dict[str, Any] = torch.load(checkpoint / "state.pt", weights_only=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if generator is not None:
        generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["history"])


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a module's state dict as safetensors, atomically (tensors made contiguous, shared storage split)."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}; expected a .safetensors file written by save_weights")
    model.load_state_dict(load_file(str(path), device=str(next(model.parameters()).device)), strict=strict)
    return model


class Checkpointer:
    """Saves a training loop's state every `every` steps into `directory`, keeping the newest `keep`.

    Usage, inside a visible training loop::

        ckpt = Checkpointer(folder / "checkpoints", every=50)
        start, history = ckpt.restore(model, optimizer, generator)
        for step in range(start, steps):
            ...
            ckpt.maybe_save(step + 1, model, optimizer, generator, history)
    """

    def __init__(self, directory: str | Path, every: int, keep: int = 2):
        if every < 1 or keep < 1:
            raise ValueError(f"Checkpointer needs every >= 1 and keep >= 1, got every={every}, keep={keep}")
        self.directory, self.every, self.keep = Path(directory), every, keep

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        done = [p for p in self.directory.glob("ckpt-*") if (p / "state.pt").is_file()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def restore(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None
    ) -> tuple[int, list[dict[str, float]]]:
        """Load the newest checkpoint into the given objects; returns (step to start from, metric history)."""
        for checkpoint in reversed(self.checkpoints()):  # newest first; a damaged one falls back to the one before
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                try:
                    return _load(checkpoint, model, optimizer, generator)
                except torch.OutOfMemoryError:
                    raise  # the machine's trouble, not the checkpoint's
                except (RuntimeError, ValueError, KeyError, OSError, pickle.UnpicklingError, SafetensorError) as err:
                    problem = f"unreadable ({type(err).__name__}: {str(err)[:120]})"
            else:
                shutil.rmtree(checkpoint, ignore_errors=True)  # proven altered: never a candidate again
            print(f"edgetune: checkpoint {checkpoint}: {problem}; skipping it", file=sys.stderr)
        return 0, []

    def maybe_save(self, step: int, model, optimizer, generator, history, final: bool = False) -> Path | None:
        """Save at every `every`-th step (and when `final`); returns the checkpoint folder if one was written."""
        if step % self.every and not final:
            return None
        return self.save(step, model, optimizer, generator, history)

    def save(self, step: int, model, optimizer, generator, history) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"ckpt-{step:08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.directory, prefix=".tmp-ckpt-"))
        try:
            save_weights(model, tmp / "model.safetensors")
            state = {
                "step": step,
                "optimizer": optimizer.state_dict() if optimizer is not None else {},
                "generator": generator.get_state() if generator is not None else torch.ByteTensor(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
            }
            torch.save(state, tmp / "state.pt")
            write_checksums(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target
