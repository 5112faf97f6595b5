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


_NOT_SHIPPED = (".pyc", ".pyo", ".so", ".pyd", ".c", ".o")  # the C extensions are optional (numpy fallbacks)


def package_wheel(dst_dir: str | Path) -> Path:
    """A pure-Python wheel of the installed recsys (its .py files, no optional C extensions), written into
    ``dst_dir``: logged with the model so that its requirements install without recsys on any index.

    Byte for byte the same for the same code (sorted entries, fixed timestamps), so a logged wheel can be
    compared with this recsys's."""
    import base64
    import zipfile
    from importlib import metadata

    import recsys
    from recsys.version import __version__

    pkg = Path(recsys.__file__).resolve().parent
    files = sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in _NOT_SHIPPED)
    try:
        requires = metadata.requires("recsys") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requires = []
    info = f"recsys-{__version__}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: recsys\nVersion: {__version__}\nRequires-Python: >=3.11\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    entries = [(f"recsys/{p.relative_to(pkg).as_posix()}", p.read_bytes()) for p in files]
    entries += [(f"{info}/METADATA", meta.encode()),
                (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: recsys.tracking.model_code\n"
                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
                (f"{info}/entry_points.txt", b"[console_scripts]\nrecsys = recsys.cli:main\n")]
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in entries) + f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    out = Path(dst_dir) / f"recsys-{__version__}-py3-none-any.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return out
