"""What the endpoints share (:class:`ServiceContext`) and the service's HTTP error (:class:`ServiceError`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from recsys.service.holder import ModelHolder
from recsys.service.keys import KeyStore, Principal
from recsys.service.settings import ServiceSettings

__all__ = ["ServiceContext", "ServiceError"]

_AUTH_FIX = "send the header 'Authorization: Bearer KEY' with the API key your partner account (or the admin) was given"


class ServiceError(Exception):
    """An HTTP error with a JSON body ``{"error": message, "fix": what to do}``."""

    def __init__(self, status: int, message: str, fix: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fix, self.headers = status, message, fix, headers


@dataclass
class ServiceContext:
    """What the endpoints share: settings, keys (None: open, 127.0.0.1 only), the model holder, metrics,
    the limits middleware (for its gauges), the event journal (None: events refused), its reader ``sync``
    (:class:`~recsys.service.sync.JournalSync`; None without a journal) and ``shutting_down`` (set once SIGTERM
    arrived: ``/readyz`` answers 503 from then on)."""

    settings: ServiceSettings
    keys: KeyStore | None
    holder: ModelHolder
    metrics: Any
    journal: Any = None
    sync: Any = None
    limits: Any = field(default=None)
    shutting_down: threading.Event = field(default_factory=threading.Event)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header; 401 (missing or unknown key) as a ServiceError."""
        if self.keys is None:
            return Principal("open")
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError(401, "missing API key", _AUTH_FIX, {"WWW-Authenticate": "Bearer"})
        principal = self.keys.identify(token.strip())
        if principal is None:
            raise ServiceError(401, "unknown API key", _AUTH_FIX, {"WWW-Authenticate": "Bearer"})
        return principal


