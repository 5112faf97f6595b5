"""Save and load a fitted :class:`~recsys.models.graph_filter.GraphFilter`: safetensors + JSON, no pickle.

A saved filter is a directory written atomically (:func:`recsys.storage.atomic.write_atomically`):

- ``graph_filter.safetensors``: the interaction matrix's CSR ``indptr`` and ``indices`` (int64) and, with an
  ideal term, ``singular_vectors`` (items x rank float32); ``R~`` and the degrees are recomputed from them.
- ``graph_filter.json``: format, version, hyper-parameters, shapes and the sha256 of the tensors file.

Loading reads both files from one opened version of the directory (:func:`recsys.storage.atomic.read_consistent`)
and checks the digest, the shapes and the index bounds before anything is built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ArtifactError, ConfigError
from recsys.storage.atomic import read_consistent, write_atomically

FORMAT, FORMAT_VERSION = "recsys.graph_filter", 1
TENSORS, MANIFEST = "graph_filter.safetensors", "graph_filter.json"
_MAX_MANIFEST = 1 << 20


def save_graph_filter(model: Any, path: Path) -> Path:
    """Write ``model`` (fitted) to directory ``path`` in one atomic step; returns the path."""
    from safetensors.numpy import save

    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MANIFEST).exists())):
        raise ArtifactError(f"refusing to overwrite {path}: it exists and is not a saved graph filter.\n"
                            "Fix: choose another path.")
    m = model.matrix_
    tensors = {"indptr": m.indptr.astype(np.int64), "indices": m.indices.astype(np.int64)}
    if model.singular_vectors_ is not None:
        tensors["singular_vectors"] = np.ascontiguousarray(model.singular_vectors_, dtype=np.float32)
    data = save(tensors)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "params": model.get_params(),
                "n_users": int(m.shape[0]), "n_items": int(m.shape[1]), "nnz": int(m.nnz),
                "files": {TENSORS: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}

    def fill(tmp: Path) -> None:
        (tmp / TENSORS).write_bytes(data)
        (tmp / MANIFEST).write_bytes(json.dumps(manifest, indent=2).encode())

    write_atomically(path, fill)
    return path


def load_graph_filter(cls: type, path: Path) -> Any:
    """A ``cls`` instance rebuilt from the directory at ``path``; ArtifactError naming what is wrong."""
    manifest, tensors = read_consistent(path, _read, missing=f"no saved graph filter at {path}.\n"
                                        "Fix: pass the directory GraphFilter.save wrote.")
    try:
        model = cls(**manifest["params"])
    except (TypeError, ConfigError) as e:
        raise ArtifactError(f"{path / MANIFEST}: its params do not build a GraphFilter ({e}).") from None
    n_users, n_items, nnz = manifest["n_users"], manifest["n_items"], manifest["nnz"]
    indptr, indices = tensors.get("indptr"), tensors.get("indices")
    ok = (indptr is not None and indices is not None and indptr.shape == (n_users + 1,) and indices.shape == (nnz,)
          and indptr[0] == 0 and indptr[-1] == nnz and (np.diff(indptr) >= 0).all()
          and (nnz == 0 or (indices.min() >= 0 and indices.max() < n_items)))
    if not ok:
        raise ArtifactError(f"{path / TENSORS}: the interaction matrix does not match its manifest "
                            f"({n_users} x {n_items}, {nnz} pairs); the file is corrupt: save the filter again.")
    v = tensors.get("singular_vectors")
    if model.ideal_weight > 0 and (v is None or v.ndim != 2 or v.shape[0] != n_items or v.dtype != np.float32):
        raise ArtifactError(f"{path / TENSORS}: singular_vectors missing or not ({n_items}, rank) float32.")
    matrix = sp.csr_matrix((np.ones(nnz, np.float32), indices, indptr), shape=(n_users, n_items))
    model._set_graph(matrix)
    return model._set_ideal(v if model.ideal_weight > 0 else None)


def _read(snap) -> tuple[dict, dict]:
    from safetensors.numpy import load

    raw = snap.read(MANIFEST, _MAX_MANIFEST)
    where = snap.path / MANIFEST
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{where} is not valid JSON ({e}); save the filter again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is not a graph filter manifest (format {FORMAT!r} expected).")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{where}: format version {manifest.get('format_version')!r}; this recsys reads "
                            f"{FORMAT_VERSION}. Fix: save the filter again with this recsys.")
    for key in ("n_users", "n_items", "nnz"):
        v = manifest.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ArtifactError(f"{where}: {key}={v!r} is not a non-negative integer; the manifest is corrupt.")
    if not isinstance(manifest.get("params"), dict):
        raise ArtifactError(f"{where}: params missing; the manifest is corrupt.")
    expected = (manifest.get("files") or {}).get(TENSORS) if isinstance(manifest.get("files"), dict) else None
    if not isinstance(expected, dict) or not isinstance(expected.get("bytes"), int):
        raise ArtifactError(f"{where}: files.{TENSORS} missing; the manifest is corrupt.")
    size, digest, data = snap.read_hashed(TENSORS, expected["bytes"])
    if size != expected.get("bytes") or digest != expected.get("sha256"):
        raise ArtifactError(f"{snap.path / TENSORS} does not match the size / sha256 in {MANIFEST}; the filter "
                            "is corrupt or was edited: save it again.")
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types on a malformed header
        raise ArtifactError(f"{snap.path / TENSORS} is not a valid safetensors file ({e}).") from None
    return manifest, tensors
