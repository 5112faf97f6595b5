"""Shared fixtures: quiet progress bars, a seeded RNG, and the shared real-data directory (or a skip)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def temporary_mlflow_store(root: Path, experiment: str):
    """A real SQLite MLflow store under ``root`` as the tracking and registry URI, with a fresh experiment whose
    artifacts go to ``root / "art"``; yields the URI and restores the previous URIs after."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment(experiment, artifact_location=str(root / "art")))
        yield uri
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
