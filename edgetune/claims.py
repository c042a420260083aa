"""The claims ledger: each section registers the papers' headline claims it tests, with what it measured.

Each profile has its own ledger, `figures/<profile>/claims.csv` (and a rendered `claims.md`): a section's rerun
replaces all of that section's rows and keeps the other sections'. A claim that does not hold at a profile's scale is
recorded as refuted — the ledger reports, it never tunes. A claim the profile cannot decide (an interval that
straddles the threshold, or a spread across seeds with one seed) is recorded as inconclusive, with the reason in its
note. A row decided on an estimate carries it with its 95 % interval, its sample (items, seeds), the smallest effect
it could resolve, and the commit, device and package versions it was measured with. Each row names the section's
figures that bear on it, so the reproduction report can show them beside the verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
from filelock import FileLock

from edgetune.evidence import Estimate
from edgetune.figures import markdown_table
from edgetune.paths import SECTIONS, figures_dir
from edgetune.profiles import PROFILES, check_label
from edgetune.runs.io import write_text

COLUMNS = ("section", "claim", "paper_value", "reproduced_value", "profile", "holds", "note", "figures")
# each row's estimate with its 95 % interval and sample, the smallest effect it could resolve, and where it was made
EVIDENCE = (
    "estimate", "ci_low", "ci_high", "unit", "items", "sample", "seeds", "detectable", "commit", "device", "versions"
)  # fmt: skip
VERDICTS = {True: "holds", False: "refuted", None: "inconclusive"}


@dataclass(frozen=True)
class Claim:
    """One tested claim. `paper_value` and `reproduced_value` are short human-readable strings; `holds` is None
    where the profile cannot judge the claim; `figures` names the section's figures that bear on it."""

    section: str
    claim: str
    paper_value: str
    reproduced_value: str
    profile: str
    holds: bool | None
    note: str = ""
    figures: tuple[str, ...] = ()
    estimate: Estimate | None = None  # the quantity the verdict is decided on, with its interval
    unit: str = ""  # the estimate's unit ("points", "pp", "x", …)
    sample: str = "test items"  # what the estimate's `items` are (and what the bootstrap resampled)
    device: str = ""  # where it was measured (filled in by `record` when empty)

    def __post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"Claim.section={self.section!r}; expected one of {SECTIONS}")
        try:
            check_label(self.profile)
        except ValueError:
            expected = f"one of {PROFILES} (or <profile>+<8 hex>)"
            raise ValueError(f"Claim.profile={self.profile!r}; expected {expected}") from None
        if self.holds is not None and not isinstance(self.holds, bool):
            raise TypeError(f"Claim.holds must be a bool or None, got {type(self.holds).__name__} ({self.holds!r})")
        if self.holds is None and not self.note:
            raise ValueError(f"claim {self.claim!r} is inconclusive: its note must say why it cannot be judged")
        if self.estimate is not None and not isinstance(self.estimate, Estimate):
            raise TypeError(f"Claim.estimate must be an evidence.Estimate or None, got {type(self.estimate).__name__}")

    def evidence(self) -> dict[str, str]:
        """The EVIDENCE columns of this row (provenance left for `record` to fill)."""
        e = self.estimate
        if e is None:
            return {name: "" for name in EVIDENCE} | {"device": self.device}
        return {
            "estimate": f"{e.value:.6g}",
            "ci_low": f"{e.low:.6g}",
            "ci_high": f"{e.high:.6g}",
            "unit": self.unit,
            "items": str(e.items),
            "sample": self.sample if e.items else "",
            "seeds": str(e.seeds),
            # an effect beyond the threshold by more than the interval's half-width would have been decided
            "detectable": f"{e.resolution:.3g}",
            "commit": "",
            "device": self.device,
            "versions": "",
        }


def load_ledger(profile: str) -> pd.DataFrame:
    """The profile's ledger (empty if it has never been run)."""
    path = figures_dir(profile) / "claims.csv"
    if not path.exists():
        return pd.DataFrame(columns=[*COLUMNS, *EVIDENCE])
    fix = f"restore it (`git checkout -- {path.name}` in its folder) or delete it to start this profile's ledger anew"
    try:
        ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable claims ledger ({type(err).__name__}); {fix}") from None
    if "figures" not in ledger.columns:  # ledgers written before claims named their figures
        ledger["figures"] = ""
    for name in EVIDENCE:  # ledgers written before rows carried their interval and provenance
        if name not in ledger.columns:
            ledger[name] = ""
    missing = set(COLUMNS) - set(ledger.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {list(COLUMNS)}; {fix}")
    unknown = set(ledger["holds"]) - {"True", "False", ""}
    if unknown:
        raise ValueError(f"{path}: column 'holds' has {sorted(unknown)}; expected True, False or empty (inconclusive)")
    ledger["holds"] = ledger["holds"].map({"True": True, "False": False, "": None}).astype(object)
    return ledger[[*COLUMNS, *EVIDENCE]]


def record(claims: list[Claim]) -> pd.DataFrame:
    """Upsert `claims` into their profile's ledger (CSV + Markdown, each written atomically, the whole update under a
    file lock so concurrent runs never lose rows) and return that whole ledger."""
    profiles = {c.profile for c in claims}
    if len(profiles) != 1:
        raise ValueError(f"record() takes the claims of one profile at a time, got {sorted(profiles) or 'none'}")
    (profile,) = profiles
    folder = figures_dir(profile)
    with FileLock(folder / ".claims.lock"):  # read-modify-write: concurrent runs must not drop each other's rows
        return _record(profile, claims, folder)


def _record(profile: str, claims: list[Claim], folder) -> pd.DataFrame:
    made = provenance()
    rows = []
    for c in claims:
        row = {name: getattr(c, name) for name in COLUMNS} | c.evidence()
        rows.append(row | {"figures": ";".join(c.figures), **{k: v for k, v in made.items() if not row.get(k)}})
    new = pd.DataFrame(rows, columns=[*COLUMNS, *EVIDENCE])
    old = load_ledger(profile)
    keep = old[~old.section.isin(set(new.section))]  # a section's rows are all replaced: none outlive its rerun
    ledger = pd.concat([keep, new], ignore_index=True) if len(keep) else new
    order = {s: i for i, s in enumerate(SECTIONS)}
    ledger = ledger.sort_values(
        ["section", "profile", "claim"], key=lambda c: c.map(order) if c.name == "section" else c
    )
    csv = ledger.assign(holds=ledger.holds.map({True: "True", False: "False", None: ""}))
    write_text(folder / "claims.csv", csv.to_csv(index=False, lineterminator="\n"))
    write_text(folder / "claims.md", f"# Claims ledger ({profile} profile)\n\n" + markdown_table(readable(ledger)))
    return ledger.reset_index(drop=True)


def provenance() -> dict[str, str]:
    """Where a row was made: the source commit, the device a section would pick, the packages that shape results."""
    import torch

    from edgetune.runs.schema import describe_device, package_versions, source_commit

    versions, commit = package_versions(), source_commit() or "unknown"
    return {
        "commit": commit[:12] + ("+dirty" if commit.endswith("+dirty") else ""),
        "device": describe_device("cuda" if torch.cuda.is_available() else "cpu"),
        "versions": " ".join(f"{k}={v}" for k, v in versions.items()),
    }


def interval(row) -> str:
    """'+1.0 [-1.4, +3.3] points (20 items, 1 seed)' for a row with an estimate; '' without one."""
    if not row.get("estimate"):
        return ""
    low, high, value = (float(row[k]) for k in ("ci_low", "ci_high", "estimate"))
    if low == high == value and str(row.get("items")) == "0":
        return f"{value:+,.6g} {row['unit']} (exact)".replace("  ", " ")
    sample = row.get("sample") or "items"
    seeds = "" if sample == "seeds" else f", {row['seeds']} seed{'s' if str(row['seeds']) != '1' else ''}"
    return f"{value:+.3g} [{low:+.3g}, {high:+.3g}] {row['unit']} ({row['items']} {sample}{seeds})".replace("  ", " ")


def readable(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger as a reader sees it: verdict words, the interval and detectable effect in one cell each, the
    commit and device; package versions stay in the CSV."""
    table = verdicts(ledger)
    table = table.assign(
        interval=[interval(r) for r in table.to_dict("records")],
        detectable=[f"±{d}" if d else "" for d in table.detectable],
    )
    keep = ["section", "claim", "paper_value", "reproduced_value", "profile", "holds", "interval", "detectable"]
    return table[[*keep, "note", "commit", "device"]].rename(columns={"holds": "verdict"})


def tally(holds: list[bool | None]) -> str:
    """'2/3' claims holding of those decided, with '(+1 inconclusive)' for those the profile cannot decide; '—' for
    none."""
    if not holds:
        return "—"
    judged = [h for h in holds if h is not None]
    extra = f" (+{len(holds) - len(judged)} inconclusive)" if len(judged) < len(holds) else ""
    return f"{sum(judged)}/{len(judged)}{extra}" if judged else f"{len(holds)} inconclusive"


def verdicts(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger with `holds` spelled as the reader sees it: holds, refuted or inconclusive."""
    return ledger.assign(holds=[VERDICTS[h] for h in ledger.holds])


def format_ledger(ledger: pd.DataFrame, width: int | None = None) -> str:
    """The ledger as Markdown; `width` shortens the free-text cells for a terminal."""
    if ledger.empty:
        return "The claims ledger is empty: run `edgetune reproduce` first."
    table = readable(ledger)
    if width:
        table = table.assign(**{c: table[c].map(lambda v: _clip(v, width)) for c in ("claim", "paper_value", "note")})
        table = table.assign(reproduced_value=table.reproduced_value.map(lambda v: _clip(v, 2 * width)))
    return markdown_table(table)


def publish(claims: list[Claim], section: str, device=None):
    """Record a section's claims in their profile's ledger and show its rows: the claims cell of every notebook.
    `device` (a torch device or a description) is where the section measured them; without it, the device this host
    would pick is recorded."""
    if device is not None:
        from edgetune.runs.schema import describe_device

        where = device if isinstance(device, str) else describe_device(device)
        claims = [c if c.device else dataclasses.replace(c, device=where) for c in claims]
    return show(record(claims), section)


def show(ledger: pd.DataFrame, section: str):
    """One section's rows as a rendered table in a notebook (plain Markdown text elsewhere)."""
    from IPython.display import Markdown

    rows = readable(ledger[ledger.section == section]).drop(columns=["section", "commit", "device"])
    return Markdown(markdown_table(rows))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
