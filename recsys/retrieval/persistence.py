"""Safe index persistence: atomic directory saves with a manifest; verified loads that never crash.

Layout of a saved index directory::

    manifest.json        format, versions (recsys, faiss, numpy), kind, dim, metric, count, factory,
                         search params, tuning record, drift stats, and per file: bytes + sha256
    index.faiss          FAISS index (FaissIndex)  |  vectors.npy (ExactIndex)
    ids.npy              int64 ids, or ids_str.bin + ids_str_offsets.npy (UTF-8 strings)
    alive.npy, in_stock.npy, segment_code.npy   per stored vector

``save_index`` writes into a temporary sibling directory, fsyncs every file and the directory,
then renames it into place (an existing index at the path is swapped out and deleted).
``load_index`` checks the total size against ``max_bytes`` and every file's size and sha256
*before* any byte reaches FAISS or numpy; corrupt, truncated, tampered or mismatched artifacts
raise ``ArtifactError`` with what was expected and what was found. No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from recsys.errors import ArtifactError

FORMAT = "recsys.item_index"
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 8 * 2**30
MANIFEST_MAX_BYTES = 16 * 2**20


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to the manifest")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _index_files(index) -> tuple[dict[str, bytes], dict]:
    import recsys
    from recsys.retrieval._faiss import import_faiss

    faiss = import_faiss()

    st = index._state_or_raise()
    files = dict(index._engine_files(st.engine))
    if st.ids.kind == "str":
        encoded = [s.encode("utf-8", "surrogatepass") for s in st.ids.external]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in encoded])
        files["ids_str.bin"] = b"".join(encoded)
        files["ids_str_offsets.npy"] = _npy(offsets)
    else:
        files["ids.npy"] = _npy(st.ids.external.astype(np.int64))
    files["alive.npy"] = _npy(st.alive)
    files["in_stock.npy"] = _npy(st.in_stock)
    files["segment_code.npy"] = _npy(st.seg_code)
    fc = index.filter_config
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": index.kind,
        "recsys_version": recsys.__version__, "faiss_version": faiss.__version__, "numpy_version": np.__version__,
        "dim": int(index.dim), "metric": index.metric, "count": int(st.alive.sum()), "stored": len(st.alive),
        "id_kind": st.ids.kind, "segments": list(st.segments), "drift": st.drift,
        "filter_config": {"subset_max": fc.subset_max, "postfilter_min": fc.postfilter_min, "max_widen": fc.max_widen},
        **index._manifest_extra(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in sorted(files.items())},
    }
    return files, manifest


def save_index(index, path: str | Path) -> Path:
    """Write ``index`` to directory ``path`` atomically; return the path."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "manifest.json").exists())):
        raise ArtifactError(f"refusing to overwrite {path}: it exists and is not a saved index; choose another path")
    files, manifest = _index_files(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 would hide the index from other accounts; mkdir follows the umask
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        _write_synced(tmp / "manifest.json", json.dumps(manifest, indent=2, default=_json_default).encode())
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict:
    """The manifest of a saved index, validated for format and required keys."""
    mpath = Path(path) / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(f"no index at {path}: {mpath.name} is missing (save one with index.save(path))")
    if mpath.stat().st_size > MANIFEST_MAX_BYTES:
        raise ArtifactError(f"{mpath} is {mpath.stat().st_size} bytes, over the {MANIFEST_MAX_BYTES} limit")
    try:
        manifest = json.loads(mpath.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mpath} is not valid JSON ({e}); the index is corrupt, save it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath} is not a recsys item index manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: index format version {manifest.get('format_version')!r}, this recsys reads "
                            f"version {FORMAT_VERSION}; re-save it with a matching recsys")
    missing = [k for k in ("kind", "dim", "metric", "count", "stored", "files") if k not in manifest]
    if missing:
        raise ArtifactError(f"{mpath} lacks required keys {missing}; the manifest is corrupt")
    return manifest


def _read_verified(path: Path, manifest: dict, max_bytes: int) -> dict[str, bytes]:
    listed = manifest["files"]
    total = sum(int(meta["bytes"]) for meta in listed.values())
    if total > max_bytes:
        raise ArtifactError(f"{path}: index files total {total:,} bytes, over max_bytes={max_bytes:,}; "
                            "raise max_bytes if you trust this artifact")
    files = {}
    for name, meta in listed.items():
        fpath = path / name
        if Path(name).name != name or not fpath.is_file():
            raise ArtifactError(f"{path}: file {name!r} listed in the manifest is missing")
        size = fpath.stat().st_size
        if size != int(meta["bytes"]):
            raise ArtifactError(f"{fpath}: expected {int(meta['bytes']):,} bytes, found {size:,} "
                                "(truncated or modified); restore it from its source or save the index again")
        data = fpath.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["sha256"]:
            raise ArtifactError(f"{fpath}: sha256 {digest[:16]}... does not match the manifest's "
                                f"{str(meta['sha256'])[:16]}... (corrupt or tampered); refusing to load it")
        files[name] = data
    return files


def _load_array(files: dict[str, bytes], name: str, dtype, n: int) -> np.ndarray:
    if name not in files:
        raise ArtifactError(f"saved index lacks {name}")
    a = np.load(io.BytesIO(files[name]), allow_pickle=False)
    if a.dtype != np.dtype(dtype) or a.shape != (n,):
        raise ArtifactError(f"{name} holds {a.dtype} {a.shape}; expected {np.dtype(dtype)} ({n},)")
    return a


def load_index(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
    """Load an index saved by ``save``: verified sizes and checksums first, then FAISS/numpy."""
    from recsys.retrieval.core import Snapshot
    from recsys.retrieval.exact import ExactIndex
    from recsys.retrieval.faiss_index import FaissIndex
    from recsys.retrieval.filters import FilterConfig
    from recsys.retrieval.ids import IdMap

    path = Path(path)
    manifest = read_manifest(path)
    files = _read_verified(path, manifest, max_bytes)
    n, dim = int(manifest["stored"]), int(manifest["dim"])
    fc = FilterConfig(**manifest.get("filter_config", {}))
    if manifest["kind"] == "exact":
        index = ExactIndex(manifest["metric"], dim, filter_config=fc)
    elif manifest["kind"] == "faiss":
        index = FaissIndex(manifest["factory"], manifest["metric"], dim, search_params=manifest.get("search_params"),
                           train_size=manifest.get("train_size"), seed=manifest.get("seed", 0),
                           drift_ratio=manifest.get("drift_ratio", 1.5), filter_config=fc)
        index.tuning = manifest.get("tuning")
    else:
        raise ArtifactError(f"{path}: unknown index kind {manifest['kind']!r} (expected 'exact' or 'faiss')")
    try:
        index._check_config()
        alive = _load_array(files, "alive.npy", bool, n)
        in_stock = _load_array(files, "in_stock.npy", bool, n)
        seg = _load_array(files, "segment_code.npy", np.int32, n)
        if manifest.get("id_kind") == "str":
            offsets = _load_array(files, "ids_str_offsets.npy", np.int64, n + 1)
            blob = files["ids_str.bin"]
            if offsets[-1] != len(blob) or (np.diff(offsets) < 0).any():
                raise ArtifactError("ids_str_offsets.npy does not match ids_str.bin")
            external = np.array([blob[offsets[i]:offsets[i + 1]].decode("utf-8", "surrogatepass")
                                 for i in range(n)], dtype=object)
        else:
            external = _load_array(files, "ids.npy", np.int64, n)
        if int(alive.sum()) != int(manifest["count"]):
            raise ArtifactError(f"alive.npy marks {int(alive.sum())} live items; the manifest says {manifest['count']}")
        engine = index._engine_from_files(files, n)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    except (ValueError, RuntimeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: saved index is inconsistent or corrupt: {str(e).splitlines()[0][:300]}") from None
    idmap = IdMap.from_external(manifest.get("id_kind"), external, alive)
    index._state = Snapshot(engine, idmap, alive, in_stock, seg, tuple(manifest.get("segments", ())),
                            manifest.get("drift"))
    return index
