"""One check for every section's stage-key tests: changing a field a cached stage reads (itself or through the stage
it builds on) gives a new key, changing any other field keeps the key."""

from __future__ import annotations

import copy
import dataclasses


def bumped(config, name: str):
    """A copy of `config` with field `name` changed (validation bypassed: a key only reads the values)."""
    value = getattr(config, name)
    if isinstance(value, bool):
        new = not value
    elif isinstance(value, int):
        new = value + 1
    elif isinstance(value, float):
        new = value * 2 + 0.5
    elif isinstance(value, str):
        new = value + "-other"
    elif isinstance(value, tuple):
        new = (*value, value[-1] if value else 1)
    elif value is None:
        new = 1
    else:
        raise TypeError(f"no rule to change {name}={value!r}")
    other = copy.copy(config)
    object.__setattr__(other, name, new)
    return other


def assert_keyed_by_reads(base, stages, expected: dict[str, set[str]], unread: set[str]) -> None:
    """Every field of `base`, changed alone, changes a stage's key exactly when the stage or a stage it starts from
    reads it. Written out by hand, so that a field dropped from or added to a stage's reads is caught too:
    `expected` (stage name → fields that must key it) and `unread` (fields that key none of `stages`)."""
    for stage in stages:
        key = stage.folder_name(base)
        changing = {f.name for f in dataclasses.fields(base) if stage.folder_name(bumped(base, f.name)) != key}
        assert changing == stage.fields(), f"{stage.name}: {sorted(changing ^ stage.fields())}"
        missing = expected.get(stage.name, set()) - changing
        assert not missing, f"{stage.name} is not keyed by {sorted(missing)}"
        assert not changing & unread, f"{stage.name} is keyed by {sorted(changing & unread)}"
        assert "device" not in changing, stage.name
