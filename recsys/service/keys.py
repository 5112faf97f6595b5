"""API keys of the HTTP service: one admin key, one key per media partner, stored hashed.

``keys.yaml``::

    admin: 3f9c...            # plain key (hashed when read) or "sha256:<64 hex digits>"
    partners:
      guide-0: 8a1d...
      app-0: sha256:5e88...

Plain keys are hashed (SHA-256) as soon as they are read and only the hashes are kept; a presented key is
hashed and compared with every stored hash in constant time (:func:`hmac.compare_digest`, no early exit).
API keys are long random strings, so one round of SHA-256 is enough (a password would need scrypt; a key of
fewer than 16 characters is refused). The environment may hold the keys instead of a file:
``RECSYS_ADMIN_KEY`` and ``RECSYS_PARTNER_KEYS`` (``guide-0=KEY,app-0=KEY``). Keys never appear in logs
or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import ConfigError

__all__ = ["Principal", "KeyStore", "hash_key", "load_keys", "keys_from_env", "MIN_KEY_LENGTH"]

MIN_KEY_LENGTH = 16
_HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Principal:
    """Who sent a request: ``admin`` (every partner, catalogue, models) or one ``partner``."""

    role: str  # "admin" | "partner" | "open" (no keys configured: 127.0.0.1 only)
    partner: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "open")

    @property
    def label(self) -> str:
        """A metrics label: the partner id, ``admin`` or ``open`` (never the key)."""
        return self.partner if self.role == "partner" else self.role


def hash_key(plain: str) -> str:
    """The stored form of a key: ``sha256:<hex>``; ``keys.yaml`` accepts it in place of the plain key."""
    return "sha256:" + hashlib.sha256(plain.encode("utf-8")).hexdigest()


def _stored(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: a key must be a non-empty string (a plain key, or sha256:<64 hex digits>)")
    value = value.strip()
    if value.startswith("sha256:"):
        if not _HASHED.match(value):
            raise ConfigError(f"{where}: a hashed key is 'sha256:' and 64 lowercase hex digits "
                              "(python -c \"from recsys.service.keys import hash_key; print(hash_key('KEY'))\")")
        return value
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where}: a key needs at least {MIN_KEY_LENGTH} characters (use a random one, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return hash_key(value)


@dataclass(frozen=True)
class KeyStore:
    """Hashed keys: ``admin`` (or None) and ``partners`` (partner id -> hash)."""

    admin: str | None = None
    partners: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: object, where: str = "keys") -> KeyStore:
        """Build from ``{"admin": KEY, "partners": {ID: KEY}}`` (plain or hashed keys); a bad entry is a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with 'admin' and 'partners', got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - {"admin", "partners"})
        if unknown:
            raise ConfigError(f"{where}: unknown entries {unknown}; only 'admin' and 'partners' are read")
        admin = None if data.get("admin") is None else _stored(data["admin"], f"{where}: admin")
        partners_raw = data.get("partners") or {}
        if not isinstance(partners_raw, Mapping):
            raise ConfigError(f"{where}: partners must map partner ids to keys, got {type(partners_raw).__name__}")
        partners = {str(pid): _stored(key, f"{where}: partners.{pid}") for pid, key in partners_raw.items()}
        if admin is None and not partners:
            raise ConfigError(f"{where}: no keys: give 'admin' and/or 'partners'")
        hashes = [h for h in [admin, *partners.values()] if h is not None]
        if len(set(hashes)) != len(hashes):
            raise ConfigError(f"{where}: two entries share one key; every partner (and the admin) needs its own")
        return cls(admin=admin, partners=partners)

    def identify(self, presented: str | None) -> Principal | None:
        """The principal whose key this is, else None. Compares against every stored hash (constant time)."""
        if not presented:
            return None
        digest = hash_key(presented).encode()
        found: Principal | None = None
        if self.admin is not None and hmac.compare_digest(digest, self.admin.encode()):
            found = Principal("admin")
        for pid, stored in self.partners.items():
            if hmac.compare_digest(digest, stored.encode()):
                found = Principal("partner", pid)
        return found


def load_keys(path: str | Path) -> KeyStore:
    """Read ``keys.yaml`` (see the module docstring); a missing or malformed file is a ConfigError."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read the keys file {p}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"the keys file {p} is not valid YAML ({type(e).__name__})") from None
    return KeyStore.from_mapping(data, where=str(p))


def keys_from_env(env: Mapping[str, str] | None = None) -> KeyStore | None:
    """Keys from ``RECSYS_ADMIN_KEY`` and ``RECSYS_PARTNER_KEYS`` (``ID=KEY,ID=KEY``), or None when neither is set."""
    env = os.environ if env is None else env
    admin, listed = env.get("RECSYS_ADMIN_KEY"), env.get("RECSYS_PARTNER_KEYS")
    if not admin and not listed:
        return None
    partners: dict[str, str] = {}
    for n, entry in enumerate(e for e in (listed or "").split(",") if e.strip()):
        pid, sep, key = entry.partition("=")
        if not sep or not pid.strip():
            raise ConfigError(f"RECSYS_PARTNER_KEYS entry {n}: expected PARTNER_ID=KEY (comma-separated)")
        partners[pid.strip()] = key
    return KeyStore.from_mapping({"admin": admin or None, "partners": partners}, where="environment")
