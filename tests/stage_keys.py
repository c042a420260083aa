"""One check for every section's stage-key tests: changing a field a cached stage reads (itself or through the stage
it builds on) gives a new key, changing any other field keeps the key."""

from __future__ import annotations

import dataclasses

from edgetune.runs.cache import config_hash


def assert_keyed_by_reads(base, changes: dict, reads: dict[str, tuple[tuple[str, ...], set[str]]]) -> None:
    """`reads`: stage → (the fields its key holds, the names among `changes` it reads)."""
    for stage, (fields, read) in reads.items():
        key = config_hash(base.subset(*fields))
        for name, value in changes.items():
            changed = config_hash(dataclasses.replace(base, **{name: value}).subset(*fields))
            assert (changed != key) == (name in read), f"{stage}: {name}"
