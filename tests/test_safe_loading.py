"""No data file can run code: every deserializer call in the package is one that cannot execute what it reads
(checked statically over the package's source, so a new call site is caught when it is written)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgetune

PACKAGE = Path(edgetune.__file__).parent


def _calls():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path.relative_to(PACKAGE.parent).as_posix(), node


def _name(func: ast.expr) -> str:
    """The dotted name a call is made through (`torch.load`, `eval`); "" for a method of a computed value."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return ""
    parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_deserializer_that_can_run_code():
    unsafe = []
    for where, call in _calls():
        name = _name(call.func)
        line = f"{where}:{call.lineno} {name}"
        if name == "torch.load" and _keyword(call, "weights_only") is not True:
            unsafe.append(line + " without weights_only=True")
        elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            unsafe.append(line + " (use yaml.safe_load)")
        elif name in ("pickle.load", "pickle.loads", "pd.read_pickle", "pandas.read_pickle", "joblib.load"):
            unsafe.append(line + " (a plain unpickler runs code; use the restricted one in data.readers)")
        elif name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is True:
            unsafe.append(line + " with allow_pickle=True")
        elif name in ("eval", "exec", "marshal.loads"):
            unsafe.append(line)
    if unsafe:
        raise AssertionError("\n".join(unsafe))


def test_the_check_sees_the_calls_it_forbids(tmp_path, monkeypatch):
    """The scan is not blind: a module with each forbidden call is reported once per call."""
    bad = tmp_path / "edgetune" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "import pickle, torch, yaml, numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nyaml.load('x')\npickle.loads(b'')\n"
        "np.load('x', allow_pickle=True)\neval('1')\ntorch.load('x', weights_only=True)\nyaml.safe_load('x')\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", bad.parent)
    import pytest

    with pytest.raises(AssertionError) as err:
        test_no_deserializer_that_can_run_code()
    assert str(err.value).count("edgetune/bad.py:") == 6
