"""Shared test setup: every test writes figures, the ledger and the cache under its own temporary folder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Redirect figures/ and runs/ so tests never touch the committed figures or the user's cache."""
    monkeypatch.setenv("EDGETUNE_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))  # the CLI registers its kernel here, not in ~
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
