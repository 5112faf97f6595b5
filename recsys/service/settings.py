"""The service's settings: one frozen dataclass, from ``recsys serve``'s options or from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from recsys.errors import ConfigError

__all__ = ["ServiceSettings", "ENV_PREFIX"]

ENV_PREFIX = "RECSYS_SERVE_"


@dataclass(frozen=True)
class ServiceSettings:
    """``model``: a bundle directory or an MLflow model URI (``models:/guess-you-like@champion``);
    ``keys``: the keys.yaml path (None: ``RECSYS_ADMIN_KEY`` / ``RECSYS_PARTNER_KEYS`` if set, else no keys, which
    only 127.0.0.1 may serve); ``poll_seconds``: how often the model source is re-resolved (0: only on
    ``POST /v1/admin/reload``); ``max_concurrency`` / ``max_queue`` / ``deadline_s``: the limits
    (:mod:`recsys.service.limits`); ``journal``: the event journal's SQLite file (None: events are refused
    with 503); ``warm``: run warm-up requests before a version serves; ``drain_seconds``: after SIGTERM, how
    long the worker goes on accepting requests while ``/readyz`` answers 503 (a load balancer's probe takes it
    out of rotation) before it stops accepting and finishes what is in flight (0: at once); ``threads``: intra-op
    threads of torch, faiss and BLAS per worker process (:func:`recsys.threads.limit_threads`; 0: the
    libraries' defaults)."""

    model: str
    keys: str | None = None
    poll_seconds: float = 30.0
    # a feed is CPU work in one process: more requests running at once only share its core (each gets slower), so
    # a few run and a short queue waits (about 20 feeds, tens of ms); beyond it a 503 at once, never a pile-up
    max_concurrency: int = 4
    max_queue: int = 16
    deadline_s: float = 10.0
    journal: str | None = None
    warm: bool = True
    drain_seconds: float = 0.0
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("the service needs a model: a bundle directory or models:/name@alias")
        if self.max_concurrency < 1 or self.max_queue < 0 or self.deadline_s <= 0 or self.poll_seconds < 0 \
                or self.drain_seconds < 0 or self.threads < 0:
            raise ConfigError("max_concurrency >= 1, max_queue >= 0, deadline_s > 0, poll_seconds >= 0, "
                              f"drain_seconds >= 0 and threads >= 0 are required; got {self.max_concurrency}, "
                              f"{self.max_queue}, {self.deadline_s}, {self.poll_seconds}, {self.drain_seconds}, "
                              f"{self.threads}")

    def to_env(self) -> dict[str, str]:
        """The settings as ``RECSYS_SERVE_*`` variables (how ``recsys serve --workers N`` hands them to workers)."""
        return {ENV_PREFIX + f.name.upper(): "" if getattr(self, f.name) is None else str(getattr(self, f.name))
                for f in fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        """Read ``RECSYS_SERVE_MODEL`` (required), ``RECSYS_SERVE_KEYS``, ``RECSYS_SERVE_POLL_SECONDS``,
        ``RECSYS_SERVE_MAX_CONCURRENCY``, ``RECSYS_SERVE_MAX_QUEUE``, ``RECSYS_SERVE_DEADLINE_S``,
        ``RECSYS_SERVE_JOURNAL``, ``RECSYS_SERVE_WARM``, ``RECSYS_SERVE_DRAIN_SECONDS``,
        ``RECSYS_SERVE_THREADS``; a bad value is a ConfigError naming the variable."""
        env = os.environ if env is None else env
        kwargs: dict = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                if f.type in ("int",):
                    kwargs[f.name] = int(raw)
                elif f.type in ("float",):
                    kwargs[f.name] = float(raw)
                elif f.type in ("bool",):
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    kwargs[f.name] = raw.lower() in ("1", "true", "yes")
                else:
                    kwargs[f.name] = raw
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {f.type}") from None
        if "model" not in kwargs:
            raise ConfigError(f"set {ENV_PREFIX}MODEL to a bundle directory or models:/name@alias")
        return cls(**kwargs)
