"""The bundle format: a directory that loads without pickle and refuses tampering (the saved form of a Recommender).

This module knows files, manifests, checksums and signatures, not what the files mean: the Recommender's parts
are written and read by :mod:`recsys.recommender_io`, and ``recsys.load`` (:mod:`recsys.loading`) dispatches
between bundle paths and MLflow model URIs.

Layout (format version 1)::

    manifest.json                format, format_version, created_at, library and dependency versions,
                                 training_data_hash, components, and per file: bytes + sha256
    signature.json               HMAC-SHA256 of manifest.json's bytes (only when saved with a key)
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

:func:`write_bundle` writes everything into a staging directory beside the path, fsyncs it, and publishes
it in one atomic step (:mod:`recsys.storage.atomic`): a reader sees the old bundle or the new one, whole, and a
killed save leaves nothing that the next save does not remove. :func:`read_bundle` opens the directory
once, validates the manifest's schema and bounds (and its HMAC signature when a key is configured, see
:mod:`recsys.storage.trust`), reads every file once, checking its size and sha256 on the very bytes it
copies into a private folder (and that no file was added), and only then parses that copy;
a tampered, truncated, incompatible or incomplete bundle raises :class:`~recsys.errors.ArtifactError`
naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import pandas as pd

from recsys.errors import ArtifactError
from recsys.storage.atomic import (
    DirSnapshot,
    discard,
    file_sha256,
    read_consistent,
    read_hashed,
    write_atomically,
)
from recsys.storage.trust import SIGNATURE, check_manifest, check_signature, resolve_key, sign

__all__ = ["manifest_digest", "FORMAT", "FORMAT_VERSION", "write_bundle", "read_bundle", "verify_bundle",
           "data_hash", "read_bundle_manifest"]

FORMAT = "recsys.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEPENDENCIES = ("numpy", "pandas", "pyarrow", "torch", "faiss-cpu", "safetensors", "scikit-learn", "scipy")
DEFAULT_MAX_BYTES = 16 * 2**30
MANIFEST_MAX_BYTES = 16 * 2**20
T = TypeVar("T")


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


def write_bundle(path: str | Path, write_parts: Callable[[Path], dict], *, overwrite: bool = False,
                 key: str | bytes | None = None, training_data_hash: str | None = None) -> Path:
    """Write a bundle directory at ``path``, atomically; returns the path.

    ``write_parts(folder)`` writes the component files into the staging folder and returns the manifest's
    ``components`` summary (:func:`recsys.recommender_io.write_components` for a Recommender); this module adds
    the manifest (sizes, sha256, versions) and publishes the folder in one step. ``key`` (else
    ``$RECSYS_BUNDLE_KEY``): sign the manifest with HMAC-SHA256 so that loads given the same key refuse any later
    change. Replacing an existing bundle leaves ``path`` a symlink to ``.<name>.versions/<id>/`` (see
    :mod:`recsys.storage.atomic`): readers see the old bundle or the new one."""
    from recsys.version import __version__

    path = Path(path)
    signing_key = resolve_key(key)
    if os.path.lexists(path) and not overwrite:
        raise ArtifactError(f"{path} already exists; pass overwrite=True to replace it, or choose a new path")
    def fill(tmp: Path) -> None:
        components = write_parts(tmp)
        _follow_umask(tmp)
        files = {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "library": {"recsys": __version__}, "dependencies": _versions(),
                    "training_data_hash": training_data_hash,
                    "components": components, "files": files}
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        (tmp / MANIFEST).write_bytes(data)
        if signing_key is not None:
            (tmp / SIGNATURE).write_bytes(sign(data, signing_key))

    write_atomically(path, fill)
    return path


def _parse_manifest(mf: Path, data: bytes, max_bytes: int) -> dict:
    if len(data) > MANIFEST_MAX_BYTES:
        raise ArtifactError(f"{mf} is over {MANIFEST_MAX_BYTES:,} bytes; the bundle is corrupt: restore or re-save it")
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mf} is not valid JSON ({e}); the bundle is corrupt: restore it or re-save it") from None
    except RecursionError:
        raise ArtifactError(f"{mf} nests too deeply to be a manifest; the bundle is corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mf} does not describe a recsys bundle (format {manifest.get('format')!r} "
                            f"if a dict, expected {FORMAT!r})" if isinstance(manifest, dict) else
                            f"{mf} does not describe a recsys bundle (expected a JSON object)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ArtifactError(f"{mf}: bundle format_version {version!r} is newer than this recsys reads "
                            f"({FORMAT_VERSION}); upgrade recsys (pip install -U recsys) to load it")
    if version < 1:
        raise ArtifactError(f"{mf}: bundle format_version {version!r} is not supported (expected 1..{FORMAT_VERSION})")
    return check_manifest(str(mf), manifest, max_bytes)


def _not_a_bundle(path: Path) -> str:
    return (f"{path} is not a bundle directory (it does not exist or is a file); pass the directory written by "
            "Recommender.save(path)")


def _open(path: Path) -> DirSnapshot:
    try:
        return DirSnapshot(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactError(_not_a_bundle(path)) from None


def _manifest_of(snap: DirSnapshot, path: Path, max_bytes: int) -> tuple[bytes, dict]:
    try:
        data = snap.read(MANIFEST, MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        raise ArtifactError(f"{path / MANIFEST} is missing: {path} is not a complete recsys bundle; re-save it "
                            "with Recommender.save(path)") from None
    return data, _parse_manifest(path / MANIFEST, data, max_bytes)


def read_bundle_manifest(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """The parsed manifest of a bundle, with format, schema and bounds checks (no file is verified)."""
    path = Path(path)
    with _open(path) as snap:
        return _manifest_of(snap, path, max_bytes)[1]


def _copy_verified(snap: DirSnapshot, path: Path, name: str, meta: dict, dest: Path | None) -> None:
    """Read ``name`` once, hashing exactly the bytes that go to ``dest`` (when given)."""
    fix = "the bundle was modified or damaged after it was saved: restore it from its source or re-save it"
    try:
        fh = snap.open(name)
    except FileNotFoundError:
        raise ArtifactError(f"{path / name} is missing; {fix}") from None
    except OSError as e:  # ELOOP: a symlink where a file should be; ENOTDIR: a file where a folder should be
        raise ArtifactError(f"{path / name} cannot be opened as a file of the bundle ({e.strerror}); {fix}") from None
    if dest is not None:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
    with fh, (open(dest / name, "wb") if dest is not None else _Discard()) as out:
        size, digest, _ = read_hashed(fh, meta["bytes"], sink=out)
    if size != meta["bytes"]:
        shown = f"{size:,}" if size <= meta["bytes"] else f"more than {meta['bytes']:,}"
        raise ArtifactError(f"{path / name} has {shown} bytes, the manifest says {meta['bytes']!r}; {fix}")
    if digest != meta["sha256"]:
        raise ArtifactError(f"{path / name} fails its sha256 checksum (manifest {meta['sha256'][:12]}...); {fix}")


class _Discard(contextlib.nullcontext):
    """A sink that keeps nothing (verifying without a copy)."""

    def __enter__(self) -> _Discard:
        return self

    def write(self, block: bytes) -> None:
        pass


def _verified(snap: DirSnapshot, path: Path, max_bytes: int, key: bytes | None, dest: Path | None) -> dict:
    data, manifest = _manifest_of(snap, path, max_bytes)
    if key is not None:
        try:
            signature = snap.read(SIGNATURE, MANIFEST_MAX_BYTES)
        except FileNotFoundError:
            signature = None
        check_signature(str(path), data, signature, key)
    on_disk, links = snap.listing()
    if links:
        raise ArtifactError(f"{path / links[0]} is a symlink; a bundle holds only regular files: re-save it")
    for name, meta in sorted(manifest["files"].items()):
        _copy_verified(snap, path, name, meta, dest)
    extra = sorted(set(on_disk) - set(manifest["files"]) - {MANIFEST, SIGNATURE})
    if extra:
        raise ArtifactError(f"{path / extra[0]} is not listed in the manifest ({len(extra)} unlisted file(s)); the "
                            "bundle was modified after it was saved: restore it from its source or re-save it")
    return manifest


def _consistent(path: Path, work):
    """``work(snapshot)`` on one whole version of the bundle (:func:`recsys.storage.atomic.read_consistent`)."""
    return read_consistent(path, work, missing=_not_a_bundle(path))


def verify_bundle(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, key: str | bytes | None = None) -> dict:
    """Check the manifest (schema, signature when a key is configured) and every file's size and sha256."""
    path, key_bytes = Path(path), resolve_key(key)
    return _consistent(path, lambda snap: _verified(snap, path, max_bytes, key_bytes, None))


def read_bundle(path: str | Path, read_parts: Callable[[Path, dict], T], *, max_bytes: int = DEFAULT_MAX_BYTES,
                key: str | bytes | None = None) -> T:
    """Verify a bundle, then return ``read_parts(folder, manifest)`` on a verified private copy (no pickle).

    Every file is read once: its bytes are checked against the manifest as they are copied into a private
    temporary folder, and only that verified copy is parsed, so a concurrent save or a change to the files
    after the check cannot reach the model. ``key`` (else ``$RECSYS_BUNDLE_KEY``): require a valid signature.
    ``read_parts`` is :func:`recsys.recommender_io.read_components` for a Recommender (``Recommender.load``)."""
    path, key_bytes = Path(path), resolve_key(key)
    with tempfile.TemporaryDirectory(prefix="recsys-bundle-") as tmp:
        def copy(snap: DirSnapshot) -> dict:
            for entry in Path(tmp).iterdir():
                discard(entry)
            return _verified(snap, path, max_bytes, key_bytes, Path(tmp))

        manifest = _consistent(path, copy)
        try:
            return read_parts(Path(tmp), manifest)
        except ArtifactError as e:  # name the bundle, not the private copy
            raise ArtifactError(str(e).replace(tmp, str(path))) from None


def manifest_digest(manifest: dict) -> str:
    """sha256 (hex) of a bundle's manifest as loaded: the manifest lists every file's checksum, so this names the
    exact bundle; its first 12 digits are the bundle's version wherever one is reported (batch rows, the service)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
