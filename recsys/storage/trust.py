"""What a bundle's manifest may say, and who signed it.

Checksums alone catch corruption, not tampering: anyone who can write the directory can change a file
and write its new sha256 into the manifest. With a key (``key=`` or ``$RECSYS_BUNDLE_KEY``), a save
also writes ``signature.json``: an HMAC-SHA256 of the exact bytes of ``manifest.json``, which lists
every file's sha256, and a load refuses a bundle that is unsigned or signed with another key.

Every manifest field is checked for type and bounds before anything uses it, so a damaged or hostile
manifest is an :class:`~recsys.errors.ArtifactError`, never a KeyError or a huge allocation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from typing import Any

from recsys.errors import ArtifactError, ConfigError

__all__ = ["KEY_ENV", "SIGNATURE", "resolve_key", "sign", "check_signature", "check_manifest", "check_files_entry",
           "MAX_DIM", "MAX_COUNT"]

KEY_ENV = "RECSYS_BUNDLE_KEY"
SIGNATURE = "signature.json"
ALGORITHM = "HMAC-SHA256"
MIN_KEY_BYTES = 16
MAX_DIM = 65536
MAX_COUNT = 2**40
REQUIRED = ("recommender.json", "pipeline.json", "model/config.json", "model/model.safetensors",
            "item_embeddings.safetensors", "index/manifest.json", "tables/items.parquet", "tables/events.parquet",
            "tables/popular.parquet")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIX = "the manifest is damaged or was edited: restore the bundle from its source or re-save it"


def resolve_key(key: str | bytes | None) -> bytes | None:
    """The signing key: ``key`` if given, else ``$RECSYS_BUNDLE_KEY``, else None (checksums only)."""
    source = "key="
    if key is None:
        key, source = os.environ.get(KEY_ENV) or None, f"${KEY_ENV}"
    if key is None:
        return None
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(f"the bundle signing key from {source} has {len(raw)} bytes; use at least {MIN_KEY_BYTES} "
                          "random bytes, e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
    return raw


def sign(manifest_bytes: bytes, key: bytes) -> bytes:
    """The ``signature.json`` bytes for a manifest."""
    mac = hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()
    return json.dumps({"algorithm": ALGORITHM, "manifest_hmac": mac}, indent=1).encode()


def check_signature(where: str, manifest_bytes: bytes, signature: bytes | None, key: bytes) -> None:
    """Refuse a bundle whose manifest is not signed with ``key``."""
    if signature is None:
        raise ArtifactError(f"{where} is not signed, but a signing key is configured (key= or ${KEY_ENV}): refusing "
                            "to load it. Re-save it with the key, or load without a key if you trust its source")
    try:
        sig = json.loads(signature)
        ok = sig["algorithm"] == ALGORITHM and isinstance(sig["manifest_hmac"], str)
    except (ValueError, TypeError, KeyError):
        ok = False
    expected = hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()
    if not ok or not hmac.compare_digest(sig["manifest_hmac"], expected):
        raise ArtifactError(f"{where}: {SIGNATURE} does not match the manifest under the configured key: the bundle "
                            "was changed after it was signed, or signed with another key; refusing to load it")


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_files_entry(where: str, name: Any, meta: Any, max_bytes: int, what: str = "bundle") -> None:
    """One ``files`` entry: a safe relative POSIX path with an integer size and a hex sha256."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or any(p in ("", ".", "..") for p in parts) or "\\" in name or "\x00" in name:
        raise ArtifactError(f"{where}: file entry {name!r} points outside the {what} (expected a relative path "
                            f"inside it); {_FIX}")
    if not isinstance(meta, dict):
        raise ArtifactError(f"{where}: the entry for {name!r} is a {type(meta).__name__}, expected an object with "
                            f"bytes and sha256; {_FIX}")
    if not _int(meta.get("bytes"), 0, max_bytes):
        raise ArtifactError(f"{where}: {name!r} has bytes={meta.get('bytes')!r}, expected an integer from 0 to "
                            f"max_bytes={max_bytes:,}; {_FIX}")
    if not isinstance(meta.get("sha256"), str) or not _HEX64.match(meta["sha256"]):
        raise ArtifactError(f"{where}: {name!r} has sha256={str(meta.get('sha256'))[:80]!r}, expected 64 hex "
                            f"digits; {_FIX}")


def check_manifest(where: str, manifest: Any, max_bytes: int) -> dict:
    """Schema and bounds of a bundle manifest (format already checked): files, required parts, components."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{where} lists no files; {_FIX}")
    for name, meta in files.items():
        check_files_entry(where, name, meta, max_bytes)
        if name in ("manifest.json", SIGNATURE):
            raise ArtifactError(f"{where}: the manifest lists {name!r}, which cannot be one of its own files; {_FIX}")
    total = sum(meta["bytes"] for meta in files.values())
    if total > max_bytes:
        raise ArtifactError(f"{where}: the manifest lists {total:,} bytes, above max_bytes={max_bytes:,}; pass a "
                            "larger max_bytes if this bundle is trusted")
    missing = [n for n in REQUIRED if n not in files]
    if missing:
        raise ArtifactError(f"{where} does not list {missing}: every bundle has them; {_FIX}")
    comps = manifest.get("components", {})
    if not isinstance(comps, dict):
        raise ArtifactError(f"{where}: components is a {type(comps).__name__}, expected an object; {_FIX}")
    for field, hi in (("dim", MAX_DIM), ("items", MAX_COUNT), ("users", MAX_COUNT)):
        if field in comps and not _int(comps[field], 1 if field == "dim" else 0, hi):
            raise ArtifactError(f"{where}: components.{field}={comps[field]!r}, expected an integer up to {hi:,}; {_FIX}")
    if not isinstance(manifest.get("training_data_hash"), (str, type(None))):
        raise ArtifactError(f"{where}: training_data_hash must be a string or null; {_FIX}")
    return manifest
