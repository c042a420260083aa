"""Running untrusted code completions (HumanEval-style scoring) so that a hostile one cannot hurt the host.

Each program runs in its own process, in a fresh temporary working directory that is deleted afterwards, with:

* a wall-clock time limit (the whole process group is killed when it passes) and a CPU-time limit;
* an address-space limit (memory), a file-size limit, and a process-count limit;
* no network: a new (unprivileged) network namespace where the kernel allows it, and in every case a Python audit
  hook — installed before the program runs and impossible to remove — that refuses sockets, subprocesses, forks,
  `ctypes` and writes outside the working directory;
* an isolated interpreter (`-I`: no user site, no PYTHON* variables, no cwd on sys.path) and an empty environment.

A program passes only if it exits with status 0 within its limits. This is defence in depth for benchmark scoring,
not a security boundary for adversarial code on a shared host.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

# Installed in the child before the untrusted code: refuse what a test program never needs.
PRELUDE = textwrap.dedent(
    """
    import os as _os, sys as _sys
    _root = _os.path.realpath(_os.getcwd())
    _blocked = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen",
                "os.system", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.kill",
                "os.killpg", "ctypes.dlopen", "ctypes.cdata", "sys.addaudithook", "shutil.rmtree", "os.remove",
                "os.rename", "os.rmdir", "os.chmod"}

    def _inside(path):
        try:
            full = _os.path.realpath(_os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return full == _root or full.startswith(_root + _os.sep)

    def _guard(event, args):
        if event in _blocked and not (event in ("os.remove", "os.rename", "os.rmdir", "os.chmod",
                                                 "shutil.rmtree") and _inside(args[0])):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and not isinstance(args[0], int) and _writes(args[1], args[2]) and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} outside the working directory")

    def _writes(mode, flags):  # builtins.open passes a mode, os.open only flags
        bits = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC
        return (mode is not None and any(c in str(mode) for c in "wax+")) or bool((flags or 0) & bits)

    _sys.addaudithook(_guard)
    del _guard
    """
)


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32  # RLIMIT_NPROC counts the user's processes, so this is a ceiling above the current count


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # "passed", "failed", "timeout", "error"
    returncode: int | None
    stderr: str


def run_program(source: str, limits: Limits = Limits()) -> Outcome:
    """Run `source` (a complete Python program, e.g. a completion followed by its tests) in the sandbox."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    with tempfile.TemporaryDirectory(prefix="edgetune-sandbox-") as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(PRELUDE + "\n" + source)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", path],
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: killed as a whole
            preexec_fn=lambda: _confine(limits),
        )
        try:
            _, err = proc.communicate(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome(False, "timeout", None, "")
        finally:
            _kill_group(proc)  # anything it left behind in its group
    stderr = err.decode("utf-8", "replace")[-2000:]
    if proc.returncode == 0:
        return Outcome(True, "passed", 0, stderr)
    return Outcome(False, "failed" if proc.returncode > 0 else "error", proc.returncode, stderr)


def _confine(limits: Limits) -> None:
    """In the child, before exec: a private network namespace if allowed, then the resource limits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)  # best effort: fails quietly where user namespaces are disabled
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    cap = limits.processes + _user_processes()
    if nproc == resource.RLIM_INFINITY or nproc > cap:
        resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))


def _user_processes() -> int:
    uid = os.getuid()
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                count += os.stat(f"/proc/{pid}").st_uid == uid
            except OSError:
                continue
    return count


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def passes(completion: str, tests: str, entry_point: str, limits: Limits = Limits()) -> Outcome:
    """HumanEval's check: the completed function, then its `check(candidate)` tests called on `entry_point`."""
    if not entry_point.isidentifier():
        raise ValueError(f"entry_point {entry_point!r} is not a Python identifier")
    return run_program(f"{completion}\n\n{tests}\n\ncheck({entry_point})\n", limits)
