"""recsys.load of an MLflow URI that points straight at a bundle (not at a logged model): the bundle is downloaded
into a folder that exists and loads (it used to fail with "destination path ... does not exist")."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from tests.conftest import temporary_mlflow_store  # noqa: E402
from tests.test_service_support import V1  # noqa: E402


def test_runs_uri_of_a_bundle_loads(tmp_path: Path) -> None:
    import mlflow

    import recsys

    with temporary_mlflow_store(tmp_path, "bundle-uri"):
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(V1), artifact_path="just_a_bundle")
        rec = recsys.load(f"runs:/{run.info.run_id}/just_a_bundle")
        want = recsys.load(V1)
        assert rec.bundle_manifest_ == want.bundle_manifest_  # the same bundle, every checksum verified on load
        assert rec.recommend(18, k=5, media_id="guide-0").item_ids == want.recommend(18, k=5, media_id="guide-0").item_ids
