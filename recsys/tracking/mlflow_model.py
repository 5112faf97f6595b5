"""Log a bundle as an MLflow pyfunc model, register it with an alias, and load it back without pickle.

>>> info = log_recommender("runs/demo/bundle", example, name="guess-you-like", alias="champion")  # doctest: +SKIP
>>> mlflow.pyfunc.load_model("models:/guess-you-like@champion").predict(example)                # doctest: +SKIP
>>> recsys.load("models:/guess-you-like@champion")        # the Recommender itself           # doctest: +SKIP

The model is built from code (:mod:`recsys.tracking.pyfunc_model`), its artifacts are the bundle directory
and recsys as a wheel (what its requirements.txt installs), and :func:`load_recommender` downloads the bundle and opens it with
:meth:`recsys.recommender.Recommender.load`; see the pyfunc module for why no pickle is involved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import ArtifactError
from recsys.tracking.promotion import CANDIDATE_ALIAS, decide, record_decision

__all__ = ["log_recommender", "load_recommender", "model_signature", "pip_requirements", "PYFUNC_CODE",
           "BUNDLE_ARTIFACT", "WHEEL_ARTIFACT", "quiet_downloads"]

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
BUNDLE_ARTIFACT = "bundle"
WHEEL_ARTIFACT = "recsys_wheel"  # the library itself, installed from the model by its requirements.txt
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "torch", "faiss-cpu", "safetensors", "scikit-learn")


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """Switch MLflow's artifact progress bars off for our own small transfers (unless the user chose)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def pip_requirements(wheel: str | None = None) -> list[str]:
    """The serving environment: recsys itself (``wheel``: the path of its wheel inside the logged model, which
    pip reads from the model's folder; None: ``recsys==<version>``, for an index that has it) and its
    dependencies pinned to the installed versions, without local labels (``torch==2.13.0+cpu`` is pinned
    ``torch==2.13.0``: no public index serves a ``+cpu`` version; take the CPU build from PyTorch's index)."""
    from packaging.version import InvalidVersion, Version

    from recsys.version import __version__

    out = [wheel or f"recsys=={__version__}"]
    for dist in _REQUIREMENTS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out.append(dist)
            continue
        try:
            version = Version(version).public
        except InvalidVersion:
            pass
        out.append(f"{dist}=={version}")
    return out


def _id_type(values: pd.Series) -> str:
    return "long" if pd.api.types.is_integer_dtype(values.dtype) else "string"


def model_signature(example: pd.DataFrame, output: pd.DataFrame):
    """Request schema (user_id required; k, media_id, exclude optional), the params schema
    (:data:`recsys.tracking.feeds.PARAMS`) and the feed schema of the default ``rows`` layout.

    The columns are declared ``any``: MLflow's own check would refuse "1279" or 1279.0 for a model with integer
    ids, and a ``long`` k that Spark fills with NaN where it is absent or null; the model reads every id by the
    same rule as the in-process Recommender (:func:`recsys.ids.coerce_id`) and checks the options itself
    (:mod:`recsys.tracking.feeds`), so both paths give the same feed and the same typed errors."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    from recsys.tracking.feeds import DEFAULT_K

    inputs = Schema([ColSpec(AnyType(), "user_id"), *(ColSpec(AnyType(), c, required=False)
                                                      for c in ("k", "media_id", "exclude"))])
    item_type = _id_type(output["item_id"]) if len(output) else "long"
    params = ParamSchema([ParamSpec("k", "long", DEFAULT_K), ParamSpec("media_id", "string", None),
                          ParamSpec("exclude", item_type, [], shape=(-1,)), ParamSpec("layout", "string", "rows")])
    types = {"request": "long", "user_id": _id_type(example["user_id"]), "media_id": "string", "rank": "long",
             "item_id": item_type, "score": "double", "pctr": "double",
             "pcvr": "double", "reason": "string", "reason_code": "string", "source": "string", "fallback": "string",
             "score_kind": "string"}
    optional = {"media_id", "fallback", "pctr", "pcvr", "reason", "reason_code"}
    outputs = Schema([ColSpec(types.get(c, "string"), c, required=c not in optional) for c in output.columns])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def log_recommender(bundle_dir: str | Path, example: pd.DataFrame, *, name: str | None = "guess-you-like",
                    alias: str | None = "champion", recommender: Any = None, artifact_name: str = "model",
                    champion_metric: str = "retrieval.recall_at_20", promote: bool = False) -> dict:
    """Log the bundle as a pyfunc model in the active run and register it as a new version of ``name`` (None:
    don't) with alias ``candidate``; ``alias`` (the champion) moves to it only if it is the first version, beats
    the champion on ``champion_metric`` (see :mod:`recsys.tracking.promotion`) or ``promote`` is true.

    ``recommender``: the loaded bundle, when the caller already has it (used for the output schema).
    Returns ``model_uri``, ``model_id`` and, when registered, ``registered_model``, ``version``, ``alias_uri``
    (this version by the alias it holds), ``champion_uri``, ``promoted``, ``champion_version`` and ``decision``.
    """
    import mlflow

    from recsys.recommender import Recommender
    from recsys.tracking.feeds import predict_feeds

    bundle_dir = Path(bundle_dir).resolve()  # a re-saved bundle is a symlink to its current version: log that
    rec = recommender if recommender is not None else Recommender.load(bundle_dir)
    from recsys.tracking.wheel import package_wheel

    output = predict_feeds(rec, example)
    with quiet_downloads(), tempfile.TemporaryDirectory(prefix="recsys-wheel-") as tmp:
        wheel = package_wheel(tmp)  # pip reads requirements.txt in the model's folder: the path is relative to it
        info = mlflow.pyfunc.log_model(
            name=artifact_name, python_model=str(PYFUNC_CODE),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir), WHEEL_ARTIFACT: str(wheel)},
            signature=model_signature(example, output), input_example=example,
            pip_requirements=pip_requirements(f"artifacts/{wheel.name}"), registered_model_name=name)
    out = {"model_uri": info.model_uri, "model_id": getattr(info, "model_id", None)}
    if name:
        version = str(info.registered_model_version)
        out.update(registered_model=name, version=version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
        out["alias_uri"] = f"models:/{name}@{CANDIDATE_ALIAS}"
        if alias:
            run_id = getattr(info, "run_id", None)
            decision = decide(client, name, alias, champion_metric, run_id, version=version, force=promote)
            record_decision(client, run_id, decision)
            if decision.promote:
                client.set_registered_model_alias(name, alias, version)
                out["alias_uri"] = f"models:/{name}@{alias}"
            out.update(champion_uri=f"models:/{name}@{alias}", promoted=decision.promote, decision=decision.message,
                       champion_version=version if decision.promote else decision.champion_version)
    return out


def _bundle_rel(mlmodel: Path) -> str:
    """The bundle artifact's path inside a logged model, as its MLmodel file names it (relative, checked)."""
    import yaml

    try:
        conf = yaml.safe_load(mlmodel.read_text()) or {}
        arts = (conf.get("flavors", {}).get("python_function", {}) or {}).get("artifacts", {}) or {}
        rel = (arts.get(BUNDLE_ARTIFACT) or {}).get("path")
    except (yaml.YAMLError, AttributeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mlmodel} is not a readable MLmodel file ({type(e).__name__}); re-log the model") from None
    if not rel or not isinstance(rel, str):
        raise ArtifactError(f"{mlmodel} names no '{BUNDLE_ARTIFACT}' artifact: this model was not logged by "
                            "recsys.tracking.log_recommender")
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArtifactError(f"{mlmodel}: the bundle path {rel!r} points outside the model; refusing to load")
    return "/".join(parts)


def _download_bundle(mlflow, uri: str, dst: Path) -> Path:
    """Download only the bundle of a logged model (never its Python code); a URI of a bundle itself works too."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(uri)
    mlmodel = _download_one(mlflow, repo, "MLmodel", dst)  # fetched by name: listing the folder would stat
    if mlmodel is None:                                     # (and download) whatever else lies there
        if _download_one(mlflow, repo, "manifest.json", dst / ".probe") is not None:  # the URI is the bundle itself
            (dst / "bundle").mkdir(parents=True, exist_ok=True)  # MLflow downloads into a folder that exists
            return Path(repo.download_artifacts("", str(dst / "bundle")))
        raise ArtifactError(f"{uri} holds no MLmodel file: the URI does not point at a logged model")
    return Path(repo.download_artifacts(_bundle_rel(mlmodel), str(dst)))


def _download_one(mlflow, repo, name: str, dst: Path) -> Path | None:
    """One top-level artifact file downloaded under ``dst``, or None when the artifact has no such file."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(repo.download_artifacts(name, str(dst)))
    except (OSError, mlflow.exceptions.MlflowException):
        return None
    return path if path.is_file() else None


_STORE_LOCK = threading.Lock()


@contextlib.contextmanager
def _store(mlflow, tracking_uri: str | None):
    """MLflow's tracking and registry URIs set to ``tracking_uri`` inside the block, restored after it."""
    if not tracking_uri:
        yield
        return
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # MLflow's setters also export these
    with _STORE_LOCK:
        env = {k: os.environ.get(k) for k in keys}
        tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        registry_set = env["MLFLOW_REGISTRY_URI"] is not None or registry != tracking  # else it follows tracking
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(tracking)
            mlflow.set_registry_uri(registry if registry_set else None)
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _local_store(uri: str) -> Path | None:
    """The file or folder of a local MLflow store URI (``sqlite:///x.db``, ``file:/x``, a bare path), else None."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("sqlite:///"):
        path = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
        return None if path in ("", ":memory:") else Path(path)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if uri in ("databricks", "databricks-uc", "uc"):  # MLflow's named stores, not folders
        return None
    return Path(uri) if parsed.scheme == "" or len(parsed.scheme) == 1 else None  # c:\ is a path


def _check_store_exists(mlflow, uri: str, tracking_uri: str | None) -> None:
    """Refuse to read from a local store that is not there: MLflow would create an empty one (in the working
    directory, for its default ``sqlite:///mlflow.db``) just to say the model is missing."""
    stores = {tracking_uri} if tracking_uri else {mlflow.get_tracking_uri(), mlflow.get_registry_uri()}
    for store in sorted(s for s in stores if s):
        path = _local_store(store)
        if path is not None and not path.exists():
            where = "" if tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") else " (MLflow's default store)"
            raise ArtifactError(f"cannot load {uri!r}: there is no MLflow store at {path.resolve()}{where}. Point "
                                "MLFLOW_TRACKING_URI at the store that holds the model (for example "
                                "sqlite:////abs/path/mlflow.db) or pass tracking_uri=...; nothing was created")


def load_recommender(uri: str, *, tracking_uri: str | None = None, key: str | bytes | None = None):
    """``recsys.load`` for ``models:/``, ``runs:/`` and ``mlflow-artifacts:/`` URIs: download, verify, load.

    Only the MLmodel file (parsed as YAML data) and the bundle are downloaded; the model's logged Python code
    is neither downloaded nor run. ``key`` (else ``$RECSYS_BUNDLE_KEY``): require the bundle's signature.

    The store is ``tracking_uri``, else MLflow's current one (``$MLFLOW_TRACKING_URI`` or ./mlflow.db); a
    local store that does not exist is an :class:`ArtifactError` (loading never creates one).
    MLflow resolves a registered model's alias or version from its process-wide registry URI only, so
    with ``tracking_uri`` both URIs point at that store during the download and are restored after it
    (calls here are serialised; other threads using MLflow at that moment would see the switch).
    """
    try:
        import mlflow
    except ImportError as e:
        from recsys.errors import MissingDependencyError

        raise MissingDependencyError(f"loading {uri!r} needs mlflow: pip install 'mlflow>=3'") from e
    from recsys.recommender import Recommender

    _check_store_exists(mlflow, uri, tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-mlflow-"))
    try:
        try:
            with quiet_downloads(), _store(mlflow, tracking_uri):
                local = _download_bundle(mlflow, uri, tmp)
        except mlflow.exceptions.MlflowException as e:
            raise ArtifactError(f"cannot resolve {uri!r} in the MLflow store {tracking_uri or mlflow.get_tracking_uri()}: "
                                f"{e.message}. Check the model name and alias (mlflow ui lists them) or set "
                                "MLFLOW_TRACKING_URI to the store that holds it") from None
        return Recommender.load(local, key=key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
