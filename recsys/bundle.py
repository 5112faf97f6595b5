"""The saved form of a Recommender: a bundle directory that loads without pickle and refuses tampering.

Layout (format version 1)::

    manifest.json                format, format_version, created_at, library and dependency versions,
                                 training_data_hash, components, and per file: bytes + sha256
    recommender.json             serving settings (rules, candidates, objective, cold start), the ranker
                                 feature builder's settings, id kinds, partners whose pool is the whole
                                 catalogue (``open_pools``: items added without pool rows join them)
    pipeline.json                the fitted feature pipeline (vocabularies, buckets) as JSON
    model/config.json            two-tower architecture (JSON) ...
    model/model.safetensors      ... and weights (safetensors)
    index/                       the item index, saved by the retrieval package (its own manifest)
    ranker/                      ranker.json, calibration.json and arrays as safetensors (optional)
    item_embeddings.safetensors  item-tower embeddings by catalogue position
    tables/*.parquet             items (+ removed flags), serving events, users, social edges, media
                                 partners, partner pools, popularity

:func:`save_bundle` writes everything into a temporary sibling directory, fsyncs it, then renames
it into place, so a reader never sees half a bundle. :func:`load_bundle` first checks the manifest
and the size and sha256 of every file (and that no file was added), and only then parses anything;
a tampered, truncated, incompatible or incomplete bundle raises :class:`~recsys.errors.ArtifactError`
naming the file and the fix. :func:`load` also takes MLflow model URIs (``models:/``, ``runs:/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import time
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import ArtifactError

__all__ = ["FORMAT", "FORMAT_VERSION", "MLFLOW_SCHEMES", "save_bundle", "load_bundle", "load", "verify_bundle",
           "data_hash", "read_bundle_manifest"]

FORMAT = "recsys.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
DEPENDENCIES = ("numpy", "pandas", "pyarrow", "torch", "faiss-cpu", "safetensors", "scikit-learn", "scipy")
DEFAULT_MAX_BYTES = 16 * 2**30


def data_hash(tables: Mapping[str, pd.DataFrame | None]) -> str:
    """A stable sha256 of training tables (names, columns and every value), for the manifest and tracking."""
    h = hashlib.sha256()
    for name in sorted(tables):
        df = tables[name]
        if df is None:
            continue
        h.update(name.encode())
        h.update(json.dumps([[str(c), str(df[c].dtype)] for c in df.columns]).encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in DEPENDENCIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        try:
            fd = os.open(d, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _follow_umask(root: Path) -> None:
    """Give every file and folder under ``root`` the modes the umask allows (0644 / 0755 under umask 022).

    Some writers (safetensors, ``tempfile``) create 0600 files or 0700 folders that a service account
    reading the bundle cannot open. ``root`` was made by ``mkdir``, so its own mode is 0777 less the umask:
    reading it gives the umask without ``os.umask``'s set-and-restore (which would race other threads).
    """
    folder = stat.S_IMODE(root.stat().st_mode)
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, folder if p.is_dir() else folder & 0o666)


def save_bundle(recommender: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``recommender`` as a bundle directory at ``path`` (atomically); returns the path."""
    from recsys import __version__
    from recsys.serve.bundle_io import write_components

    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path} already exists; pass overwrite=True to replace it, or choose a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        components = write_components(recommender, tmp)
        _follow_umask(tmp)
        files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "library": {"recsys": __version__}, "dependencies": _versions(),
                    "training_data_hash": getattr(recommender, "training_data_hash_", None),
                    "components": components, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync_tree(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_bundle_manifest(path: str | Path) -> dict:
    """The parsed manifest of a bundle, with format checks (no file is verified or parsed beyond it)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a bundle directory (it does not exist or is a file); pass the "
                            "directory written by Recommender.save(path)")
    mf = path / MANIFEST
    if not mf.is_file():
        raise ArtifactError(f"{mf} is missing: {path} is not a complete recsys bundle; re-save it with "
                            "Recommender.save(path)")
    try:
        manifest = json.loads(mf.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mf} is not valid JSON ({e}); the bundle is corrupt: restore it or re-save it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mf} does not describe a recsys bundle (format {manifest.get('format')!r} "
                            f"if a dict, expected {FORMAT!r})" if isinstance(manifest, dict) else
                            f"{mf} does not describe a recsys bundle (expected a JSON object)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{mf}: bundle format_version {version!r} is newer than this recsys reads "
                            f"({FORMAT_VERSION}); upgrade recsys (pip install -U recsys) to load it")
    if version < 1:
        raise ArtifactError(f"{mf}: bundle format_version {version!r} is not supported (expected 1..{FORMAT_VERSION})")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise ArtifactError(f"{mf} lists no files; the manifest is damaged: re-save the bundle")
    return manifest


def verify_bundle(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Check every file's presence, size and sha256 against the manifest, and that none was added."""
    path = Path(path)
    manifest = read_bundle_manifest(path)
    files = manifest["files"]
    total = sum(int(f.get("bytes", 0)) for f in files.values())
    if total > max_bytes:
        raise ArtifactError(f"{path}: the manifest lists {total:,} bytes, above max_bytes={max_bytes:,}; pass a "
                            "larger max_bytes if this bundle is trusted")
    fix = "the bundle was modified or damaged after it was saved: restore it from its source or re-save it"
    for name, meta in sorted(files.items()):
        f = (path / name).resolve()
        if path.resolve() not in f.parents:
            raise ArtifactError(f"{path / MANIFEST}: file entry {name!r} points outside the bundle; refusing to load")
        if not f.is_file():
            raise ArtifactError(f"{path / name} is missing; {fix}")
        if f.stat().st_size != meta.get("bytes"):
            raise ArtifactError(f"{path / name} has {f.stat().st_size:,} bytes, the manifest says "
                                f"{meta.get('bytes')!r}; {fix}")
        if _sha256(f) != meta.get("sha256"):
            raise ArtifactError(f"{path / name} fails its sha256 checksum (manifest {str(meta.get('sha256'))[:12]}...); "
                                f"{fix}")
    extra = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                   if p.is_file() and p.relative_to(path).as_posix() not in files and p.name != MANIFEST)
    if extra:
        raise ArtifactError(f"{path / extra[0]} is not listed in the manifest ({len(extra)} unlisted file(s)); {fix}")
    return manifest


def load_bundle(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES):
    """Verify, then load a bundle into a ready :class:`~recsys.recommender.Recommender` (no pickle)."""
    from recsys.serve.bundle_io import read_components

    manifest = verify_bundle(path, max_bytes=max_bytes)
    rec = read_components(Path(path), manifest)
    rec.training_data_hash_ = manifest.get("training_data_hash")
    rec.bundle_manifest_ = manifest
    return rec


def load_mlflow_uri(uri: str):
    """Resolve a ``models:/``, ``runs:/`` or ``mlflow-artifacts:/`` URI to its bundle and load it (no pickle)."""
    from recsys.tracking.mlflow_model import load_recommender

    return load_recommender(uri)


def load(uri: str | os.PathLike):
    """``recsys.load``: a bundle directory (path or ``file://`` URI) or an MLflow model URI."""
    if not isinstance(uri, (str, os.PathLike)):
        raise ArtifactError(f"recsys.load takes a bundle path or a model URI, got {type(uri).__name__}")
    s = os.fspath(uri)
    if s.startswith(MLFLOW_SCHEMES):
        return load_mlflow_uri(s)
    if s.startswith("file://"):
        from urllib.parse import unquote, urlparse

        s = unquote(urlparse(s).path)
    return load_bundle(s)
