"""The claims ledger: each section registers the papers' headline claims it tests, with what it measured.

Rows live in `figures/claims.csv` (and a rendered `figures/claims.md`), keyed by (section, claim, profile): a
rerun replaces its own rows and keeps every other. A claim that does not hold at a profile's scale is recorded as
not holding — the ledger reports, it never tunes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from edgetune.figures import markdown_table
from edgetune.paths import SECTIONS, figures_dir
from edgetune.runs.io import write_text

COLUMNS = ("section", "claim", "paper_value", "reproduced_value", "profile", "holds", "note")
KEY = ["section", "claim", "profile"]


@dataclass(frozen=True)
class Claim:
    """One tested claim. `paper_value` and `reproduced_value` are short human-readable strings."""

    section: str
    claim: str
    paper_value: str
    reproduced_value: str
    profile: str
    holds: bool
    note: str = ""

    def __post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"Claim.section={self.section!r}; expected one of {SECTIONS}")
        if not isinstance(self.holds, bool):
            raise TypeError(f"Claim.holds must be a bool, got {type(self.holds).__name__} ({self.holds!r})")


def load_ledger() -> pd.DataFrame:
    path = figures_dir() / "claims.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(COLUMNS) - set(ledger.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {list(COLUMNS)}")
    ledger["holds"] = ledger["holds"].map({"True": True, "False": False})
    return ledger[list(COLUMNS)]


def record(claims: list[Claim]) -> pd.DataFrame:
    """Upsert `claims` into the ledger (CSV + Markdown, atomically) and return the whole ledger."""
    new = pd.DataFrame([dataclasses.asdict(c) for c in claims], columns=list(COLUMNS))
    old = load_ledger()
    keys = set(map(tuple, new[KEY].itertuples(index=False)))
    keep = old[[tuple(r) not in keys for r in old[KEY].itertuples(index=False)]] if len(old) else old
    ledger = pd.concat([keep, new], ignore_index=True) if len(keep) else new
    order = {s: i for i, s in enumerate(SECTIONS)}
    ledger = ledger.sort_values(
        ["section", "profile", "claim"], key=lambda c: c.map(order) if c.name == "section" else c
    )
    folder = figures_dir()
    write_text(folder / "claims.csv", ledger.to_csv(index=False, lineterminator="\n"))
    write_text(
        folder / "claims.md", "# Claims ledger\n\n" + markdown_table(ledger.assign(holds=ledger.holds.map(_mark)))
    )
    return ledger.reset_index(drop=True)


def _mark(holds: bool) -> str:
    return "yes" if holds else "NO"


def format_ledger(ledger: pd.DataFrame | None = None) -> str:
    """The ledger as Markdown, for printing at the end of a reproduction."""
    ledger = load_ledger() if ledger is None else ledger
    if ledger.empty:
        return "The claims ledger is empty: run `edgetune reproduce` first."
    return markdown_table(ledger.assign(holds=ledger.holds.map(_mark)))
