"""Safe index persistence: atomic directory saves with a manifest; verified loads that never crash.

Layout of a saved index directory::

    manifest.json        format, versions (recsys, faiss, numpy), kind, dim, metric, count, factory,
                         search params, tuning record, drift stats, and per file: bytes + sha256
    index.faiss          FAISS index (FaissIndex)  |  vectors.npy (ExactIndex)
    ids.npy              int64 ids, or ids_str.bin + ids_str_offsets.npy (UTF-8 strings)
    alive.npy, in_stock.npy, segment_code.npy   per stored vector

``save_index`` writes into a staging directory beside the path, fsyncs every file and the directory,
then publishes it atomically (:mod:`recsys.storage.atomic`: a new path by one rename, an existing one by
switching a symlink to an immutable version; what killed saves leave is removed by the next save).
``load_index`` opens the directory once, checks the manifest's types and bounds, the total size
against ``max_bytes`` and every file's size and sha256 on the bytes it read (the same bytes are
parsed) *before* any byte reaches FAISS or numpy; corrupt, truncated, tampered or mismatched artifacts
raise ``ArtifactError`` with what was expected and what was found. No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

from recsys.errors import ArtifactError
from recsys.index.filters import FilterConfig
from recsys.index.ids import IdMap
from recsys.index.registry import INDEX_KINDS, index_class
from recsys.index.snapshot import Snapshot
from recsys.storage.atomic import DirSnapshot, read_consistent, write_atomically
from recsys.storage.trust import MAX_COUNT, MAX_DIM, check_files_entry

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


def _index_files(index) -> tuple[dict[str, bytes], dict]:
    from recsys.index._faiss import import_faiss
    from recsys.version import __version__

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
        "recsys_version": __version__, "faiss_version": faiss.__version__, "numpy_version": np.__version__,
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
    def fill(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "manifest.json").write_bytes(json.dumps(manifest, indent=2, default=_json_default).encode())

    write_atomically(path, fill)
    return path


def _parse_manifest(mpath: Path, data: bytes) -> dict:
    if len(data) > MANIFEST_MAX_BYTES:
        raise ArtifactError(f"{mpath} is over the {MANIFEST_MAX_BYTES} byte limit; the index is corrupt, save it again")
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{mpath} is not valid JSON ({e}); the index is corrupt, save it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath} is not a recsys item index manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{mpath.parent}: index format version {manifest.get('format_version')!r}, this recsys "
                            f"reads version {FORMAT_VERSION}; re-save it with a matching recsys")
    missing = [k for k in ("kind", "dim", "metric", "count", "stored", "files") if k not in manifest]
    if missing:
        raise ArtifactError(f"{mpath} lacks required keys {missing}; the manifest is corrupt")
    return _check_bounds(mpath, manifest)


def _check_bounds(mpath: Path, m: dict) -> dict:
    """Types and bounds of every field a load uses, before any of them sizes an allocation."""
    def bad(field: str, expected: str):
        return ArtifactError(f"{mpath}: {field}={str(m.get(field))[:80]!r}, expected {expected}; the manifest is "
                             "corrupt or was edited: save the index again")

    def is_int(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    if not is_int(m["dim"], 1, MAX_DIM):
        raise bad("dim", f"an integer from 1 to {MAX_DIM}")
    if not is_int(m["stored"], 0, MAX_COUNT):
        raise bad("stored", f"an integer from 0 to {MAX_COUNT}")
    if not is_int(m["count"], 0, m["stored"]):
        raise bad("count", "an integer from 0 to stored")
    for field in ("kind", "metric"):
        if not isinstance(m[field], str):
            raise bad(field, "a string")
    if m.get("id_kind", "int") not in ("int", "str"):
        raise bad("id_kind", "'int' or 'str'")
    if not isinstance(m.get("segments", []), list) or not all(isinstance(x, str) for x in m.get("segments", [])):
        raise bad("segments", "a list of strings")
    for field in ("filter_config", "search_params"):
        if not isinstance(m.get(field) or {}, dict):
            raise bad(field, "an object")
    if not isinstance(m["files"], dict):
        raise bad("files", "an object of name -> {bytes, sha256}")
    for name, meta in m["files"].items():
        check_files_entry(str(mpath), name, meta, MAX_COUNT, what="index")
        if "/" in name:
            raise ArtifactError(f"{mpath.parent}: file {name!r} listed in the manifest is not a file of the index")
    return m


def read_manifest(path: str | Path) -> dict:
    """The manifest of a saved index, validated for format, required keys, types and bounds."""
    path = Path(path)
    try:
        with DirSnapshot(path) as snap:
            data = snap.read("manifest.json", MANIFEST_MAX_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactError(f"no index at {path}: manifest.json is missing (save one with index.save(path))") from None
    return _parse_manifest(path / "manifest.json", data)


def _read_verified(snap: DirSnapshot, path: Path, max_bytes: int) -> tuple[dict, dict[str, bytes]]:
    """The manifest and every listed file, each read once and checked on the bytes that were read."""
    try:
        data = snap.read("manifest.json", MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        raise ArtifactError(f"no index at {path}: manifest.json is missing (save one with index.save(path))") from None
    manifest = _parse_manifest(path / "manifest.json", data)
    listed = manifest["files"]
    total = sum(meta["bytes"] for meta in listed.values())
    if total > max_bytes:
        raise ArtifactError(f"{path}: index files total {total:,} bytes, over max_bytes={max_bytes:,}; "
                            "raise max_bytes if you trust this artifact")
    files = {}
    for name, meta in listed.items():
        fpath = path / name
        try:
            size, digest, data = snap.read_hashed(name, meta["bytes"])
        except OSError:
            raise ArtifactError(f"{path}: file {name!r} listed in the manifest is missing") from None
        if size != meta["bytes"]:
            found = f"{size:,}" if size < meta["bytes"] else "more"
            raise ArtifactError(f"{fpath}: expected {meta['bytes']:,} bytes, found {found} "
                                "(truncated or modified); restore it from its source or save the index again")
        if digest != meta["sha256"]:
            raise ArtifactError(f"{fpath}: sha256 {digest[:16]}... does not match the manifest's "
                                f"{meta['sha256'][:16]}... (corrupt or tampered); refusing to load it")
        files[name] = data
    return manifest, files


def _snapshot_of(path: Path, max_bytes: int) -> tuple[dict, dict[str, bytes]]:
    """Manifest and files of one whole version of the index (:func:`recsys.storage.atomic.read_consistent`)."""
    return read_consistent(path, lambda snap: _read_verified(snap, path, max_bytes),
                           missing=f"no index at {path}: manifest.json is missing (save one with index.save(path))")


def _load_array(files: dict[str, bytes], name: str, dtype, n: int) -> np.ndarray:
    if name not in files:
        raise ArtifactError(f"saved index lacks {name}")
    a = np.load(io.BytesIO(files[name]), allow_pickle=False)
    if a.dtype != np.dtype(dtype) or a.shape != (n,):
        raise ArtifactError(f"{name} holds {a.dtype} {a.shape}; expected {np.dtype(dtype)} ({n},)")
    return a


def load_index(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
    """Load an index saved by ``save``: verified sizes and checksums first, then FAISS/numpy."""
    path = Path(path)
    manifest, files = _snapshot_of(path, max_bytes)
    n = manifest["stored"]
    if manifest["kind"] not in INDEX_KINDS:
        raise ArtifactError(f"{path}: unknown index kind {manifest['kind']!r} (expected one of {list(INDEX_KINDS)})")
    try:
        fc = FilterConfig(**(manifest.get("filter_config") or {}))
        index = index_class(manifest["kind"])._from_manifest(manifest, fc)
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: the manifest's index settings are invalid ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300] if str(e) else ''}); save the index again") from None
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
        idmap = IdMap.from_external(manifest.get("id_kind"), external, alive)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    except (ValueError, RuntimeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: saved index is inconsistent or corrupt: {str(e).splitlines()[0][:300]}") from None
    index._state = Snapshot(engine, idmap, alive, in_stock, seg, tuple(manifest.get("segments", ())),
                            manifest.get("drift"))
    return index
