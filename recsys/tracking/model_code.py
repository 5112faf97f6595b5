"""The one file of a logged model that runs: its Python code, checked before MLflow runs it.

``mlflow.pyfunc.load_model(uri)`` (and ``mlflow models serve``) imports the model's logged
``pyfunc_model.py`` from the artifact store, so whoever can write the store can make loading run
anything, before any check inside that file can run. The bundle's checksums and signature do not
cover it. :func:`load_pyfunc` closes that path: it downloads the model, checks that its MLmodel loads
it as code from ``pyfunc_model.py`` with no extra code paths and that the file is byte for byte the one
this recsys ships (sha256), and only then hands that verified local copy to MLflow.
``recsys.load("models:/...")`` never downloads or runs the file (it reads MLmodel as YAML data and the
bundle). The model's own ``load_context`` repeats the comparison, which catches a model logged by
another recsys version, but cannot stop code that was changed on purpose (that code runs first).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from recsys.errors import ArtifactError
from recsys.tracking.wheel import package_wheel

__all__ = ["CODE_FILE", "code_sha256", "check_model_code", "load_pyfunc", "package_wheel"]

CODE_FILE = "pyfunc_model.py"
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"


def code_sha256(path: str | Path | None = None) -> str:
    """sha256 of ``path``, by default of the ``pyfunc_model.py`` this recsys ships."""
    from recsys.tracking.mlflow_model import PYFUNC_CODE

    return hashlib.sha256(Path(path or PYFUNC_CODE).read_bytes()).hexdigest()


def check_model_code(model_dir: str | Path) -> None:
    """Refuse a downloaded model whose code is not exactly this recsys's ``pyfunc_model.py``, loaded as code."""
    import yaml

    model_dir = Path(model_dir)
    try:
        conf = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
        flavor = conf["flavors"]["python_function"]
        loader, extra, code_path = flavor.get("loader_module"), flavor.get("code"), flavor.get("model_code_path")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{model_dir / 'MLmodel'} is missing or not a python_function MLmodel "
                            f"({type(e).__name__}: {e}); re-log the model with recsys.tracking.log_recommender") from None
    name = Path(str(code_path)).name
    if loader != CODE_LOADER or extra or name != CODE_FILE:
        raise ArtifactError(f"{model_dir / 'MLmodel'} loads {loader!r} with code {extra!r} from {code_path!r}, "
                            f"expected {CODE_LOADER!r} from {CODE_FILE} and no code paths: it was not logged by "
                            "recsys.tracking.log_recommender or was edited; refusing to run it")
    logged = model_dir / CODE_FILE
    if not logged.is_file() or logged.is_symlink():
        raise ArtifactError(f"{logged} is missing: the model is incomplete; re-log it")
    if code_sha256(logged) != code_sha256():
        raise ArtifactError(f"{logged} differs from the {CODE_FILE} of this recsys (sha256 {code_sha256(logged)[:12]}... "
                            f"vs {code_sha256()[:12]}...): it was edited in the artifact store or logged by another "
                            "recsys version; refusing to run it. Re-log the model with this recsys, or serve the "
                            "bundle with recsys.load(uri), which runs no logged code")


def load_pyfunc(uri: str, *, tracking_uri: str | None = None):
    """``mlflow.pyfunc.load_model`` for a recsys model, run only after :func:`check_model_code` passed."""
    import mlflow

    from recsys.tracking.mlflow_model import _check_store_exists, _store, quiet_downloads

    _check_store_exists(mlflow, uri, tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-pyfunc-"))
    try:
        try:
            with quiet_downloads(), _store(mlflow, tracking_uri):
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp)))
        except mlflow.exceptions.MlflowException as e:
            raise ArtifactError(f"cannot resolve {uri!r} in the MLflow store: {e.message}") from None
        check_model_code(local)
        return mlflow.pyfunc.load_model(str(local))  # load_context reads the bundle into memory here
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
