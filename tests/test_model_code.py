"""The logged pyfunc_model.py is the one file of a logged model that runs: an edit to it in the artifact store
is refused before it runs by load_pyfunc, refused by load_context after it ran, and recsys.load of the model
URI neither downloads nor runs it (issue 16 item 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import ArtifactError
from tests.conftest import temporary_mlflow_store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bundles" / "v1"
# with partners: the v1 bundle's pools are restricted, so its default no_partner="auto" refuses media_id=None
REQUESTS = pd.DataFrame({"user_id": [0, 5, 10**9], "k": [3, 3, 3], "media_id": ["guide-0", "app-0", "guide-0"]})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite store with the v1 fixture bundle logged twice: as it was logged, and with a marker line
    appended to its pyfunc_model.py in the artifact store."""
    import mlflow

    from recsys.tracking.mlflow_model import log_recommender

    root = tmp_path_factory.mktemp("store")
    with temporary_mlflow_store(root, "trust") as uri:
        logged = {}
        for name in ("clean", "edited"):
            with mlflow.start_run():
                logged[name] = log_recommender(FIXTURE, REQUESTS, name=f"gyl-{name}", alias="champion")
        code = [p for p in (root / "art").rglob("pyfunc_model.py")]
        assert len(code) == 2
        marker = root / "marker"
        edited = next(p for p in code if logged["edited"]["model_id"] in str(p))
        with open(edited, "a") as fh:  # what someone with write access to the store can do
            fh.write(f"\nopen({str(marker)!r}, 'w').write('ran')\n")
        yield uri, marker

def test_recsys_load_of_a_model_uri_downloads_and_runs_no_logged_code(store):
    import recsys
    from recsys.tracking.mlflow_model import load_recommender

    uri, marker = store
    marker.unlink(missing_ok=True)
    code = next(p for p in Path(uri[len("sqlite:///"):]).parent.rglob("pyfunc_model.py") if "ran" in p.read_text())
    unreadable = code.with_name("unreadable.bin")
    unreadable.symlink_to(code.parent / "nowhere")  # any download of more than the bundle would fail on it
    try:
        rec = load_recommender("models:/gyl-edited@champion", tracking_uri=uri)
    finally:
        unreadable.unlink()
    assert rec.info["items"] == 100 and not marker.exists()
    assert recsys.load("models:/gyl-clean@champion").info["items"] == 100


def test_load_pyfunc_refuses_edited_code_before_it_runs(store):
    from recsys.tracking.model_code import load_pyfunc

    uri, marker = store
    marker.unlink(missing_ok=True)
    with pytest.raises(ArtifactError, match="differs from the pyfunc_model.py of this recsys"):
        load_pyfunc("models:/gyl-edited@champion", tracking_uri=uri)
    assert not marker.exists()
    model = load_pyfunc("models:/gyl-clean@champion", tracking_uri=uri)
    assert len(model.predict(REQUESTS)) == 9


def test_mlflow_load_model_runs_the_logged_code_and_load_context_then_refuses_it(store):
    """What plain mlflow.pyfunc.load_model does with an edited model: the edit has run before any check."""
    import mlflow

    uri, marker = store
    marker.unlink(missing_ok=True)
    with pytest.raises(Exception, match="differs from the pyfunc_model.py of the installed recsys"):
        mlflow.pyfunc.load_model("models:/gyl-edited@champion")
    assert marker.read_text() == "ran"


def test_check_model_code_refuses_an_mlmodel_that_loads_other_code(tmp_path):
    import yaml

    from recsys.tracking.mlflow_model import PYFUNC_CODE
    from recsys.tracking.model_code import check_model_code

    model = tmp_path / "m"
    model.mkdir()
    shutil.copy(PYFUNC_CODE, model / "pyfunc_model.py")
    flavor = {"loader_module": "mlflow.pyfunc.loaders.code_model", "code": None,
              "model_code_path": "/somewhere/pyfunc_model.py"}
    (model / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": flavor}}))
    check_model_code(model)
    for change in ({"loader_module": "mlflow.pyfunc.model"}, {"code": "code"}, {"model_code_path": "evil.py"}):
        (model / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": {**flavor, **change}}}))
        with pytest.raises(ArtifactError, match="refusing to run it"):
            check_model_code(model)


def test_logged_requirements_install_on_their_own(store, tmp_path):
    """Issue 18: no `recsys==0.1.0` (on no index) and no local `+cpu` pins; recsys ships as a wheel inside the
    model, named by a path relative to the model folder (where MLflow runs pip), and that wheel installs."""
    import subprocess
    import sys

    import yaml

    from recsys.tracking.mlflow_model import PYFUNC_CODE
    from recsys.tracking.model_code import package_wheel

    uri, _ = store
    model = next(p.parent for p in Path(uri[len("sqlite:///"):]).parent.rglob("MLmodel")
                 if (p.parent / "pyfunc_model.py").read_bytes() == PYFUNC_CODE.read_bytes())  # the clean one
    reqs = (model / "requirements.txt").read_text().split()
    conda = yaml.safe_load((model / "conda.yaml").read_text())
    pip_in_conda = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    for listing in (reqs, pip_in_conda):
        assert not [r for r in listing if r.startswith("recsys==") or "+" in r], listing
        assert listing[0] == "artifacts/recsys-0.1.0-py3-none-any.whl"
        assert any(r.startswith("torch==") for r in listing) and any(r.startswith("mlflow==") for r in listing)
    conf = yaml.safe_load((model / "MLmodel").read_text())
    assert conf["flavors"]["python_function"]["artifacts"]["recsys_wheel"]["path"] == reqs[0]
    wheel = model / reqs[0]
    assert wheel.read_bytes() == package_wheel(tmp_path / "again").read_bytes()  # reproducible, this recsys
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, timeout=120)
    assert (target / "recsys" / "tracking" / "pyfunc_model.py").read_bytes() == PYFUNC_CODE.read_bytes()
    assert not list(target.rglob("*.so"))  # pure Python: the C extensions are optional
    code = "import recsys, recsys.tracking.feeds; print(recsys.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == str(target / "recsys" / "__init__.py")
