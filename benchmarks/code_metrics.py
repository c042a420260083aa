#!/usr/bin/env python3
"""Static code metrics for a Python package (standard library only; nothing is imported or executed).

Usage:
    python benchmarks/code_metrics.py PACKAGE_DIR [NOTEBOOKS_DIR] [-o OUTPUT.json]

Prints (or writes) one JSON document with the sections
    functions, import_cycles, duplicate_functions, config_fields, notebook_parameters.

The output is deterministic: files are walked in sorted order, every list is sorted, paths are given relative to
the package's parent directory, and no timestamps or interpreter details are recorded.

Conventions (kept stable so that "before" and "after" runs compare like with like):
* Function length = end_lineno - lineno + 1 of the `def` line (decorators excluded). All FunctionDef and
  AsyncFunctionDef nodes count, including methods and nested functions; lambdas do not.
* Percentiles use linear interpolation between closest ranks (numpy's default, "linear"); the median is the 50th.
* Import edges follow grimp/import-linter semantics: `from pkg.a import b` points at `pkg.a.b` when that is a module,
  else at `pkg.a`; `import pkg.a.b` points at `pkg.a.b`. The implicit imports of parent packages' __init__ are NOT
  added as edges. An import is "function-local" when any enclosing scope is a function (or lambda); anything else
  (module body, class body, if/try at module level) is "top-level". Imports guarded by `if TYPE_CHECKING:` are counted
  separately and left out of the graph. Self-edges are reported but left out of the SCCs.
* Duplicate bodies: ast.dump(include_attributes=False) of the body statements with a leading docstring removed; the
  function's name, arguments, decorators and return annotation are ignored. Functions whose body is empty after
  removing the docstring are skipped. `renamed_body_groups` is an extra, looser view: bodies (and argument lists,
  annotations dropped) equal after alpha-renaming parameters and locally bound names, at least RENAMED_MIN_LINES
  body lines, excluding groups already found as exact duplicates.
* Config dataclasses: classes whose name ends in "Config" and that carry a @dataclass / @dataclasses.dataclass
  decorator. Fields are annotated class attributes other than ClassVar / InitVar, inherited fields of dataclass bases
  included. A field whose annotation resolves (same module or via `from ... import`) to another dataclass in the
  package, possibly wrapped in Optional[...] / `X | None`, is expanded into dotted leaves.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

SCHEMA_VERSION = 1
WATCH_NAMES = ("accuracy", "warmup_cosine", "resolve_device", "pick_device", "subset")
LONG_FUNCTION_LINES = 50
RENAMED_MIN_LINES = 2


# ---------------------------------------------------------------------------------------------------------------
# discovery and parsing


class Module:
    def __init__(self, name: str, path: Path, rel: str, is_package: bool, tree: ast.Module | None, error: str | None):
        self.name = name
        self.path = path
        self.rel = rel
        self.is_package = is_package
        self.tree = tree
        self.error = error


def discover(package_dir: Path) -> list[Module]:
    package_dir = package_dir.resolve()
    base = package_dir.parent
    modules = []
    for path in sorted(package_dir.rglob("*.py"), key=lambda p: p.relative_to(base).as_posix()):
        rel_parts = path.relative_to(base).parts
        if any(part == "__pycache__" or part.startswith(".") for part in rel_parts):
            continue
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        rel = path.relative_to(base).as_posix()
        tree, error = None, None
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=rel)
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        modules.append(Module(name, path, rel, is_package, tree, error))
    return modules


def walk_with_scope(tree: ast.AST):
    """Yield (node, scope) for every node; scope is a tuple of (kind, name) of the enclosing defs/classes."""
    stack = [(tree, ())]
    while stack:
        node, scope = stack.pop()
        yield node, scope
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = scope + (("function", node.name),)
        elif isinstance(node, ast.ClassDef):
            inner = scope + (("class", node.name),)
        elif isinstance(node, ast.Lambda):
            inner = scope + (("function", "<lambda>"),)
        else:
            inner = scope
        children = list(ast.iter_child_nodes(node))
        for child in reversed(children):
            stack.append((child, inner))


def qualname(scope: tuple, name: str) -> str:
    parts = []
    for kind, n in scope:
        parts.append(n)
        if kind == "function":
            parts.append("<locals>")
    parts.append(name)
    return ".".join(parts)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    frac = pos - lo
    return round(float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac), 2)


# ---------------------------------------------------------------------------------------------------------------
# 1. functions


def collect_functions(modules: list[Module]) -> list[dict]:
    out = []
    for mod in modules:
        if mod.tree is None:
            continue
        for node, scope in walk_with_scope(mod.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not scope:
                    kind = "function"
                elif scope[-1][0] == "class":
                    kind = "method"
                else:
                    kind = "nested"
                out.append(
                    {
                        "module": mod.name,
                        "file": mod.rel,
                        "qualname": qualname(scope, node.name),
                        "name": node.name,
                        "kind": kind,
                        "lineno": node.lineno,
                        "lines": node.end_lineno - node.lineno + 1,
                        "node": node,
                    }
                )
    out.sort(key=lambda f: (f["file"], f["lineno"], f["qualname"]))
    return out


def function_metrics(funcs: list[dict], root: str) -> dict:
    lengths = sorted(f["lines"] for f in funcs)
    by_kind = defaultdict(int)
    by_subpackage = defaultdict(lambda: {"count": 0, "lines": []})
    for f in funcs:
        by_kind[f["kind"]] += 1
        parts = f["file"].split("/")
        sub = "/".join(parts[:2]) + "/" if len(parts) > 2 else f"{parts[0]}/*.py (top level)"
        by_subpackage[sub]["count"] += 1
        by_subpackage[sub]["lines"].append(f["lines"])
    longest = sorted(funcs, key=lambda f: (-f["lines"], f["file"], f["lineno"]))[:15]
    return {
        "count": len(funcs),
        "by_kind": dict(sorted(by_kind.items())),
        "length_lines": {
            "median": percentile(lengths, 50),
            "p90": percentile(lengths, 90),
            "mean": round(sum(lengths) / len(lengths), 2) if lengths else None,
            "max": lengths[-1] if lengths else None,
            "total": sum(lengths),
            f"count_over_{LONG_FUNCTION_LINES}": sum(1 for n in lengths if n > LONG_FUNCTION_LINES),
            "percentile_method": "linear interpolation (numpy default)",
        },
        "by_subpackage": {
            k: {
                "count": v["count"],
                "median": percentile(sorted(v["lines"]), 50),
                "p90": percentile(sorted(v["lines"]), 90),
            }
            for k, v in sorted(by_subpackage.items())
        },
        "longest": [
            {
                "qualname": f"{f['module']}:{f['qualname']}",
                "file": f["file"],
                "lineno": f["lineno"],
                "lines": f["lines"],
            }
            for f in longest
        ],
    }


# ---------------------------------------------------------------------------------------------------------------
# 2. imports


def is_type_checking_test(test: ast.AST) -> bool:
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    return False


def iter_imports(tree: ast.Module):
    """Yield (node, function_local, type_checking)."""
    stack = [(tree, False, False)]
    while stack:
        node, local, tc = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, local, tc
            continue
        child_local = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.If) and is_type_checking_test(node.test):
            for child in reversed(node.orelse):
                stack.append((child, child_local, tc))
            for child in reversed(node.body):
                stack.append((child, child_local, True))
            stack.append((node.test, child_local, tc))
            continue
        for child in reversed(list(ast.iter_child_nodes(node))):
            stack.append((child, child_local, tc))


def longest_known_prefix(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in known:
            return cand
    return None


def from_base(node: ast.ImportFrom, mod: Module) -> str | None:
    """The absolute module named by an ImportFrom (None for a relative import reaching above the top package)."""
    if not node.level:
        return node.module or ""
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    up = node.level - 1
    if up >= len(parts):
        return None
    parts = parts[: len(parts) - up]
    return ".".join(parts + ([node.module] if node.module else []))


def resolve_import(node: ast.AST, mod: Module, known: set[str], root: str) -> tuple[list[str], list[str]]:
    """Return (targets, unresolved) for an import node; only names under `root` are considered."""
    targets, unresolved = [], []

    def add(full: str):
        if not (full == root or full.startswith(root + ".")):
            return
        hit = longest_known_prefix(full, known)
        if hit is None:
            unresolved.append(full)
        else:
            targets.append(hit)

    if isinstance(node, ast.Import):
        for alias in node.names:
            add(alias.name)
        return targets, unresolved

    # ImportFrom
    base = from_base(node, mod)
    if base is None:
        unresolved.append("." * node.level + (node.module or ""))
        return targets, unresolved
    if not (base == root or base.startswith(root + ".")):
        return targets, unresolved
    for alias in node.names:
        if alias.name != "*" and f"{base}.{alias.name}" in known:
            targets.append(f"{base}.{alias.name}")
        else:
            add(base)
    return targets, unresolved


def tarjan_scc(nodes: list[str], adj: dict[str, list[str]]) -> list[list[str]]:
    """Iterative Tarjan; deterministic given sorted nodes and sorted adjacency lists."""
    index = {}
    low = {}
    on_stack = set()
    stack = []
    sccs = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = adj.get(v, [])
            recurse = False
            while i < len(succ):
                w = succ[i]
                i += 1
                if w not in index:
                    work.append((v, i))
                    work.append((w, 0))
                    recurse = True
                    break
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                sccs.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return sccs


def shortest_cycle(start: str, members: set[str], adj: dict[str, list[str]]) -> list[str] | None:
    """Shortest cycle through `start` staying inside `members` (BFS; deterministic)."""
    from collections import deque

    prev = {}
    queue = deque()
    for w in adj.get(start, []):
        if w in members and w not in prev:
            prev[w] = start
            queue.append(w)
    while queue:
        v = queue.popleft()
        if v == start:
            break
        for w in adj.get(v, []):
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    if start not in prev:
        return None
    path = [start]
    v = prev[start]
    while v != start:
        path.append(v)
        v = prev[v]
    path.append(start)
    path.reverse()
    return path


def import_metrics(modules: list[Module], root: str) -> dict:
    known = {m.name for m in modules}
    edges = defaultdict(lambda: {"top_level": [], "function_local": []})  # (src, dst) -> kind -> ["file:line"]
    type_checking = []
    unresolved = []
    local_statements = []
    self_edges = []
    top_statements = 0
    for mod in modules:
        if mod.tree is None:
            continue
        for node, local, tc in iter_imports(mod.tree):
            targets, unres = resolve_import(node, mod, known, root)
            for u in unres:
                unresolved.append({"module": mod.name, "file": mod.rel, "line": node.lineno, "target": u})
            targets = sorted(set(targets))
            if not targets:
                continue
            where = f"{mod.rel}:{node.lineno}"
            if tc:
                type_checking.append({"module": mod.name, "line": node.lineno, "targets": targets})
                continue
            if local:
                local_statements.append({"module": mod.name, "file": mod.rel, "line": node.lineno, "targets": targets})
            else:
                top_statements += 1
            for t in targets:
                if t == mod.name:
                    self_edges.append(
                        {"module": mod.name, "line": node.lineno, "kind": "function_local" if local else "top_level"}
                    )
                    continue
                edges[(mod.name, t)]["function_local" if local else "top_level"].append(where)

    nodes = sorted(known)
    adj_all = defaultdict(set)
    adj_top = defaultdict(set)
    for (s, d), kinds in edges.items():
        adj_all[s].add(d)
        if kinds["top_level"]:
            adj_top[s].add(d)
    adj_all = {k: sorted(v) for k, v in adj_all.items()}
    adj_top = {k: sorted(v) for k, v in adj_top.items()}

    def describe(sccs, adj):
        out = []
        for comp in sorted((c for c in sccs if len(c) > 1), key=lambda c: (-len(c), c)):
            members = set(comp)
            internal = []
            for s in comp:
                for d in adj.get(s, []):
                    if d in members:
                        k = edges[(s, d)]
                        internal.append(
                            {
                                "from": s,
                                "to": d,
                                "top_level": sorted(k["top_level"]),
                                "function_local": sorted(k["function_local"]),
                            }
                        )
            out.append(
                {
                    "size": len(comp),
                    "modules": comp,
                    "example_cycle": shortest_cycle(comp[0], members, adj),
                    "internal_edges": internal,
                    "internal_edges_function_local_only": sum(1 for e in internal if not e["top_level"]),
                }
            )
        return out

    sccs_all = describe(tarjan_scc(nodes, adj_all), adj_all)
    sccs_top = describe(tarjan_scc(nodes, adj_top), adj_top)
    in_cycle = {m for c in sccs_all for m in c["modules"]}
    local_edge_count = sum(len(v["function_local"]) for v in edges.values())
    local_in_cycle = sum(
        1
        for st in local_statements
        for t in st["targets"]
        if st["module"] in in_cycle
        and t in in_cycle
        and any(st["module"] in c["modules"] and t in c["modules"] for c in sccs_all)
    )
    return {
        "modules": len(nodes),
        "graph_edges": {
            "total": len(edges),
            "with_top_level_import": sum(1 for v in edges.values() if v["top_level"]),
            "function_local_only": sum(1 for v in edges.values() if v["function_local"] and not v["top_level"]),
        },
        "top_level_import_statements": top_statements,
        "function_local_imports": {
            "statements": len(local_statements),
            "module_targets": local_edge_count,
            "targets_inside_a_cycle": local_in_cycle,
            "list": [
                {"where": f"{s['file']}:{s['line']}", "module": s["module"], "targets": s["targets"]}
                for s in sorted(local_statements, key=lambda s: (s["file"], s["line"]))
            ],
        },
        "type_checking_imports": len(type_checking),
        "self_imports": self_edges,
        "unresolved_imports": sorted(unresolved, key=lambda u: (u["file"], u["line"], u["target"])),
        "cycles_count": len(sccs_all),
        "cycles": sccs_all,
        "cycles_top_level_only_count": len(sccs_top),
        "cycles_top_level_only": sccs_top,
        "note": "cycles = SCCs (size > 1) of the top-level + function-local import graph; "
        "cycles_top_level_only = SCCs of the top-level-only graph",
    }


# ---------------------------------------------------------------------------------------------------------------
# 3. duplicate functions


def strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:]
    return body


class _Renamer(ast.NodeTransformer):
    """Alpha-rename a function's parameters and locally bound names (in order of first appearance)."""

    def __init__(self, local_names: set[str]):
        self.local = local_names
        self.mapping: dict[str, str] = {}

    def _map(self, name: str) -> str:
        if name not in self.local:
            return name
        if name not in self.mapping:
            self.mapping[name] = f"_v{len(self.mapping)}"
        return self.mapping[name]

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(id=self._map(node.id), ctx=node.ctx), node)

    def visit_arg(self, node):
        node = ast.arg(arg=self._map(node.arg), annotation=None, type_comment=None)
        return node


def renamed_key(fn: ast.AST) -> str | None:
    body = strip_docstring(fn.body)
    if not body:
        return None
    local = set()
    a = fn.args
    for arg in [
        *a.posonlyargs,
        *a.args,
        *a.kwonlyargs,
        *([a.vararg] if a.vararg else []),
        *([a.kwarg] if a.kwarg else []),
    ]:
        local.add(arg.arg)
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                local.add(node.id)
            elif isinstance(node, ast.arg):
                local.add(node.arg)
    import copy

    renamer = _Renamer(local)
    new_args = renamer.visit(copy.deepcopy(fn.args))
    new_body = [renamer.visit(copy.deepcopy(s)) for s in body]
    return ast.dump(new_args) + "\n" + "\n".join(ast.dump(s, include_attributes=False) for s in new_body)


def duplicate_metrics(funcs: list[dict]) -> dict:
    groups = defaultdict(list)
    for f in funcs:
        body = strip_docstring(f["node"].body)
        if not body:
            continue
        key = "\n".join(ast.dump(s, include_attributes=False) for s in body)
        groups[key].append(f)
    dup_groups = []
    pairs = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda f: (f["file"], f["lineno"]))
        args = {ast.dump(m["node"].args, include_attributes=False) for m in members}
        body = strip_docstring(members[0]["node"].body)
        body_lines = body[-1].end_lineno - body[0].lineno + 1
        entry = {
            "members": [
                {"qualname": f"{m['module']}:{m['qualname']}", "file": m["file"], "lineno": m["lineno"]}
                for m in members
            ],
            "same_name": len({m["name"] for m in members}) == 1,
            "same_arguments": len(args) == 1,
            "body_statements": len(body),
            "body_lines": body_lines,
            "cross_module": len({m["module"] for m in members}) > 1,
        }
        dup_groups.append(entry)
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                a, b = members[i], members[j]
                pairs.append(
                    {
                        "a": f"{a['module']}:{a['qualname']}",
                        "a_file": a["file"],
                        "b": f"{b['module']}:{b['qualname']}",
                        "b_file": b["file"],
                        "body_lines": body_lines,
                    }
                )
    dup_groups.sort(key=lambda g: (-g["body_lines"], g["members"][0]["file"], g["members"][0]["lineno"]))
    pairs.sort(key=lambda p: (-p["body_lines"], p["a_file"], p["a"], p["b_file"], p["b"]))

    # near-duplicates: identical after alpha-renaming parameters and local names (annotations dropped), at least
    # RENAMED_MIN_LINES body lines, and not already an exact-body group
    exact_sets = [frozenset(m["qualname"] for m in g["members"]) for g in dup_groups]
    renamed = defaultdict(list)
    for f in funcs:
        key = renamed_key(f["node"])
        if key is not None:
            renamed[key].append(f)
    renamed_groups = []
    for members in renamed.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda f: (f["file"], f["lineno"]))
        body = strip_docstring(members[0]["node"].body)
        body_lines = body[-1].end_lineno - body[0].lineno + 1
        names = frozenset(f"{m['module']}:{m['qualname']}" for m in members)
        if body_lines < RENAMED_MIN_LINES or any(names <= e for e in exact_sets):
            continue
        renamed_groups.append(
            {
                "members": [
                    {"qualname": f"{m['module']}:{m['qualname']}", "file": m["file"], "lineno": m["lineno"]}
                    for m in members
                ],
                "body_lines": body_lines,
                "cross_module": len({m["module"] for m in members}) > 1,
            }
        )
    renamed_groups.sort(key=lambda g: (-g["body_lines"], g["members"][0]["file"], g["members"][0]["lineno"]))

    # same name in two or more modules
    by_name = defaultdict(list)
    for f in funcs:
        by_name[f["name"]].append(f)
    same_name = []
    for name, defs in sorted(by_name.items()):
        mods = sorted({d["module"] for d in defs})
        if len(mods) < 2 or (name.startswith("__") and name.endswith("__")):
            continue
        same_name.append(
            {
                "name": name,
                "modules": len(mods),
                "any_module_level": any(d["kind"] == "function" for d in defs),
                "definitions": [
                    {
                        "qualname": f"{d['module']}:{d['qualname']}",
                        "file": d["file"],
                        "lineno": d["lineno"],
                        "kind": d["kind"],
                    }
                    for d in sorted(defs, key=lambda d: (d["file"], d["lineno"]))
                ],
            }
        )
    same_name_module_level = [
        s["name"] for s in same_name if sum(1 for d in s["definitions"] if d["kind"] == "function") >= 2
    ]
    watch = {
        name: [
            {"qualname": f"{d['module']}:{d['qualname']}", "file": d["file"], "lineno": d["lineno"], "kind": d["kind"]}
            for d in sorted(by_name.get(name, []), key=lambda d: (d["file"], d["lineno"]))
        ]
        for name in WATCH_NAMES
    }
    return {
        "identical_body_groups": len(dup_groups),
        "identical_body_pairs": len(pairs),
        "identical_body_pairs_cross_module": sum(1 for p in pairs if p["a_file"] != p["b_file"]),
        "groups": dup_groups,
        "pairs": pairs,
        "renamed_body_groups_count": len(renamed_groups),
        "renamed_body_groups": renamed_groups,
        "same_name_in_multiple_modules_count": len(same_name),
        "same_name_module_level_functions": same_name_module_level,
        "same_name_in_multiple_modules": same_name,
        "watched_names": watch,
        "note": "same_name excludes dunder methods; includes methods and nested functions (see 'kind')",
    }


# ---------------------------------------------------------------------------------------------------------------
# 4. config dataclasses


def dataclass_decorator(node: ast.ClassDef) -> tuple[bool, bool]:
    """(is_dataclass, frozen)"""
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else None
        if name == "dataclass":
            frozen = False
            if isinstance(dec, ast.Call):
                for kw in dec.keywords:
                    if kw.arg == "frozen" and isinstance(kw.value, ast.Constant):
                        frozen = bool(kw.value.value)
            return True, frozen
    return False, False


def config_metrics(modules: list[Module], root: str) -> dict:
    known = {m.name for m in modules}
    classes = {}  # (module, name) -> ClassDef (module-level dataclasses only)
    frozen_of = {}
    imports = {}  # module -> {local name: (module, name) or ("module", modname)}
    for mod in modules:
        if mod.tree is None:
            continue
        imap = {}
        for node in mod.tree.body:
            if isinstance(node, ast.ClassDef):
                is_dc, frozen = dataclass_decorator(node)
                if is_dc:
                    classes[(mod.name, node.name)] = node
                    frozen_of[(mod.name, node.name)] = frozen
        for node, local, _tc in iter_imports(mod.tree):
            if local:
                continue
            if isinstance(node, ast.ImportFrom):
                base = from_base(node, mod)
                if base is None:
                    continue
                for alias in node.names:
                    local_name = alias.asname or alias.name
                    if f"{base}.{alias.name}" in known:
                        imap[local_name] = ("module", f"{base}.{alias.name}")
                    else:
                        imap[local_name] = ("name", base, alias.name)
            else:
                for alias in node.names:
                    if alias.asname:
                        imap[alias.asname] = ("module", alias.name)
                    else:
                        imap[alias.name.split(".")[0]] = ("module", alias.name.split(".")[0])
        imports[mod.name] = imap

    def lookup(module: str, name: str, depth: int = 0):
        if depth > 10:
            return None
        if (module, name) in classes:
            return (module, name)
        entry = imports.get(module, {}).get(name)
        if entry and entry[0] == "name":
            return lookup(entry[1], entry[2], depth + 1)  # follows re-exports through __init__
        return None

    def resolve_annotation(module: str, ann: ast.AST):
        if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
            try:
                ann = ast.parse(ann.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(ann, ast.Name):
            return lookup(module, ann.id)
        if isinstance(ann, ast.Attribute) and isinstance(ann.value, ast.Name):
            entry = imports.get(module, {}).get(ann.value.id)
            if entry and entry[0] == "module":
                return lookup(entry[1], ann.attr)
            return None
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):  # X | None
            cands = [resolve_annotation(module, side) for side in (ann.left, ann.right)]
            cands = [c for c in cands if c]
            return cands[0] if len(cands) == 1 else None
        if isinstance(ann, ast.Subscript):
            head = ann.value
            head_name = (
                head.id if isinstance(head, ast.Name) else head.attr if isinstance(head, ast.Attribute) else None
            )
            if head_name in ("Optional", "Union"):
                elts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
                cands = [c for c in (resolve_annotation(module, e) for e in elts) if c]
                return cands[0] if len(cands) == 1 else None
        return None

    def own_fields(key):
        node = classes[key]
        out = []
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                ann_src = ast.unparse(stmt.annotation)
                if re.match(r"^(typing\.|dataclasses\.)?(ClassVar|InitVar)\b", ann_src.strip("'\"")):
                    continue
                out.append((stmt.target.id, stmt.annotation, ann_src))
        return out

    def all_fields(key, seen):
        node = classes[key]
        fields_ = []
        for base in node.bases:
            bkey = resolve_annotation(key[0], base)
            if bkey and bkey not in seen:
                fields_.extend(all_fields(bkey, seen | {bkey}))
        names = {f[0] for f in fields_}
        for f in own_fields(key):
            if f[0] in names:
                fields_ = [g for g in fields_ if g[0] != f[0]]
            fields_.append(f)
        return fields_

    def leaves(key, prefix, seen):
        out = []
        for name, ann, _ann_src in all_fields(key, {key}):
            sub = resolve_annotation(key[0], ann)
            if sub and sub not in seen:
                out.extend(leaves(sub, f"{prefix}{name}.", seen | {sub}))
            else:
                out.append(f"{prefix}{name}")
        return out

    result = []
    for key in sorted(classes):
        module, name = key
        if not name.endswith("Config"):
            continue
        direct = all_fields(key, {key})
        nested = {}
        for fname, ann, _src in direct:
            sub = resolve_annotation(module, ann)
            if sub:
                nested[fname] = f"{sub[0]}.{sub[1]}"
        lv = leaves(key, "", {key})
        mod = next(m for m in modules if m.name == module)
        result.append(
            {
                "module": module,
                "name": name,
                "file": mod.rel,
                "lineno": classes[key].lineno,
                "frozen": frozen_of[key],
                "direct_fields": len(direct),
                "leaf_fields": len(lv),
                "nested": nested,
                "leaves": lv,
            }
        )
    return {
        "count": len(result),
        "total_leaf_fields": sum(r["leaf_fields"] for r in result),
        "non_frozen": [f"{r['module']}.{r['name']}" for r in result if not r["frozen"]],
        "configs": result,
    }


# ---------------------------------------------------------------------------------------------------------------
# 5. notebooks


def assigned_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        out = []
        for e in target.elts:
            out.extend(assigned_names(e))
        return out
    if isinstance(target, ast.Starred):
        return assigned_names(target.value)
    return []


def parse_cell(source: str) -> tuple[ast.Module | None, str | None]:
    try:
        return ast.parse(source), None
    except SyntaxError:
        pass
    # drop IPython magics / shell escapes and retry
    cleaned = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(cleaned), None
    except SyntaxError as exc:
        return None, f"SyntaxError: {exc}"


def notebook_metrics(nb_dir: Path | None, configs: dict) -> dict:
    if nb_dir is None:
        return {"directory": None, "notebooks": []}
    nb_dir = nb_dir.resolve()
    out = []
    config_fields = {f"{c['module']}.{c['name']}": set(c["leaves"]) for c in configs["configs"]}
    for path in sorted(nb_dir.glob("*.ipynb")):
        entry = {"notebook": path.name}
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            out.append(entry)
            continue
        cells = [c for c in nb.get("cells", []) if "parameters" in ((c.get("metadata") or {}).get("tags") or [])]
        entry["parameter_cells"] = len(cells)
        names, annotated_only, errors = [], [], []
        for cell in cells:
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else str(src)
            tree, err = parse_cell(src)
            if tree is None:
                errors.append(err)
                continue
            for stmt in tree.body:
                if isinstance(stmt, ast.Assign):
                    for t in stmt.targets:
                        names.extend(assigned_names(t))
                elif isinstance(stmt, ast.AnnAssign):
                    if stmt.value is None:
                        annotated_only.extend(assigned_names(stmt.target))
                    else:
                        names.extend(assigned_names(stmt.target))
                elif isinstance(stmt, ast.AugAssign):
                    names.extend(assigned_names(stmt.target))
        seen = set()
        ordered = [n for n in names if not (n in seen or seen.add(n))]
        entry["parameters"] = ordered
        entry["count"] = len(ordered)
        if annotated_only:
            entry["annotated_only"] = annotated_only
        if errors:
            entry["errors"] = errors
        # which *Config shares the most names with the parameters (informative only)
        best = None
        for cname, cfields in sorted(config_fields.items()):
            overlap = len(set(ordered) & cfields)
            if overlap and (best is None or overlap > best[1]):
                best = (cname, overlap)
        if best:
            entry["closest_config"] = best[0]
            entry["not_config_fields"] = [n for n in ordered if n not in config_fields[best[0]]]
        out.append(entry)
    return {
        "directory": nb_dir.name,
        "count": len(out),
        "total_parameters": sum(e.get("count", 0) for e in out),
        "notebooks": out,
    }


# ---------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package_dir", type=Path)
    ap.add_argument("notebooks_dir", type=Path, nargs="?")
    ap.add_argument("-o", "--output", type=Path, help="write JSON here instead of stdout")
    args = ap.parse_args(argv)
    if not args.package_dir.is_dir():
        ap.error(f"{args.package_dir} is not a directory")
    if args.notebooks_dir is not None and not args.notebooks_dir.is_dir():
        ap.error(f"{args.notebooks_dir} is not a directory")

    root = args.package_dir.resolve().name
    modules = discover(args.package_dir)
    funcs = collect_functions(modules)
    configs = config_metrics(modules, root)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "schema_version": SCHEMA_VERSION,
        "package": root,
        "files": len(modules),
        "source_lines": sum(len(m.path.read_text(encoding="utf-8", errors="replace").splitlines()) for m in modules),
        "parse_errors": [{"file": m.rel, "error": m.error} for m in modules if m.error],
        "functions": function_metrics(funcs, root),
        "import_cycles": import_metrics(modules, root),
        "duplicate_functions": duplicate_metrics(funcs),
        "config_fields": configs,
        "notebook_parameters": notebook_metrics(args.notebooks_dir, configs),
    }
    text = json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
