"""`edgetune reproduce` and `edgetune claims`: execute the section notebooks with papermill, print the ledger.

    edgetune reproduce [--section S ...] [--profile P] [-p name=value ...] [--force]
    edgetune claims

Parameters are checked against each notebook's `parameters` cell (papermill itself only warns about an unknown
name): an unknown name or a value of the wrong type prints what is accepted and exits 2. Executed notebooks go to
`runs/notebooks/`, a manifest of the run to `runs/manifest.json`; a failing cell is printed with its error and the
executed notebook's path, and the command exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgetune.paths import SECTIONS, root, runs_dir
from edgetune.profiles import PROFILES

NOTEBOOKS = {
    "motivation": "01_motivation.ipynb",
    "customization": "02_customization.ipynb",
    "retraining": "03_retraining.ipynb",
    "assembling": "04_assembling.ipynb",
    "peft": "05_peft_comparison.ipynb",
}
KERNEL = "python3"  # ipykernel's own kernelspec: runs the interpreter of the environment papermill runs in


class UsageError(Exception):
    """Bad command-line input; exit status 2."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "claims":
            return _claims()
        return reproduce(args.section or [], args.profile, args.param, args.force, args.timeout)
    except UsageError as e:
        print(f"edgetune: error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetune", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="execute section notebooks (figures, tables, claims)")
    rep.add_argument("--section", nargs="+", action="extend", choices=SECTIONS, help="sections to run (default: all)")
    rep.add_argument("--profile", choices=PROFILES, default="default", help="parameter profile (default: default)")
    rep.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    rep.add_argument("--force", action="store_true", help="recompute cached stages")
    rep.add_argument("--timeout", type=int, default=None, metavar="SECONDS", help="limit per notebook cell")
    sub.add_parser("claims", help="print the claims ledger")
    return parser


def _claims() -> int:
    from edgetune.claims import format_ledger

    print(format_ledger())
    return 0


# ------------------------------------------------------------------------------------------ parameters
def parse_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"-p expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def convert(name: str, raw: str, type_name: str) -> Any:
    """Convert `raw` to the type the parameters cell declares (`int`, `float | None`, ...), or raise UsageError."""
    optional = type_name.startswith("Optional[")
    inner = type_name[len("Optional[") : -1] if optional else type_name
    allowed = [t.strip() for t in inner.split("|")] + (["None"] if optional else [])
    for kind in allowed:
        value = _try(kind, raw)
        if value is not _NO:
            return value
    if not set(allowed) & {"int", "float", "bool", "str", "None"}:  # undeclared type: take it as written
        return raw
    raise UsageError(f"parameter {name!r} expects {type_name}, got {raw!r}")


_NO = object()


def _try(kind: str, raw: str) -> Any:
    if kind == "None":
        return None if raw == "None" else _NO
    if kind == "bool":
        return {"True": True, "true": True, "False": False, "false": False}.get(raw, _NO)
    if kind == "str":
        return raw
    for cast in {"int": (int,), "float": (int, float)}.get(kind, ()):
        try:
            return cast(raw)
        except ValueError:
            continue
    return _NO


def resolve_parameters(notebook: Path, profile: str, assignments: list[str], force: bool) -> dict[str, Any]:
    """The parameters to inject into `notebook`, validated against its parameters cell."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    params: dict[str, Any] = {"profile": profile, "force": force}
    for text in assignments:
        name, raw = parse_assignment(text)
        if name not in declared:
            raise UsageError(f"{notebook.name} has no parameter {name!r}; it accepts:\n{_describe(declared)}")
        params[name] = convert(name, raw, declared[name]["inferred_type_name"])
    missing = [k for k in ("profile", "force") if k not in declared]
    if missing:
        raise UsageError(f"{notebook.name}'s parameters cell lacks {missing}; every section notebook must declare them")
    return params


def _describe(declared: dict[str, dict]) -> str:
    lines = [
        f"  {p['name']}: {p['inferred_type_name']} = {p['default']}  {p['help']}".rstrip() for p in declared.values()
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ execution
def reproduce(sections: list[str], profile: str, assignments: list[str], force: bool, timeout: int | None) -> int:
    from tqdm import tqdm

    chosen = list(dict.fromkeys(sections)) or [s for s in SECTIONS if (root() / "notebooks" / NOTEBOOKS[s]).exists()]
    for s in SECTIONS:
        if not sections and s not in chosen:
            print(f"edgetune: note: skipping {s}: notebooks/{NOTEBOOKS[s]} does not exist yet", file=sys.stderr)
    plans = []
    for section in chosen:
        notebook = root() / "notebooks" / NOTEBOOKS[section]
        if not notebook.exists():
            raise UsageError(f"section {section!r} has no notebook yet (expected {notebook})")
        plans.append((section, notebook, resolve_parameters(notebook, profile, assignments, force)))
    status = 0
    for section, notebook, params in tqdm(plans, desc="sections", unit="section", position=0):
        ok = _execute(section, notebook, params, timeout)
        if not ok:
            status = 1
            break
    from edgetune.claims import format_ledger

    print("\nClaims ledger (figures/claims.md):\n" + format_ledger())
    return status


def _execute(section: str, notebook: Path, params: dict[str, Any], timeout: int | None) -> bool:
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    output = runs_dir() / "notebooks" / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    start, error = time.perf_counter(), None
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            kernel_name=KERNEL,
            language="python",
            cwd=str(notebook.parent),
            progress_bar={"position": 1, "leave": False, "desc": section},
            execution_timeout=timeout,
            request_save_on_cell_execute=True,
        )
    except pm.PapermillExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
        print(
            f"\nedgetune: {section} failed in cell In [{e.exec_count}]:\n{'-' * 60}\n{e.source}\n{'-' * 60}\n"
            f"{error}\nexecuted notebook: {output}",
            file=sys.stderr,
        )
    except (CellTimeoutError, DeadKernelError) as e:
        error = f"{type(e).__name__}: {e}"
        print(f"\nedgetune: {section} stopped: {error}\nexecuted notebook: {output}", file=sys.stderr)
    _update_manifest(section, notebook, output, params, time.perf_counter() - start, error)
    return error is None


def _update_manifest(section, notebook, output, params, duration, error) -> None:
    from edgetune.profiles import budget_s, pick_device
    from edgetune.runs import describe_device, package_versions, write_json

    path = runs_dir() / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {"sections": {}}
    manifest.update(git_commit=_git_commit(), versions=package_versions(), device=describe_device(pick_device()))
    budget = budget_s(section, params["profile"])
    manifest["sections"][section] = {
        "budget_s": budget,
        "within_budget": None if budget is None else duration <= budget,
        "notebook": _display(notebook),
        "executed_notebook": _display(output),
        "parameters": params,
        "duration_s": round(duration, 2),
        "status": "failed" if error else "ok",
        "error": error,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(path, manifest)


def _display(path: Path) -> str:
    """A path relative to the project root where it lies inside it (runs/ may be redirected elsewhere)."""
    try:
        return str(path.relative_to(root()))
    except ValueError:
        return str(path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root(), capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root(), capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
