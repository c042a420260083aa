import socket

import pytest

from edgetune.strato.sandbox import Limits, passes, run_program

TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
FAST = Limits(wall_s=5.0, cpu_s=5)


def test_a_correct_completion_passes_and_a_wrong_one_fails():
    assert passes("def add(a, b):\n    return a + b\n", TESTS, "add", FAST).passed
    wrong = passes("def add(a, b):\n    return a - b\n", TESTS, "add", FAST)
    assert not wrong.passed and wrong.reason == "failed" and "AssertionError" in wrong.stderr


def test_an_endless_loop_is_killed_at_the_time_limit():
    out = run_program("while True:\n    pass\n", Limits(wall_s=1.5, cpu_s=5))
    assert not out.passed and out.reason == "timeout"


def test_a_write_outside_the_working_directory_is_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    out = run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert not out.passed and "outside the working directory" in out.stderr and not target.exists()
    low_level = run_program(f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)\n", FAST)
    assert not low_level.passed and "outside the working directory" in low_level.stderr and not target.exists()
    inside = run_program("open('scratch.txt', 'w').write('x')\nassert open('scratch.txt').read() == 'x'\n", FAST)
    assert inside.passed  # its own temporary directory is writable


def test_opening_a_socket_is_refused():
    with socket.socket() as server:  # a listener on the host the program could otherwise reach
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        out = run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n", FAST)
        server.settimeout(0.2)
        with pytest.raises(OSError):
            server.accept()  # nothing connected
    assert not out.passed and "not allowed" in out.stderr


def test_spawning_many_processes_is_contained():
    bomb = "import os\nwhile True:\n    os.fork()\n"
    out = run_program(bomb, FAST)
    assert not out.passed and "os.fork is not allowed" in out.stderr
    spawn = "import subprocess\nfor _ in range(100):\n    subprocess.Popen(['sleep', '30'])\n"
    out = run_program(spawn, FAST)
    assert not out.passed and "subprocess.Popen is not allowed" in out.stderr


def test_memory_is_limited():
    out = run_program("x = bytearray(3 * 1024 ** 3)\n", Limits(wall_s=5.0, memory_mb=512))
    assert not out.passed and "MemoryError" in out.stderr


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="entry_point 'not valid'"):
        passes("", TESTS, "not valid")
    with pytest.raises(TypeError, match="source must be a str"):
        run_program(b"print(1)")
