"""`edgetune`: reproduce the sections (papermill), read the claims ledger, compare two reproductions.

    edgetune reproduce [--section S ...] [--profile P] [-p name=value ...] [--force] [--timeout SECONDS]
    edgetune claims [--profile P] [--section S ...] [--verdict holds|refuted|inconclusive] [--full]
    edgetune compare [RUN_A RUN_B]
    edgetune kernel
    edgetune --version

`-p NAME=VALUE` sets any field of a section's config (each section's notebook receives them as `overrides`); names,
types and the resulting config are checked before anything runs: an unknown name, a value of the wrong type or an
invalid config prints what is accepted and exits 2. So does a checkpoint or dataset the config points at that is
missing or damaged (`edgetune.inputs`, opened before any kernel starts). While a section runs, its progress bars
stream to the terminal. Executed notebooks go to `runs/notebooks/<profile>/`, one manifest per reproduction to
`runs/reproductions/<id>.json`, and the report to `figures/<profile>/REPORT.md`; a failing cell is printed with its
error and the executed notebook's path, and the command exits 1.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgetune.kernel import KERNEL, ensure_kernel
from edgetune.paths import SECTIONS, figures_dir, root, runs_dir
from edgetune.profiles import PROFILES
from edgetune.sections import SECTIONS_TABLE

NOTEBOOKS = {s.name: s.notebook for s in SECTIONS_TABLE}


class UsageError(Exception):
    """Bad command-line input; exit status 2."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "claims":
            if args.readme and not args.headline:
                raise UsageError("--readme rewrites README.md's headline table: use it with --headline")
            if args.headline:
                return _headline(args.readme)
            return _claims(args.profile, args.section or [], args.verdict, args.full)
        if args.command == "compare":
            from edgetune.report import compare

            a, b = _pick_runs(args.runs)
            try:
                print(compare(a, b))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UsageError(
                    f"cannot compare {a} and {b}: not reproduction manifests ({type(e).__name__}: {e})"
                ) from e
            return 0
        if args.command == "rehearse":
            from edgetune.rehearse import main as rehearse

            try:
                return rehearse(args.section or [], args.steps, args.scale, args.out, reproduce)
            except ValueError as e:
                raise UsageError(str(e)) from e
        if args.command == "kernel":
            print(f"registered Jupyter kernel {KERNEL!r} → {ensure_kernel(quiet=True)}")
            return 0
        return reproduce(args.section or [], args.profile, args.param, args.force, args.timeout, argv)
    except UsageError as e:
        print(f"edgetune: error: {e}", file=sys.stderr)
        return 2


def _label(text: str) -> str:
    from edgetune.profiles import check_label

    try:
        return check_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    from edgetune import __version__

    parser = argparse.ArgumentParser(prog="edgetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"edgetune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="execute section notebooks (figures, tables, claims, report)")
    rep.add_argument("--section", nargs="+", action="extend", choices=SECTIONS, help="sections to run (default: all)")
    rep.add_argument("--profile", choices=PROFILES, default="default", help="parameter profile (default: default)")
    rep.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter (lists: [1,2])"
    )
    rep.add_argument("--force", action="store_true", help="recompute cached stages")
    rep.add_argument("--timeout", type=int, default=None, metavar="SECONDS", help="limit per notebook cell")
    claims = sub.add_parser("claims", help="print the claims ledger of a profile")
    claims.add_argument(
        "--profile", type=_label, default="default", help="whose ledger: a profile or a run label <profile>+<hash>"
    )
    claims.add_argument("--section", nargs="+", action="extend", choices=SECTIONS, help="only these sections")
    claims.add_argument("--verdict", choices=("holds", "refuted", "inconclusive"), help="only claims with this verdict")
    claims.add_argument("--full", action="store_true", help="do not shorten long cells")
    claims.add_argument(
        "--headline",
        action="store_true",
        help="every claim at the default and gpu profiles side by side, with intervals",
    )
    claims.add_argument("--readme", action="store_true", help="with --headline: rewrite README.md's headline table")
    cmp = sub.add_parser("compare", help="what changed between two reproductions (default: the last two)")
    cmp.add_argument(
        "runs", nargs="*", metavar="RUN", help="reproduction ids or manifest paths (see runs/reproductions)"
    )
    reh = sub.add_parser(
        "rehearse",
        help="run the paper profile with every stage cut to a few steps; measure it and project the full cost",
    )
    reh.add_argument("--section", nargs="+", action="extend", choices=SECTIONS, help="sections (default: all)")
    reh.add_argument("--steps", type=int, default=2, help="steps per stage (default: 2)")
    reh.add_argument(
        "--scale", choices=("tiny", "true"), default="tiny", help="tiny: small shapes, for a CPU; true: paper shapes"
    )
    reh.add_argument("--out", default=None, help="folder for the reports (default: runs/rehearsals/)")
    sub.add_parser("kernel", help=f"register this environment's Python as the Jupyter kernel {KERNEL!r}")
    return parser


def _claims(profile: str, sections: list[str], verdict: str | None, full: bool) -> int:
    from edgetune.claims import format_ledger, load_ledger, verdicts

    ledger = load_ledger(profile)
    if sections:
        ledger = ledger[ledger.section.isin(sections)]
    if verdict:
        ledger = ledger[verdicts(ledger).holds == verdict]
    if ledger.empty:
        where = display_path(figures_dir(profile) / "claims.csv")
        print(f"No claims match in {where} (run `edgetune reproduce --profile {profile}` to fill it).")
        return 0
    print(format_ledger(ledger, width=None if full else 60))
    return 0


def _headline(readme: bool) -> int:
    from edgetune.report import headline, write_headline

    if readme:
        changed = write_headline(root() / "README.md")
        print(f"README.md headline table {'updated' if changed else 'already up to date'}")
        return 0
    print(headline())
    return 0


# ------------------------------------------------------------------------------------------ parameters
def parse_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"-p expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def convert(name: str, raw: str, type_name: str) -> Any:
    """Convert `raw` to the type the parameters cell declares (`int`, `float | None`, `Optional[list]`, ...), or
    raise UsageError."""
    optional = type_name.startswith("Optional[")
    inner = type_name[len("Optional[") : -1] if optional else type_name
    allowed = (["None"] if optional else []) + _split_union(inner)
    allowed = sorted(allowed, key=lambda kind: kind != "None")  # `None` means None, never the string "None"
    for kind in allowed:
        value = _try(kind, raw)
        if value is not _NO:
            return value
    if not {_base(k) for k in allowed} & {"int", "float", "bool", "str", "None", "list", "tuple"}:
        return raw  # undeclared type: take it as written
    raise UsageError(f"parameter {name!r} expects {type_name}, got {raw!r}")


_NO = object()


def _split_union(text: str) -> list[str]:
    """`list[int] | None` → ['list[int]', 'None'] (a `|` inside brackets does not split)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


def _base(kind: str) -> str:
    return kind.split("[", 1)[0].strip().lower()


def _try(kind: str, raw: str) -> Any:
    base = _base(kind)
    if base == "none":
        return None if raw == "None" else _NO
    if base == "bool":
        return {"True": True, "true": True, "False": False, "false": False}.get(raw, _NO)
    if base == "str":
        return raw
    if base in ("list", "tuple"):
        return _sequence(kind, raw)
    for cast in {"int": (int,), "float": (int, float)}.get(base, ()):
        try:
            return cast(raw)
        except ValueError:
            continue
    return _NO


def _item_type(kind: str) -> str:
    """The item type of a sequence type: `tuple[int, ...]` → int, `list[str] | None` → str; "" when none is given."""
    inner = next((k for k in _split_union(kind) if "[" in k), "")
    return _base(inner[inner.index("[") + 1 : -1].split(",")[0]) if inner else ""


def _sequence(kind: str, raw: str) -> Any:
    """`[42,43]` or `42,43` as a list (tuple) of scalars that match the declared item type, e.g. `list[int]`."""
    text = raw if raw.startswith(("[", "(")) else f"[{raw}]"
    item = _item_type(kind)
    try:
        value = ast.literal_eval(text)  # literals only: never evaluates code
    except (ValueError, SyntaxError):
        if item != "str":
            return _NO
        value = [v.strip() for v in text.strip("[]()").split(",") if v.strip()]  # -p tasks=gsm8k,mmlu
    if not isinstance(value, list | tuple):
        return _NO
    accepted = {"int": int, "float": int | float, "str": str, "bool": bool}.get(item, int | float | str | bool)
    if any(not isinstance(v, accepted) or (item in ("int", "float") and isinstance(v, bool)) for v in value):
        return _NO
    return tuple(value) if _base(kind) == "tuple" else list(value)


def resolve_overrides(sections: list[str], profile: str, assignments: list[str]) -> dict[str, dict[str, Any]]:
    """Each section's config overrides from `-p NAME=VALUE`, checked against the section's config before anything
    runs: NAME must be a field of at least one of `sections` (it applies to those that have it), VALUE must parse as
    the field's declared type, and the resulting config must validate. Anything else is a UsageError."""
    from edgetune.sections import section as find

    fields = {name: find(name).config_fields() for name in sections}
    overrides: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for text in assignments:
        name, raw = parse_assignment(text)
        takers = [s for s in sections if name in fields[s]]
        if not takers:
            accepted = "\n".join(f"  {s}: {', '.join(sorted(fields[s]))}" for s in sections)
            raise UsageError(f"no section run here has a parameter {name!r}; the config fields are:\n{accepted}")
        for s in takers:
            value = _as_declared(convert(name, raw, fields[s][name]), fields[s][name])
            overrides[s][name] = list(value) if isinstance(value, tuple) else value  # papermill passes lists
    for name in sections:
        try:
            find(name).config(profile, **overrides[name])
        except (ValueError, TypeError, OSError) as e:  # OSError: a model path that names no checkpoint
            raise UsageError(f"{name}: {e}") from e
    return overrides


def check_placed_inputs(sections: list[str], profile: str, overrides: dict[str, dict[str, Any]]) -> None:
    """Every checkpoint and dataset the sections' configs point at, opened before any kernel starts
    (`edgetune.inputs`); a missing or damaged one is a UsageError naming the file."""
    from edgetune.inputs import check_inputs
    from edgetune.sections import section as find

    for name in sections:
        try:
            check_inputs(find(name).config(profile, **overrides[name]))
        except (ValueError, OSError) as e:  # DatasetLayoutError is a FileNotFoundError
            raise UsageError(f"{name}: {e}") from e


def _as_declared(value: Any, kind: str) -> Any:
    """A float field's value as a float (`-p lr=1` is 1.0, as `-p lr=1.0`: one config, one cache key, one label),
    items of a `tuple[float, ...]` likewise."""
    items = _item_type(kind)
    if "float" in _split_union(kind) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if items == "float" and isinstance(value, list | tuple):
        return type(value)(float(v) for v in value)
    return value


def resolve_parameters(notebook: Path, profile: str, overrides: dict[str, Any], force: bool) -> dict[str, Any]:
    """The parameters to inject into a section's `notebook`: the profile, `force` and the config overrides."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    missing = [k for k in ("profile", "force", "overrides") if k not in declared]
    if missing:
        raise UsageError(f"{notebook.name}'s parameters cell lacks {missing}; every section notebook must declare them")
    return {"profile": profile, "force": force, "overrides": overrides}


# ------------------------------------------------------------------------------------------ execution
def reproduce(
    sections: list[str],
    profile: str,
    assignments: list[str],
    force: bool,
    timeout: int | None,
    argv: list[str] | None = None,
) -> int:
    """Run the sections' notebooks in order; stop at the first failure. Exit status 0, 1 (a section failed) or 130
    (interrupted); the manifest and the report are written in every case."""
    from edgetune.report import write_report

    chosen = list(dict.fromkeys(sections)) or [s for s in SECTIONS if (root() / "notebooks" / NOTEBOOKS[s]).exists()]
    for s in SECTIONS:
        if not sections and s not in chosen:
            print(f"edgetune: note: skipping {s}: notebooks/{NOTEBOOKS[s]} does not exist yet", file=sys.stderr)
    plans = []
    overrides = resolve_overrides(chosen, profile, assignments)
    check_placed_inputs(chosen, profile, overrides)
    for section in chosen:
        notebook = root() / "notebooks" / NOTEBOOKS[section]
        if not notebook.exists():
            raise UsageError(f"section {section!r} has no notebook yet (expected {notebook})")
        plans.append((section, notebook, resolve_parameters(notebook, profile, overrides[section], force)))
    ensure_kernel()
    manifest = _new_manifest(profile, argv)
    path = _manifest_path(manifest)
    status = 0
    for i, (section, notebook, params) in enumerate(plans, 1):
        if status:
            manifest["sections"][section] = {"status": "not run", "parameters": params}
            continue
        print(f"\n[{i}/{len(plans)}] {section} ({profile} profile) — {notebook.relative_to(root())}", file=sys.stderr)
        entry = _execute(section, notebook, params, timeout)
        manifest["sections"][section] = entry
        status = {"ok": 0, "interrupted": 130}.get(entry["status"], 1)
        _save_manifest(path, manifest)
    manifest["finished"] = _now()
    _save_manifest(path, manifest)
    labels = dict.fromkeys(e.get("label", profile) for e in manifest["sections"].values() if "label" in e)
    reports = [write_report(label) for label in labels or [profile]]
    print(_summary(manifest, path, reports))
    return status


def _manifest_path(manifest: dict[str, Any]) -> Path:
    """runs/reproductions/<id>.json, made unique (two reproductions may start in the same second)."""
    folder = runs_dir() / "reproductions"
    folder.mkdir(parents=True, exist_ok=True)
    base, n = manifest["id"], 1
    while True:
        try:
            with open(folder / f"{manifest['id']}.json", "x"):
                return folder / f"{manifest['id']}.json"
        except FileExistsError:
            n += 1
            stamp, _, profile = base.rpartition("-")
            manifest["id"] = f"{stamp}.{n}-{profile}"


def _new_manifest(profile: str, argv: list[str] | None) -> dict[str, Any]:
    from edgetune.profiles import pick_device
    from edgetune.runs import describe_device, package_versions

    stamp = dt.datetime.now(dt.timezone.utc)
    return {
        "id": f"{stamp:%Y%m%dT%H%M%SZ}-{profile}",
        "profile": profile,
        "started": stamp.isoformat(timespec="seconds"),
        "finished": None,
        "command": " ".join(["edgetune", *(argv or [])]),
        "git_commit": _git_commit(),
        "versions": package_versions(),
        "device": describe_device(pick_device()),
        "sections": {},
    }


def _execute(section: str, notebook: Path, params: dict[str, Any], timeout: int | None) -> dict[str, Any]:
    import papermill as pm
    from jupyter_client.manager import KernelManager
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from edgetune.profiles import budget_s, run_label
    from edgetune.progress import TEXT_ENV

    profile = params["profile"]
    label = run_label(profile, params.get("overrides"))  # where the notebook writes: <profile>+<hash> if overridden
    output = runs_dir() / "notebooks" / label / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    start, error, status = time.perf_counter(), None, None
    previous = os.environ.get(TEXT_ENV)
    os.environ[TEXT_ENV] = "text"  # the kernel inherits it: its bars come back as text on its stderr
    sockets = tempfile.TemporaryDirectory(prefix="edgetune-kernel-")
    # local IPC sockets in a private folder rather than open TCP ports on localhost
    km = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(sockets.name) / "kernel"))
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            kernel_name=KERNEL,
            km=km,
            language="python",
            cwd=str(notebook.parent),
            progress_bar=False,
            stderr_file=sys.stderr,  # progress bars and warnings, as the cells run
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
    except KeyboardInterrupt:
        status, error = "interrupted", "KeyboardInterrupt"
        print(f"\nedgetune: {section} interrupted; executed notebook so far: {output}", file=sys.stderr)
    except Exception as e:  # the kernel would not start, the notebook could not be read or written, ...
        error = f"{type(e).__name__}: {e}"
        print(f"\nedgetune: {section} could not run: {error}", file=sys.stderr)
    finally:
        if km.has_kernel:  # a kernel manager we pass in is ours to stop
            km.shutdown_kernel(now=True)
        sockets.cleanup()
        if previous is None:
            os.environ.pop(TEXT_ENV, None)
        else:
            os.environ[TEXT_ENV] = previous
    duration = time.perf_counter() - start
    budget = budget_s(section, profile)
    status = status or ("failed" if error else "ok")
    return {
        "status": status,
        "error": error,
        "duration_s": round(duration, 2),
        "budget_s": budget,
        "within_budget": None if budget is None else duration <= budget,
        "notebook": display_path(notebook),
        "executed_notebook": display_path(output),
        "parameters": params,
        "label": label,
        "finished": _now(),
        # only a finished run's claims and files: after a failure, the ledger and folder still hold an older run's
        "claims": _section_claims(section, label) if status == "ok" else None,
        "files": _section_files(section, label) if status == "ok" else None,
    }


def _section_claims(section: str, profile: str) -> list[dict[str, Any]]:
    from edgetune.claims import load_ledger

    ledger = load_ledger(profile)
    return ledger[ledger.section == section].drop(columns=["section", "profile"]).to_dict("records")


def _section_files(section: str, profile: str) -> dict[str, str]:
    """sha256 of every file the section wrote, so `compare` can say which figures and tables changed."""
    folder = figures_dir(profile, section)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    from edgetune.runs import write_json

    write_json(path, manifest)


def _summary(manifest: dict[str, Any], path: Path, reports: list[Path]) -> str:
    from edgetune.claims import tally
    from edgetune.report import format_budget, format_time

    lines = [f"\nedgetune reproduce — {manifest['profile']} profile, reproduction {manifest['id']}", ""]
    lines.append(f"{'section':<14} {'status':<11} {'time':>9} {'budget':>9}  claims holding")
    for section, e in manifest["sections"].items():
        time_s, budget = format_time(e), format_budget(e)
        held = tally([c["holds"] for c in e.get("claims") or []])
        label = e.get("label", manifest["profile"])
        overridden = f"  as {label} (overrides: {json.dumps(e['parameters'].get('overrides'))})" if "+" in label else ""
        lines.append(f"{section:<14} {e['status']:<11} {time_s:>9} {budget:>9}  {held}{overridden}")
    lines += [""] + [f"report:   {display_path(r)}" for r in reports] + [f"manifest: {display_path(path)}"]
    return "\n".join(lines)


def _pick_runs(runs: list[str]) -> tuple[Path, Path]:
    folder = runs_dir() / "reproductions"
    known = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not runs:
        newest = max(known, key=lambda p: p.stat().st_mtime, default=None)
        same = sorted(p for p in known if newest and p.stem.rpartition("-")[2] == newest.stem.rpartition("-")[2])
        if len(same) < 2:
            raise UsageError(f"compare needs two reproductions of one profile; {folder} holds {len(same)}")
        return same[-2], same[-1]
    if len(runs) != 2:
        raise UsageError(f"compare takes two reproductions (ids or manifest paths), got {len(runs)}")
    paths = []
    for run in runs:
        path = Path(run) if run.endswith(".json") else folder / f"{run}.json"
        if not path.is_file():
            listing = ", ".join(p.stem for p in known[-5:]) or "none"
            raise UsageError(f"no reproduction {run!r} ({path} does not exist); the latest are: {listing}")
        paths.append(path)
    return paths[0], paths[1]


def display_path(path: Path) -> str:
    """A path relative to the project root where it lies inside it (runs/ may be redirected elsewhere)."""
    try:
        return str(Path(path).resolve().relative_to(root()))
    except ValueError:
        return str(path)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    from edgetune.runs.schema import source_commit  # imports torch: only when a manifest is written

    return source_commit()


if __name__ == "__main__":
    sys.exit(main())
