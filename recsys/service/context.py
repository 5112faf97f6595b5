"""What the endpoints share (:class:`ServiceContext`) and the service's HTTP error (:class:`ServiceError`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from recsys.service.holder import ModelHolder
from recsys.service.keys import KeyStore, Principal
from recsys.service.settings import ServiceSettings

__all__ = ["ServiceContext", "ServiceError", "error_answer"]

_AUTH_FIX = "send the header 'Authorization: Bearer KEY' with the API key your partner account (or the admin) was given"


class ServiceError(Exception):
    """An HTTP error with a JSON body ``{"error": message, "fix": what to do}``."""

    def __init__(self, status: int, message: str, fix: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fix, self.headers = status, message, fix, headers


def error_answer(exc: Exception) -> tuple[int, dict, dict | None] | None:
    """(status, JSON body, headers) of the service's answer to ``exc``, or None for an unexpected error (500).

    A :class:`ServiceError` answers as itself; a library error by kind: bad data 422, an artifact that cannot be
    used 409, a bad setting 400, any other 500, its message as ``error``. One mapping for the FastAPI exception
    handlers and the fast path of ``POST /v1/recommend`` (:mod:`recsys.service.fast`)."""
    from recsys.errors import ArtifactError, ConfigError, DataValidationError, RecsysError

    if isinstance(exc, ServiceError):
        return exc.status, {"error": exc.message, "fix": exc.fix}, exc.headers
    if isinstance(exc, RecsysError):
        status = 422 if isinstance(exc, DataValidationError) else 409 if isinstance(exc, ArtifactError) else \
            400 if isinstance(exc, ConfigError) else 500
        return status, {"error": str(exc), "fix": None}, None
    return None


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


