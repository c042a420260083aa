"""The report of a profile's reproduction (`figures/<profile>/REPORT.md`) and the comparison of two reproductions.

The report is Markdown that renders on a code host: per section its status, duration and budget verdict (from the
newest manifest under `runs/reproductions/` that ran it), every claim with its verdict and values (from the
profile's ledger), the figures that bear on each claim as embedded images, links to the plotted data and to the
executed notebook, then the commit, package versions and device.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from edgetune.claims import VERDICTS, interval, load_ledger, tally
from edgetune.figures import markdown_table
from edgetune.paths import SECTIONS, figures_dir, root, runs_dir
from edgetune.runs.io import write_text

MARKS = {"holds": "✅ holds", "refuted": "❌ refuted", "inconclusive": "➖ inconclusive"}
VERSIONS_SHOWN = ("python", "torch", "torchvision", "timm", "transformers", "peft", "accelerate", "numpy")


def latest_entries(profile: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Per section, (manifest, section entry) of the newest reproduction at `profile` that ran it. `profile` may be
    a run label (`<profile>+<hash>`): only runs with exactly those overrides count, and a plain profile's report
    never shows a run with overrides."""
    base = profile.partition("+")[0]
    folder = runs_dir() / "reproductions"
    found: dict[str, tuple[dict, dict]] = {}
    last_ok: dict[str, str] = {}
    for path in sorted(folder.glob(f"*-{base}.json")) if folder.is_dir() else []:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"edgetune: note: skipping unreadable manifest {path}: {e}", file=sys.stderr)
            continue
        for section, entry in manifest.get("sections", {}).items():
            if entry.get("status") != "not run" and entry.get("label", base) == profile:
                found[section] = (manifest, entry)  # sorted by id (a UTC timestamp): the last one wins
                if entry.get("status") == "ok":
                    last_ok[section] = manifest.get("id", path.stem)
    for section, (manifest, entry) in found.items():  # a failed run keeps the last good one beside it
        if entry.get("status") != "ok" and section in last_ok:
            found[section] = (manifest, {**entry, "last_ok": last_ok[section]})
    return found


HEADLINE_PROFILES = ("default", "gpu")
HEADLINE_START, HEADLINE_END = (
    "<!-- headline: start (edgetune claims --headline --readme) -->",
    "<!-- headline: end -->",
)


def headline(profiles: tuple[str, ...] = HEADLINE_PROFILES) -> str:
    """Every claim once, with its verdict and interval at each profile side by side (the README's headline table);
    a profile whose ledger lacks the claim says "not run"."""
    ledgers = {p: load_ledger(p) for p in profiles}
    keys = list(dict.fromkeys((r.section, r.claim) for ledger in ledgers.values() for r in ledger.itertuples()))
    order = {s: i for i, s in enumerate(SECTIONS)}
    keys.sort(key=lambda k: order.get(k[0], len(order)))
    rows = []
    for section, claim in keys:
        row = {"section": section, "claim": claim}
        for profile, ledger in ledgers.items():
            found = ledger[(ledger.section == section) & (ledger.claim == claim)]
            if found.empty:
                row[profile] = "not run"
                continue
            record = found.iloc[0].to_dict()
            shown = interval(record) or record["reproduced_value"]
            row[profile] = f"**{VERDICTS[record['holds']]}** {shown}"
        rows.append(row)
    if not rows:
        return "No claims recorded yet: run `make reproduce`."
    return markdown_table(pd.DataFrame(rows))


def write_headline(readme: Path) -> bool:
    """Replace the headline block of `readme` (between its markers) with `headline()`; True if it changed."""
    text = readme.read_text()
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{readme} has no headline block: put {HEADLINE_START!r} and {HEADLINE_END!r} on their own lines"
        )
    new = text[: start + len(HEADLINE_START)] + "\n" + headline() + "\n" + text[end:]
    if new != text:
        write_text(readme, new)
    return new != text


def write_report(profile: str) -> Path:
    """Write figures/<profile>/REPORT.md and return its path."""
    folder = figures_dir(profile)
    text = render(profile, folder)
    return write_text(folder / "REPORT.md", text)


def render(profile: str, folder: Path) -> str:
    entries = latest_entries(profile)
    ledger = load_ledger(profile)
    out = [
        f"# edgetune — {profile} profile",
        "",
        f"What `edgetune reproduce --profile {profile}` measured, section by section: every claim of the papers "
        "tested here with the paper's value, the value reproduced at this profile's scale and the verdict, beside "
        "the figures that bear on it. A verdict is decided by the 95 % interval where the row has one: holds or "
        "refuted when the whole interval lies on one side of the claim's threshold, inconclusive when it straddles "
        "it or the profile cannot judge the claim (the note says why). Regenerated on every reproduction; do not edit.",
        "",
        "| section | status | time | budget | claims holding | reproduction |",
        "|---|---|---|---|---|---|",
    ]
    for section in SECTIONS:
        manifest, entry = entries.get(section, ({}, {}))
        rows = ledger[ledger.section == section]
        out.append(
            f"| [{section}](#{section}) | {entry.get('status', 'not run here')} | {format_time(entry)} "
            f"| {format_budget(entry)} | {tally(list(rows.holds))} | {manifest.get('id', '—')} |"
        )
    out += ["", *_environment(entries), ""]
    for section in SECTIONS:
        out += _section(section, entries.get(section, ({}, {}))[1], ledger[ledger.section == section], folder)
    return "\n".join(out).rstrip() + "\n"


def _section(section: str, entry: dict[str, Any], claims, folder: Path) -> list[str]:
    sub = folder / section
    figures = sorted(p.stem for p in sub.glob("*.png")) if sub.is_dir() else []
    tables = sorted(p.stem for p in sub.glob("*.md")) if sub.is_dir() else []
    out = [f"## {section}", ""]
    if entry:
        notebook = entry.get("executed_notebook", "")
        out.append(
            f"Status **{entry['status']}** in {format_time(entry)} ({format_budget(entry, long=True)}). "
            f"Executed notebook: [`{notebook}`]({_link(notebook, folder)}) (kept under `runs/`, not tracked)."
            + (f" Error: `{entry['error']}`" if entry.get("error") else "")
        )
        overrides = set_on_top(entry.get("parameters", {}))
        if overrides:
            out += [
                "",
                "Parameters set on top of the profile: " + ", ".join(f"`{k}={v!r}`" for k, v in overrides.items()),
            ]
        if entry["status"] != "ok" and not claims.empty:
            last = entry.get("last_ok")
            earlier = f"reproduction {last}, the last that finished" if last else "an earlier run"
            out += ["", f"**The claims below are from {earlier}**: this one did not finish."]
    else:
        out.append("Not run in this checkout yet: `edgetune reproduce --section " + section + "`.")
    out.append("")
    if claims.empty:
        out += ["No claims recorded for this section at this profile.", ""]
    shown: set[str] = set()
    for row in claims.itertuples(index=False):
        verdict = VERDICTS[row.holds]
        out += [
            f"### {MARKS[verdict]}: {row.claim}",
            "",
            markdown_table(pd.DataFrame({"paper": [row.paper_value], "reproduced here": [row.reproduced_value]})),
        ]
        estimate = interval(row._asdict())
        if estimate:
            out += [
                f"Decided on {estimate}; an effect more than ±{row.detectable} {row.unit} from the threshold would "
                f"have been resolved. Measured at `{row.commit}` on {row.device}.",
                "",
            ]
        if row.note:
            out += [f"*{row.note}*", ""]
        for name in [n for n in row.figures.split(";") if n in figures]:
            out += [
                f"Figure `{name}` above — [plotted data]({section}/{name}.csv)"
                if name in shown
                else _image(section, name),
                "",
            ]
            shown.add(name)
    rest = [n for n in figures if n not in shown]
    if rest:
        out += ["### Other figures", ""]
        for name in rest:
            out += [_image(section, name), ""]
    if tables:
        out += ["Tables: " + ", ".join(f"[{t}]({section}/{t}.md)" for t in tables), ""]
    return out


def _image(section: str, name: str) -> str:
    return f"![{section}/{name}]({section}/{name}.png)  \n`{name}` — [plotted data]({section}/{name}.csv)"


def _environment(entries: dict[str, tuple[dict, dict]]) -> list[str]:
    manifests = {m["id"]: m for m, _ in entries.values()}
    if not manifests:
        return ["No reproduction recorded in this checkout's `runs/` yet."]
    out = ["| reproduction | commit | device | finished | versions |", "|---|---|---|---|---|"]
    for rid, m in sorted(manifests.items()):
        versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if k in VERSIONS_SHOWN)
        out.append(f"| {rid} | `{m.get('git_commit')}` | {m.get('device')} | {m.get('finished') or '—'} | {versions} |")
    return out


def _link(path: str, folder: Path) -> str:
    target = Path(path) if Path(path).is_absolute() else root() / path
    return Path(os.path.relpath(target, folder)).as_posix()


def format_time(entry: dict[str, Any]) -> str:
    return f"{entry['duration_s']:.1f} s" if entry.get("duration_s") is not None else "—"


def format_budget(entry: dict[str, Any], long: bool = False) -> str:
    if entry.get("budget_s") is None:
        return "no budget" if long else "—"
    ok = entry["within_budget"]
    if long:
        return f"{'within' if ok else 'over'} its budget of {entry['budget_s']:.0f} s"
    return f"{'≤' if ok else '>'} {entry['budget_s']:.0f} s"


# ------------------------------------------------------------------------------------------ compare
def compare(path_a: Path, path_b: Path) -> str:
    """A Markdown account of what changed from reproduction A to B: status, time, claims, figures and tables."""
    a, b = (json.loads(Path(p).read_text()) for p in (path_a, path_b))
    for manifest, path in ((a, path_a), (b, path_b)):
        if not isinstance(manifest, dict) or not isinstance(manifest.get("sections"), dict):
            raise ValueError(f"{path} has no 'sections'")
        manifest.setdefault("id", Path(path).stem)
    out = [
        f"# {a['id']} → {b['id']}",
        "",
        f"commit `{a.get('git_commit')}` → `{b.get('git_commit')}`",
        "",
        "| section | status | time | changed files | changed claims |",
        "|---|---|---|---|---|",
    ]
    details: list[str] = []
    for section in SECTIONS:
        ea, eb = a["sections"].get(section), b["sections"].get(section)
        if not ea and not eb:
            continue
        if not ea or not eb:  # run in one reproduction only: nothing to compare
            out.append(f"| {section} | {(ea or {}).get('status', 'not run')} → {(eb or {}).get('status', 'not run')} "
                       f"| {format_time(ea or {})} → {format_time(eb or {})} | — | — |")  # fmt: skip
            continue
        files = _file_changes(ea.get("files") or {}, eb.get("files") or {})
        claims = _claim_changes(ea.get("claims") or [], eb.get("claims") or [])
        params = _parameter_changes(set_on_top(ea.get("parameters") or {}), set_on_top(eb.get("parameters") or {}))
        out.append(
            f"| {section} | {ea.get('status', '—')} → {eb.get('status', '—')} | {format_time(ea)} → {format_time(eb)}"
            f"{_ratio(ea, eb)} | {len(files)} | {len(claims)} |"
        )
        if files or claims or params:
            details += [f"## {section}", "", *[f"- {x}" for x in (*params, *claims, *files)], ""]
    for key in sorted(set(a.get("versions", {})) | set(b.get("versions", {}))):
        va, vb = a.get("versions", {}).get(key), b.get("versions", {}).get(key)
        if va != vb:
            details.append(f"- version of {key}: {va} → {vb}")
    if a.get("device") != b.get("device"):
        details.append(f"- device: {a.get('device')} → {b.get('device')}")
    return "\n".join(out + [""] + (details or ["Nothing else changed."])).rstrip() + "\n"


def _ratio(ea: dict, eb: dict) -> str:
    ta, tb = ea.get("duration_s"), eb.get("duration_s")
    return f" (×{tb / ta:.2f})" if ta and tb else ""


def _file_changes(fa: dict[str, str], fb: dict[str, str]) -> list[str]:
    changed = [f"`{n}` changed" for n in sorted(set(fa) & set(fb)) if fa[n] != fb[n]]
    return (
        changed
        + [f"`{n}` added" for n in sorted(set(fb) - set(fa))]
        + [f"`{n}` removed" for n in sorted(set(fa) - set(fb))]
    )


def set_on_top(parameters: dict[str, Any]) -> dict[str, Any]:
    """The config values a section ran with on top of its profile: its `overrides`, and any other parameter (from a
    manifest of an earlier layout) besides the profile and `force`."""
    plain = {k: v for k, v in parameters.items() if k not in ("profile", "force", "overrides")}
    return {**plain, **(parameters.get("overrides") or {})}


def _parameter_changes(pa: dict[str, Any], pb: dict[str, Any]) -> list[str]:
    return [
        f"parameter {k}: {pa.get(k, '—')!r} → {pb.get(k, '—')!r}"
        for k in sorted(set(pa) | set(pb))
        if pa.get(k) != pb.get(k)
    ]


def _claim_changes(ca: list[dict], cb: list[dict]) -> list[str]:
    before, after = {c.get("claim"): c for c in ca}, {c.get("claim"): c for c in cb}
    out = []
    for claim in sorted(set(before) | set(after)):
        x, y = before.get(claim), after.get(claim)
        if x is None or y is None:
            out.append(f"claim {'added' if x is None else 'removed'}: {claim}")
            continue
        vx, vy = VERDICTS.get(x.get("holds"), "?"), VERDICTS.get(y.get("holds"), "?")
        rx, ry = x.get("reproduced_value"), y.get("reproduced_value")
        if vx != vy or rx != ry:
            out.append(f"{claim}: {vx} → {vy}; {rx} → {ry}")
    return out
