"""Running untrusted code completions (HumanEval-style scoring) behind an OS-level boundary.

Every program runs under bubblewrap (`bwrap`, Debian's `bubblewrap`), chosen over nsjail and Landlock + seccomp
because it is packaged in Debian, needs no daemon, no configuration file and no kernel newer than user namespaces,
and isolates by construction rather than by a list of forbidden calls:

* new user, PID, mount, network, IPC, UTS and cgroup namespaces (`--unshare-all`); inside, uid and gid 65534 with no
  capabilities;
* a process limit: RLIMIT_NPROC, and where the scorer runs as root (whom the kernel exempts from RLIMIT_NPROC) a
  pids cgroup of its own, so a fork bomb cannot fill the host's process table;
* a root file system that is an empty tmpfs holding read-only binds of only what the interpreter needs (its prefix
  and the system libraries) and of the program's inputs; a minimal `/dev`; no `/proc`, `/etc`, home folders,
  project or data; a private writable `/tmp`, its working directory;
* no network at all (an empty network namespace: not even loopback is up);
* resource limits set before it starts: CPU time, address space, file size, process count, no core files;
* a wall-clock limit: at the limit, and in every case when it ends, its process group is killed; the namespace's
  init dies with it (`--die-with-parent`) and the kernel then kills every process left in the namespace, daemons
  included;
* stdin empty, stdout discarded, stderr written to a file capped by the file-size limit (the scorer keeps its tail
  only, so a flood cannot grow the scorer's memory).

A pass is reported through a channel the program cannot forge. The scorer hands a fresh random nonce to a small
trusted runner through an inherited pipe; the runner reads it and closes the pipe before any untrusted code runs,
keeps it where Python code cannot reach it (an audit hook, which cannot be removed, refuses frame and garbage-
collector introspection, signal handlers (they receive frames), `ctypes`, tracing, further audit hooks, subprocesses
and sockets; and, since Python can reach the signal module without an audited import, a seccomp filter makes the
kernel refuse to install any signal handler), and writes it to a second inherited pipe
only after `check(candidate)` has returned. Exiting early (`sys.exit`, `os._exit`, `exit()`, atexit or excepthook
tricks), crashing, being killed, or tampering with modules all end without the nonce, so they score as failures.
The candidate's return values must be plain built-in values (exact `int`, `float`, `str`, containers of them, …),
so an object that claims to equal everything fails; the tests run with the built-ins and modules as they were
before the completion ran.

Where bubblewrap is missing, or cannot create namespaces on this machine, scoring refuses to run
(`SandboxUnavailable`, naming what to install); there is no fallback to running code unconfined.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`)"
TAIL_BYTES = 2000
READY = b"R"  # the runner's first word on the result pipe: the sandbox was set up


class SandboxUnavailable(RuntimeError):
    """The isolation tool is missing or cannot isolate here: generated code is never run without it."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32  # on top of the processes its (host) user already runs


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # "passed", "failed" (ended without the harness's pass), "timeout"
    returncode: int | None
    stderr: str


# The trusted runner, started by bwrap as /in/runner.py. It must not rely on anything the untrusted code can
# change: every function it calls after the completion ran is bound to a local name before.
RUNNER = textwrap.dedent(
    """
    import builtins, os, sys
    # what completions commonly import, loaded before the guard (`types` reads a traceback's frame at import)
    import bisect, collections, copy, dataclasses, datetime, decimal, enum, fractions, functools, hashlib, heapq
    import itertools, json, math, operator, random, re, statistics, string, types, typing

    def _main(nonce_fd, result_fd, mode, entry_point, guard):
        read, write, exit_, close = os.read, os.write, os._exit, os.close
        write(result_fd, b"R")  # started: the sandbox was set up
        nonce = read(nonce_fd, 64)
        close(nonce_fd)
        compile_, exec_, callable_, type_, dict_ = compile, exec, callable, type, dict
        sys_, modules_dict = sys, sys.modules
        # a signal handler is called with the interrupted frame, and from any frame f_back leads here: the signal
        # modules leave sys.modules now, and the guard refuses to import them again
        sys.modules.pop("signal", None)
        sys.modules.pop("_signal", None)
        plain, containers = (int, float, complex, str, bytes, bool, type(None)), (list, tuple, set, frozenset)
        pristine = dict_(builtins.__dict__)
        modules = dict_(sys.modules)
        with open("/in/program.py", encoding="utf-8") as f:
            program = compile_(f.read(), "program.py", "exec")
        tests = None
        if mode == "check":
            with open("/in/tests.py", encoding="utf-8") as f:
                tests = compile_(f.read(), "tests.py", "exec")

        def checked(value, depth=0):
            kind = type_(value)
            if depth > 50 or not (kind in plain or kind in containers or kind is dict):
                raise TypeError(f"sandbox: the candidate returned a {kind.__name__}, not a plain built-in value")
            if kind is dict:
                for k, v in value.items():
                    checked(k, depth + 1), checked(v, depth + 1)
            elif kind in containers:
                for v in value:
                    checked(v, depth + 1)
            return value

        if guard == "on":
            _guard(frozenset, ValueError, AttributeError, PermissionError, ImportError)
        try:
            namespace = {"__name__": "__main__", "__builtins__": builtins}
            exec_(program, namespace)
            if mode == "check":
                candidate = namespace.get(entry_point)
                if not callable_(candidate):
                    raise TypeError(f"sandbox: {entry_point!r} is not defined as a function")
                modules_dict.clear()
                modules_dict.update(modules)
                sys_.modules = modules_dict
                # the tests see the program's names (HumanEval's tests call helpers its prompts define), with the
                # built-ins as they were before the completion ran
                harness = dict_(namespace)
                harness.update(__name__="__check__", __builtins__=dict_(pristine))
                exec_(tests, harness)
                harness["check"](lambda *args, **kwargs: checked(candidate(*args, **kwargs)))
        except BaseException as error:  # SystemExit included: only a completed check passes
            try:
                write(2, f"{type_(error).__name__}: {error}\\n".encode("utf-8", "replace"))
            except BaseException:
                pass
            exit_(1)
        write(result_fd, nonce)
        exit_(0)

    def _guard(frozenset, ValueError, AttributeError, PermissionError, ImportError):
        # No frame object may reach the completion: from any frame, f_back leads to the runner's, which holds the
        # nonce. Frames are refused with the exceptions the standard library already expects where it looks for
        # one (collections.namedtuple, typing), so that code keeps working.
        frame_calls = frozenset({"sys._getframe", "sys._current_frames", "sys._current_exceptions"})
        frame_attrs = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
        blocked = frozenset({
            "sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
            "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "ctypes.string_at",
            "ctypes.wstring_at", "socket.__new__", "subprocess.Popen", "os.system", "os.fork", "os.forkpty",
            "os.posix_spawn", "os.exec", "os.spawn", "os.kill", "os.killpg", "pty.spawn", "code.__new__",
            "sys.addaudithook",
        })
        unimportable = frozenset({"signal", "_signal"})

        def hook(event, args):
            if event in frame_calls:
                raise ValueError(f"sandbox: {event} is not allowed")
            if event == "object.__getattr__" and args[1] in frame_attrs:
                raise AttributeError(f"sandbox: reading {args[1]} is not allowed")
            if event in blocked:
                raise PermissionError(f"sandbox: {event} is not allowed")
            if event == "import" and args[0] in unimportable:
                raise ImportError(f"sandbox: importing {args[0]} is not allowed (signal handlers receive frames)")

        sys.addaudithook(hook)

    _main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    """
)


def bubblewrap() -> str:
    """The path of `bwrap`, or SandboxUnavailable saying how to install it."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            f"scoring generated code needs bubblewrap (`bwrap`), which is not on PATH: {INSTALL_HINT}"
        )
    return path


def run_program(source: str, limits: Limits = Limits(), *, python_guard: bool = True) -> Outcome:
    """Run `source` (a complete Python program) in the sandbox; it passes if it runs to its end without raising.

    `python_guard=False` leaves out the audit-hook layer, so tests can show the OS boundary holds on its own."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    return _run({"program.py": source}, "run", "-", limits, python_guard)


def passes(completion: str, tests: str, entry_point: str, limits: Limits = Limits()) -> Outcome:
    """HumanEval's check: the completed function, then its `check(candidate)` tests called on `entry_point`."""
    if not entry_point.isidentifier():
        raise ValueError(f"entry_point {entry_point!r} is not a Python identifier")
    return _run({"program.py": completion, "tests.py": tests}, "check", entry_point, limits, True)


def _run(files: dict[str, str], mode: str, entry_point: str, limits: Limits, guard: bool) -> Outcome:
    bwrap = bubblewrap()
    nonce = secrets.token_hex(16).encode()
    with tempfile.TemporaryDirectory(prefix="edgetune-sandbox-") as inputs, _PidsCgroup(limits.processes) as cgroup:
        for name, text in {**files, "runner.py": RUNNER}.items():
            Path(inputs, name).write_text(text, encoding="utf-8")
        nonce_r, nonce_w = os.pipe()
        result_r, result_w = os.pipe()
        os.write(nonce_w, nonce)
        os.close(nonce_w)
        seccomp = _seccomp_fd()
        argv = [*_bwrap_argv(bwrap, inputs), "--seccomp", str(seccomp), _python(), "-I", "-S", "-B", "/in/runner.py"]
        argv += [str(nonce_r), str(result_w), mode, entry_point, "on" if guard else "off"]
        nproc = limits.processes + _processes_of(os.getuid())
        with tempfile.TemporaryFile() as stderr:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env={},
                    pass_fds=(nonce_r, result_w, seccomp),
                    start_new_session=True,  # its own process group, killed as a whole
                    preexec_fn=lambda: (cgroup.join(), _limit(limits, nproc)),
                )
            finally:
                os.close(nonce_r)
                os.close(result_w)
                os.close(seccomp)
            try:
                proc.wait(timeout=limits.wall_s)
                reason = None
            except subprocess.TimeoutExpired:
                reason = "timeout"
            finally:
                _kill_group(proc)
                report = _read_all(result_r, 256)
            tail = _tail(stderr)
    if not report.startswith(READY) and reason is None:  # the runner never started: bwrap failed to set up
        raise SandboxUnavailable(f"bubblewrap could not set up the sandbox on this machine: {tail.strip()}")
    if reason is None and proc.returncode == 0 and report == READY + nonce:
        return Outcome(True, "passed", 0, tail)
    return Outcome(False, reason or "failed", proc.returncode, tail)


# A seccomp filter (classic BPF, handed to bwrap's --seccomp) that refuses to install signal handlers: a handler is
# called with the interrupted frame, and from any frame f_back leads to the runner's, which holds the nonce. Python
# can reach the signal module without any audited import (importlib internals), so the refusal is the kernel's:
# rt_sigaction with a new action fails with EPERM (reading the current one still works); any other syscall ABI on
# the machine (32-bit, x32) is refused outright.
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 13), "aarch64": (0xC00000B7, 134)}  # audit arch, __NR_rt_sigaction


def _seccomp_filter() -> bytes:
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCH:
        raise SandboxUnavailable(f"the sandbox's seccomp filter knows x86_64 and aarch64, not {machine}")
    arch, rt_sigaction = _SECCOMP_ARCH[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, refuse = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program = [
        (ld, 0, 0, 4),  # 0: seccomp_data.arch
        (jeq, 1, 0, arch),  # 1: this machine's ABI → 3
        (ret, 0, 0, refuse),  # 2: another ABI
        (ld, 0, 0, 0),  # 3: seccomp_data.nr
        (jge, 6, 0, 0x40000000),  # 4: the x32 ABI → 11
        (jeq, 0, 4, rt_sigaction),  # 5: not rt_sigaction → 10
        (ld, 0, 0, 24),  # 6: args[1] (the new action), low half
        (jeq, 0, 3, 0),  # 7: non-NULL → 11
        (ld, 0, 0, 28),  # 8: high half
        (jeq, 0, 1, 0),  # 9: non-NULL → 11
        (ret, 0, 0, allow),  # 10
        (ret, 0, 0, refuse),  # 11
    ]
    return b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in program)


def _seccomp_fd() -> int:
    """A file descriptor holding the filter, read by bwrap (a memfd: nothing on disk)."""
    fd = os.memfd_create("edgetune-sandbox-seccomp")
    os.write(fd, _seccomp_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_argv(bwrap: str, inputs: str) -> list[str]:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534"]
    argv += ["--tmpfs", "/", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp", "--clearenv"]
    argv += ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "PATH", "/usr/bin:/bin"]
    for path in _system_paths():
        argv += ["--ro-bind", path, path] if not os.path.islink(path) else ["--symlink", os.readlink(path), path]
    argv += ["--ro-bind", inputs, "/in", "--remount-ro", "/"]
    return argv


def _system_paths() -> list[str]:
    """What the interpreter needs, read-only: /usr (and the /lib, /bin links of a merged-usr system) and the
    Python installation the scorer itself runs on (outside /usr for pyenv, conda, uv)."""
    paths = [p for p in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin") if os.path.lexists(p)]
    prefix = os.path.realpath(sys.base_prefix)
    if not any(prefix == p or prefix.startswith(p + "/") for p in paths):
        paths.append(prefix)
    return paths


class _PidsCgroup:
    """A pids cgroup (v1 `pids` hierarchy or v2) capping the sandbox's process count, where the scorer may create
    one (as root, whom the kernel exempts from RLIMIT_NPROC); elsewhere RLIMIT_NPROC does the job."""

    ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")

    def __init__(self, limit: int):
        self.limit, self.path = limit, None

    def __enter__(self):
        if os.geteuid() != 0:
            return self
        for root in self.ROOTS:
            path = Path(root, f"edgetune-sandbox-{secrets.token_hex(6)}")
            try:
                path.mkdir()
            except OSError:
                continue
            if (path / "pids.max").exists():
                (path / "pids.max").write_text(f"{self.limit + 2}\n")  # bwrap's own two processes on top
                self.path = path
                break
            path.rmdir()
        return self

    def join(self) -> None:
        """In the child, before exec: move into the cgroup (everything it starts follows)."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def __exit__(self, *exc):
        if self.path is None:
            return
        for _ in range(200):  # the namespace's processes take a moment to be reaped
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def _python() -> str:
    """The base interpreter (a virtual environment's `python` is a link to it; `-I -S` leaves site-packages out)."""
    return os.path.realpath(sys.executable)


def _limit(limits: Limits, nproc: int) -> None:
    """In the child, before exec: the resource limits (inherited by everything it starts)."""
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft == resource.RLIM_INFINITY or soft > nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _processes_of(uid: int) -> int:
    """How many processes `uid` runs now (RLIMIT_NPROC counts them all, the sandbox's own on top)."""
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


def _read_all(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes the program wrote to the result pipe (its writer is closed by now)."""
    data = b""
    try:
        os.set_blocking(fd, False)
        while len(data) < limit:
            chunk = os.read(fd, limit - len(data))
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return data


def _tail(stderr) -> str:
    stderr.seek(0, os.SEEK_END)
    stderr.seek(max(0, stderr.tell() - TAIL_BYTES))
    return stderr.read().decode("utf-8", "replace")
