"""The service follows an MLflow registry alias (a real SQLite store): the poller swaps to the version the alias
moves to, the admin reload does it at once, and a corrupted version the alias points at is refused while the
last good one serves on (and the poller does not retry it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
mlflow = pytest.importorskip("mlflow")

from fastapi.testclient import TestClient  # noqa: E402

from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.conftest import temporary_mlflow_store  # noqa: E402
from tests.test_service_support import ADMIN, GUIDE0, V1, auth, corrupt_copy, make_v2  # noqa: E402

KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0}})
_MLMODEL = "flavors:\n  python_function:\n    artifacts:\n      bundle:\n        path: artifacts/bundle\n"


def _register(client, root: Path, name: str, bundle: Path) -> str:
    """A registered version whose model folder holds an MLmodel naming its bundle, as log_recommender lays it out
    (without the pyfunc code, which loading neither downloads nor runs)."""
    model = root / f"model-{bundle.name}"
    shutil.copytree(bundle, model / "artifacts" / "bundle")
    (model / "MLmodel").write_text(_MLMODEL)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model), artifact_path="model")
    return str(client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def _wait_version(c: TestClient, version: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    current = c.get("/readyz").json()["model_version"]
    while current != version and time.monotonic() < deadline:
        time.sleep(0.1)
        current = c.get("/readyz").json()["model_version"]
    return current


def test_follows_the_alias(tmp_path: Path) -> None:
    with temporary_mlflow_store(tmp_path, "service") as _:
        client = mlflow.MlflowClient()
        client.create_registered_model("gyl")
        v2_dir = make_v2(tmp_path / "v2")
        versions = [_register(client, tmp_path, "gyl", b) for b in (V1, v2_dir, corrupt_copy(v2_dir, tmp_path / "bad"))]
        assert versions == ["1", "2", "3"]
        client.set_registered_model_alias("gyl", "champion", "1")
        app = create_app(ServiceSettings(model="models:/gyl@champion", poll_seconds=0.2), keys=KEYS)
        req = {"user_id": 18, "media_id": "guide-0", "k": 3}
        with TestClient(app) as c:
            assert c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()["model_version"] == "1"
            client.set_registered_model_alias("gyl", "champion", "2")
            assert _wait_version(c, "2") == "2"  # the poller saw the alias move
            assert c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()["model_version"] == "2"
            status = c.get("/v1/model", headers=auth(ADMIN)).json()
            assert status["model_uri"] == "models:/gyl/2" and status["last_reload"]["previous"] == "1"

            client.set_registered_model_alias("gyl", "champion", "3")  # a corrupted version
            refused = c.post("/v1/admin/reload", json={}, headers=auth(ADMIN))
            assert refused.status_code == 409 and refused.json()["version"] == "3"
            time.sleep(0.6)  # a few polls: the refused version is not retried, 2 serves on
            status = c.get("/v1/model", headers=auth(ADMIN)).json()
            assert status["model_version"] == "2" and "3" in status["refused_versions"]
            assert c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()["model_version"] == "2"

            client.set_registered_model_alias("gyl", "champion", "1")  # a rollback is a swap like any other
            assert _wait_version(c, "1") == "1"
