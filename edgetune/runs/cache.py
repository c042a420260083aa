"""The artifact cache every expensive stage goes through.

A stage's key is its name plus a hash of its resolved config. Its folder `runs/cache/<stage>-<hash>/` holds the
stage's artifacts (safetensors weights, resumable checkpoints) and, once finished, `result.json`. `result.json`
is written last and atomically, so its presence means "done": a second call returns it without recomputing,
`force=True` recomputes, and an interrupted stage finds its checkpoints in the same folder and resumes.

`result.json` records the SHA-256 of every other file in the folder. A reuse checks them: an entry whose
`result.json` cannot be read, or one of whose files is missing, truncated or altered, is recomputed, with a
one-line notice naming the file (never a deserializer's traceback, never a silently different result).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgetune.paths import runs_dir
from edgetune.runs.io import write_json
from edgetune.runs.schema import RunResult

RESULT = "result.json"


def config_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config: dataclasses are expanded, dicts copied."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"a stage config must be a dataclass or a dict, got {type(config).__name__}")


def config_hash(config: Any) -> str:
    """A short, stable hash of a resolved config (canonical JSON: sorted keys, tuples as lists)."""
    canonical = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_DIGESTS: dict[tuple, str] = {}
MEMO_BYTES = 64 * 2**20


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (their relative paths and contents, in sorted order): what a
    cache key holds for a checkpoint or a data file, so a file replaced at the same path is a new key and the same
    bytes at another path are the same key. Files of at least `MEMO_BYTES` are memoized per process by path, size,
    inode and modification time, so a 13 GB checkpoint is read once per process; smaller ones are always read (a
    file rewritten within the clock tick of file times could keep all four)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file())
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(path).as_posix()}\0{content_digest(f)}\n".encode())
        return h.hexdigest()
    stat = path.stat()  # FileNotFoundError names the path
    memo = (str(path.resolve()), stat.st_size, stat.st_ino, stat.st_mtime_ns)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if stat.st_size >= MEMO_BYTES:
        _DIGESTS[memo] = digest
    return digest


def stage_dir(stage: str, config: Any, cache_dir: Path | None = None) -> Path:
    if not stage or "/" in stage or stage.startswith("."):
        raise ValueError(f"stage name {stage!r} must be a non-empty name without '/' or a leading '.'")
    return (cache_dir or runs_dir() / "cache") / f"{stage}-{config_hash(config)}"


def cached(
    stage: str,
    config: Any,
    compute: Callable[[Path], RunResult],
    *,
    force: bool = False,
    cache_dir: Path | None = None,
) -> tuple[RunResult, Path]:
    """Return the stage's result and folder, running `compute(folder)` only when no finished result exists.

    `compute` writes its artifacts into `folder` (weights through `save_weights`, checkpoints through
    `Checkpointer`) and returns the RunResult; the cache stamps it with the key and writes `result.json`.
    With `force=True` the folder is emptied first, so nothing stale (checkpoints included) is reused.
    """
    folder = stage_dir(stage, config, cache_dir)
    result_path = folder / RESULT
    if force and folder.exists():
        shutil.rmtree(folder)
    if result_path.exists():
        reused = _verified(folder)
        if reused is not None:
            return reused, folder
    folder.mkdir(parents=True, exist_ok=True)
    with _measured(stage, config):
        result = compute(folder)
    result.key = folder.name
    result.checksums = checksums(folder)
    write_json(result_path, result.to_dict())
    return result, folder


STAGE_LOG = "EDGETUNE_STAGE_LOG"  # a JSON-lines file: one record per stage computed (`edgetune rehearse` reads it)
_OPEN: list[float] = []  # the stages being measured, innermost last
_PEAKS: list[int] = []  # their GPU peaks before a nested stage reset the counter


@contextlib.contextmanager
def _measured(stage: str, config: Any):
    """With EDGETUNE_STAGE_LOG set, append the stage's wall time, key and peak GPU and host memory to that file."""
    log = os.environ.get(STAGE_LOG)
    if not log:
        yield
        return
    import resource

    import torch

    gpu = torch.cuda.is_available()
    if gpu:
        if _PEAKS:  # the enclosing stage's peak so far, which the reset below would lose
            _PEAKS[-1] = max(_PEAKS[-1], torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()
    _PEAKS.append(0)
    start = time.perf_counter()
    _OPEN.append(0.0)  # the time of the stages computed inside this one (a PEFT run's controller search)
    try:
        yield
    finally:
        nested, before = _OPEN.pop(), _PEAKS.pop()
    seconds = time.perf_counter() - start
    if _OPEN:
        _OPEN[-1] += seconds
    record = {
        "stage": stage,
        "seconds": seconds - nested,  # its own time: what nested stages took is in their own records
        "peak_gpu_gib": max(before, torch.cuda.max_memory_allocated()) / 2**30 if gpu else 0.0,
        "peak_host_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / (2**30 if sys.platform == "darwin" else 2**20),
        "key": config_dict(config),
    }
    with open(log, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def checksums(folder: Path, exclude: tuple[str, ...] = (RESULT,)) -> dict[str, str]:
    """SHA-256 of every file under `folder` but those named in `exclude`, by path relative to it."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.relative_to(folder).as_posix() not in exclude)
    return {f.relative_to(folder).as_posix(): content_digest(f) for f in files}


def checksum_problem(folder: Path, expected: dict[str, str]) -> str | None:
    """The first file of `expected` (relative path → SHA-256) that is missing or altered under `folder`, or None."""
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if content_digest(path) != digest:
            return f"{name} does not match its checksum (truncated or altered)"
    return None


CHECKSUMS = "checksums.json"  # a training checkpoint's own record, written before the file that marks it complete


def write_checksums(folder: Path) -> None:
    write_json(folder / CHECKSUMS, checksums(folder, exclude=(CHECKSUMS,)))


def checkpoint_problem(folder: Path) -> str | None:
    """Why a training checkpoint cannot be trusted, or None. One without `checksums.json` (written by a version
    before checkpoints carried checksums, or cut short) cannot be verified and is not trusted."""
    if not (folder / CHECKSUMS).exists():
        return f"{CHECKSUMS} is missing (cannot be verified)"
    try:
        expected = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, ValueError) as err:
        return f"{CHECKSUMS} unreadable ({type(err).__name__})"
    return checksum_problem(folder, expected)


def _verified(folder: Path) -> RunResult | None:
    """The finished result in `folder` if it and every file it lists are intact; else None, after a notice and
    emptying the folder (a partial or altered entry is never resumed from)."""
    try:
        stored = json.loads((folder / RESULT).read_text(encoding="utf-8"))
        result = RunResult.from_dict(stored)
        problem = (
            checksum_problem(folder, result.checksums)
            if "checksums" in stored
            else f"{RESULT} carries no checksums (written by an earlier version; it cannot be verified)"
        )
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        result, problem = None, f"{RESULT} unreadable ({type(err).__name__}: {str(err)[:120]})"
    if problem is None:
        return result
    print(f"edgetune: cache entry {folder}: {problem}; recomputing it", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)  # another process may be emptying the same entry
    return None
