"""Shared fixtures: quiet progress bars, a seeded RNG, and the shared real-data directory (or a skip)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("CI", "true")  # progress bars stay quiet in tests

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared real-data directory, or None when it is absent (tests that need it then skip)."""
    env = os.environ.get("RECSYS_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (set RECSYS_SHARED_DATA to its location to run this test)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
