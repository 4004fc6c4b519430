"""Shared test fixtures: where the real EHR documents in ../shared/data live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _shared_data() -> Path:
    env = os.environ.get("RAGEHR_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the clone (or ``$RAGEHR_SHARED_DATA``). CI always has it, so
    there its absence fails; elsewhere the tests that need it are skipped with a reason."""
    d = _shared_data()
    if not d.is_dir():
        msg = f"shared data not found at {d} (set RAGEHR_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d
