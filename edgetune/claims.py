"""The claims ledger: each section registers the papers' headline claims it tests, with what it measured.

Each profile has its own ledger, `figures/<profile>/claims.csv` (and a rendered `claims.md`): a section's rerun
replaces all of that section's rows and keeps the other sections'. A claim that does not hold at a profile's scale is
recorded as not holding — the ledger reports, it never tunes. A claim the profile cannot judge (a spread across
seeds with one seed) is recorded as n/a, with the reason in its note. Each row names the section's figures that bear
on it, so the reproduction report can show them beside the verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
from filelock import FileLock

from edgetune.figures import markdown_table
from edgetune.paths import SECTIONS, figures_dir
from edgetune.profiles import PROFILES, check_label
from edgetune.runs.io import write_text

COLUMNS = ("section", "claim", "paper_value", "reproduced_value", "profile", "holds", "note", "figures")
VERDICTS = {True: "yes", False: "NO", None: "n/a"}


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
            raise ValueError(f"claim {self.claim!r} is n/a: its note must say why it cannot be judged")


def load_ledger(profile: str) -> pd.DataFrame:
    """The profile's ledger (empty if it has never been run)."""
    path = figures_dir(profile) / "claims.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    fix = f"restore it (`git checkout -- {path.name}` in its folder) or delete it to start this profile's ledger anew"
    try:
        ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable claims ledger ({type(err).__name__}); {fix}") from None
    if "figures" not in ledger.columns:  # ledgers written before claims named their figures
        ledger["figures"] = ""
    missing = set(COLUMNS) - set(ledger.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {list(COLUMNS)}; {fix}")
    unknown = set(ledger["holds"]) - {"True", "False", ""}
    if unknown:
        raise ValueError(f"{path}: column 'holds' has {sorted(unknown)}; expected True, False or empty (n/a)")
    ledger["holds"] = ledger["holds"].map({"True": True, "False": False, "": None}).astype(object)
    return ledger[list(COLUMNS)]


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
    new = pd.DataFrame(
        [{**dataclasses.asdict(c), "figures": ";".join(c.figures)} for c in claims], columns=list(COLUMNS)
    )
    old = load_ledger(profile)
    keep = old[~old.section.isin(set(new.section))]  # a section's rows are all replaced: none outlive its rerun
    ledger = pd.concat([keep, new], ignore_index=True) if len(keep) else new
    order = {s: i for i, s in enumerate(SECTIONS)}
    ledger = ledger.sort_values(
        ["section", "profile", "claim"], key=lambda c: c.map(order) if c.name == "section" else c
    )
    csv = ledger.assign(holds=ledger.holds.map({True: "True", False: "False", None: ""}))
    write_text(folder / "claims.csv", csv.to_csv(index=False, lineterminator="\n"))
    write_text(
        folder / "claims.md",
        f"# Claims ledger ({profile} profile)\n\n" + markdown_table(verdicts(ledger).drop(columns="figures")),
    )
    return ledger.reset_index(drop=True)


def tally(holds: list[bool | None]) -> str:
    """'2/3' claims holding of those judged, with '(+1 n/a)' for those the profile cannot judge; '—' for none."""
    if not holds:
        return "—"
    judged = [h for h in holds if h is not None]
    extra = f" (+{len(holds) - len(judged)} n/a)" if len(judged) < len(holds) else ""
    return f"{sum(judged)}/{len(judged)}{extra}" if judged else f"{len(holds)} n/a"


def verdicts(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger with `holds` spelled as the reader sees it: yes, NO or n/a."""
    return ledger.assign(holds=[VERDICTS[h] for h in ledger.holds])


def format_ledger(ledger: pd.DataFrame, width: int | None = None) -> str:
    """The ledger as Markdown; `width` shortens the free-text cells for a terminal."""
    if ledger.empty:
        return "The claims ledger is empty: run `edgetune reproduce` first."
    table = verdicts(ledger).drop(columns="figures")
    if width:
        table = table.assign(**{c: table[c].map(lambda v: _clip(v, width)) for c in ("claim", "paper_value", "note")})
        table = table.assign(reproduced_value=table.reproduced_value.map(lambda v: _clip(v, 2 * width)))
    return markdown_table(table)


def publish(claims: list[Claim], section: str):
    """Record a section's claims in their profile's ledger and show its rows: the claims cell of every notebook."""
    return show(record(claims), section)


def show(ledger: pd.DataFrame, section: str):
    """One section's rows as a rendered table in a notebook (plain Markdown text elsewhere)."""
    from IPython.display import Markdown

    rows = verdicts(ledger[ledger.section == section]).drop(columns=["section", "figures"])
    return Markdown(markdown_table(rows.rename(columns={"holds": "holds?"})))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
