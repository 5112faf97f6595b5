"""ModelHolder: the Recommender the service answers with, and hot swaps to a new version without a failed request.

The holder keeps one :class:`Served` (the Recommender, its version and where it came from) in one attribute;
a request reads it once and answers from that snapshot, so a swap never mixes two versions in one response.
A reload (``POST /v1/admin/reload`` or the poller seeing the alias move) runs in the holder's one background
thread: resolve the source to a version (``models:/name@alias`` -> the version number the alias points at;
a bundle directory -> a digest of its manifest), load it (:func:`recsys.load`: every checksum verified, the
signature too when ``$RECSYS_BUNDLE_KEY`` or ``key`` is set), warm it with a few requests, then, under the
update lock, replay the service's update log onto it and swap. Any failure refuses that version: the old one
keeps serving and :meth:`ModelHolder.status` says why.

The update log: with no journal, every catalogue update the service applied (:meth:`ModelHolder.update`) since
it started, replayed in order onto each version it swaps in, so a new version never forgets what was changed
through the service; at most ``max_log`` updates (beyond: :class:`UpdateLogFull`). With a journal nothing is
logged here: ``on_load`` replays the journal (:mod:`recsys.service.sync`). Updates and the replay-and-swap hold
one lock, so each update lands on exactly one side of a swap and on the new version too.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, ConfigError, DataValidationError, RecsysError
from recsys.storage.bundle import manifest_digest

__all__ = ["Served", "ModelHolder", "UpdateLogFull", "resolve_source"]

DEFAULT_MAX_LOG = 10_000


class UpdateLogFull(ConfigError):
    """The in-memory update log reached its bound: the update is refused (nothing changed)."""

log = logging.getLogger("recsys.service")


@dataclass(frozen=True)
class Served:
    """One loaded version: the Recommender, its version string, its name and the URI it was loaded from."""

    rec: Any
    version: str
    name: str
    uri: str
    loaded_at: float


def resolve_source(source: str) -> tuple[str, str, str]:
    """(name, version, uri to load) of ``source`` as it is now: a ``models:/name@alias`` is pinned to the version
    the alias points at (``models:/name/N``), so the version loaded is the version reported."""
    if source.startswith("models:/"):
        name, _, alias = source[len("models:/"):].partition("@")
        if not alias:
            name, _, number = name.partition("/")
            return name, number or "latest", source
        from recsys.tracking.aliases import alias_version

        version = alias_version(name, alias)
        return name, version, f"models:/{name}/{version}"
    if "://" in source and not source.startswith("file://") or source.startswith(("runs:/", "mlflow-artifacts:/")):
        return source, "run", source
    path = Path(source.removeprefix("file://"))
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{source}: no readable bundle manifest ({type(e).__name__}); pass a bundle directory "
                            "written by Recommender.save or recsys train, or a models:/ URI") from None
    return path.resolve().name, manifest_digest(manifest)[:12], source


def _warm(rec: Any) -> None:
    """A few requests through every path (each partner, an unknown user, similar items) before any user sees it."""
    partners = rec.partners()[:16]
    users = rec.audience(None)[:1].tolist()
    for media in partners or [None]:
        for user in [*users, "__recsys_warmup_unknown__"]:
            try:
                rec.recommend(user, k=10, media_id=media)
            except DataValidationError:
                if media is not None:
                    raise  # a known partner must answer; only "no partner" may be refused by design
    items = rec.recommend(users[0] if users else "__recsys_warmup_unknown__", k=1,
                          media_id=partners[0] if partners else None).item_ids
    if items:
        rec.similar_items(items[0], k=5, media_id=partners[0] if partners else None)


def _freeze_gc() -> None:
    """Collect, then hide every live object (the model's many) from the cyclic collector: a full collection would
    walk them all, a 100-300 ms pause (freed by reference count still; a loaded Recommender holds no cycles)."""
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The current :class:`Served` and its swaps. ``source``: a bundle directory or an MLflow model URI;
    ``poll_seconds``: how often the poller re-resolves the source (0: only on :meth:`reload`); ``key``: the
    signing key bundles must carry (None: ``$RECSYS_BUNDLE_KEY`` if set); ``on_load``: applied to every newly
    loaded Recommender under the swap lock, before the update log (the event journal's replay); ``on_result``:
    called with every reload's result dict (metrics); ``on_poll``: applied to the serving Recommender under the
    swap lock at every poll (other workers' journaled events and updates); ``max_log``: the in-memory update
    log's bound; ``freeze_gc``: after each load, collect and freeze the process's objects (:func:`_freeze_gc`)."""

    def __init__(self, source: str, *, poll_seconds: float = 30.0, key: str | bytes | None = None,
                 warm: bool = True, on_load: Callable[[Any], Any] | None = None,
                 loader: Callable[[str], Any] | None = None,
                 on_result: Callable[[dict], Any] | None = None,
                 on_poll: Callable[[Any], Any] | None = None, max_log: int = DEFAULT_MAX_LOG,
                 freeze_gc: bool = True) -> None:
        self.source = str(source)
        self.poll_seconds = float(poll_seconds)
        self._key, self._warm, self._on_load = key, warm, on_load
        self._loader, self._on_result, self._on_poll = loader, on_result, on_poll
        self._served: Served | None = None
        self._lock = threading.Lock()        # update log + swap
        self._log: list[tuple[str, Callable[[Any], Any]]] = []
        self.max_log, self.freeze_gc = int(max_log), bool(freeze_gc)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-reload")
        self._pending: Future | None = None
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._last: dict[str, Any] = {}
        self._refused: dict[str, str] = {}   # version -> why (the poller does not retry these)

    # ----- reading -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._served is not None

    def current(self) -> Served:
        """The version serving now (one read: the caller answers from this snapshot)."""
        served = self._served
        if served is None:
            raise ConfigError("no model is loaded yet")
        return served

    # ----- loading and swapping ------------------------------------------------------------------
    def _load(self, uri: str) -> Any:
        if self._loader is not None:
            return self._loader(uri)
        from recsys.loading import load

        return load(uri, key=self._key)

    def start(self) -> Served:
        """Load the source now (raises if it cannot be loaded) and start the poller."""
        result = self._reload_now(self.source)
        if result["result"] != "swapped":
            raise ArtifactError(f"cannot serve {self.source}: {result.get('error')}")
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="recsys-model-poller", daemon=True)
            self._poller.start()
        return self.current()

    def stop(self) -> None:
        """Stop the poller and the reload thread (a reload under way finishes first)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def reload(self, source: str | None = None) -> Future:
        """Reload in the background (``source``: switch to another bundle or URI); returns a Future of the result
        dict (``result``: swapped | unchanged | refused). A reload of the same source already queued is shared."""
        with self._pending_lock:
            if source is None and self._pending is not None and not self._pending.done():
                return self._pending
            fut = self._pool.submit(self._reload_now, source or self.source)
            if source is None:
                self._pending = fut
            return fut

    def _reload_now(self, source: str) -> dict[str, Any]:
        started = time.time()
        old = self._served
        try:
            name, version, uri = resolve_source(source)
        except RecsysError as e:
            return self._record("refused", source, None, str(e), started)
        if old is not None and version == old.version and source == self.source:
            return self._record("unchanged", source, version, None, started)
        try:
            rec = self._load(uri)
            if self._warm:
                _warm(rec)
            version = self._loaded_version(rec, uri, version)
            with self._lock:
                if self._on_load is not None:
                    self._on_load(rec)
                for n, (what, apply) in enumerate(self._log):
                    try:
                        apply(rec)
                    except RecsysError as e:
                        raise ArtifactError(f"replaying update {n} ({what}) of the service's update log failed: {e}") \
                            from None
                self._served = Served(rec=rec, version=version, name=name, uri=uri, loaded_at=time.time())
                self.source = source
        except Exception as e:  # any failure to load, warm or replay refuses this version; the old one serves on
            self._refused[version] = str(e)
            log.warning("model version %s from %s refused: %s", version, source, e)
            return self._record("refused", source, version, f"{type(e).__name__}: {e}", started)
        if self.freeze_gc:
            _freeze_gc()
        log.info("serving model version %s from %s", version, uri)
        return self._record("swapped", source, version, None, started, previous=None if old is None else old.version)

    @staticmethod
    def _loaded_version(rec: Any, uri: str, resolved: str) -> str:
        """A registry version stays its number; anything else is named by the manifest actually loaded (a bundle
        directory replaced between resolving and loading is reported as what was loaded)."""
        if uri.startswith("models:/") and resolved != "latest":
            return resolved
        manifest = getattr(rec, "bundle_manifest_", None)
        return manifest_digest(manifest)[:12] if isinstance(manifest, dict) else resolved

    def _record(self, result: str, source: str, version: str | None, error: str | None, started: float,
                previous: str | None = None) -> dict[str, Any]:
        served = self._served
        out = {"result": result, "source": source, "version": version, "error": error,
               "seconds": round(time.time() - started, 3), "at": time.time(),
               "model_version": None if served is None else served.version}
        if previous is not None:
            out["previous"] = previous
        if result != "unchanged" or not self._last:
            self._last = out
        if self._on_result is not None:
            try:
                self._on_result(out)
            except Exception:  # a metrics callback never fails a reload
                log.exception("reload listener failed")
        return out

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                _, version, _ = resolve_source(self.source)
            except RecsysError as e:
                log.warning("polling %s failed: %s", self.source, e)
                version = None
            served = self._served
            if version is not None and served is not None and version != served.version \
                    and version not in self._refused:
                try:
                    self.reload().result()
                except RuntimeError:  # the pool shut down while stopping
                    return
            if self._on_poll is not None and self._served is not None:
                try:
                    with self._lock:
                        self._on_poll(self._served.rec)
                except Exception:  # the next poll tries again
                    log.exception("the poll hook failed")

    # ----- updates through the service -----------------------------------------------------------
    def update(self, what: str, apply: Callable[[Any], Any], *, replay: bool = True,
               before: Callable[[], Any] | None = None) -> tuple[Any, Served]:
        """Apply ``apply(rec)`` to the serving version under the swap lock and, with ``replay``, log it for
        replay onto later versions; ``before()`` runs first under the same lock (a durable write such as the
        event journal's). A refused update (it raises) is not logged. Returns (its result, the version it hit).
        With ``replay`` and a full log (``max_log`` updates), :class:`UpdateLogFull` is raised and nothing changes."""
        with self._lock:
            served = self.current()
            if replay and len(self._log) >= self.max_log:
                raise UpdateLogFull(f"the service's in-memory update log holds {len(self._log)} updates, its bound, "
                                    "so this one could not be replayed onto a new version and is refused: start the "
                                    "service with --journal PATH (updates are then kept in the journal on disk), or "
                                    "publish a bundle with the changes and reload")
            if before is not None:
                before()
            out = apply(served.rec)
            if replay:
                self._log.append((what, apply))
            return out, served

    def locked(self, apply: Callable[[Any], Any]) -> Any:
        """``apply(rec)`` on the serving Recommender under the swap lock (nothing logged); returns its result."""
        with self._lock:
            return apply(self.current().rec)

    def status(self) -> dict[str, Any]:
        """What is serving, where from, the last reload's outcome and the refused versions (with why)."""
        served = self._served
        pending = self._pending is not None and not self._pending.done()
        return {"ready": served is not None, "source": self.source, "poll_seconds": self.poll_seconds,
                "model_version": None if served is None else served.version,
                "model_name": None if served is None else served.name,
                "model_uri": None if served is None else served.uri,
                "loaded_at": None if served is None else served.loaded_at,
                "reloading": pending, "last_reload": dict(self._last), "refused_versions": dict(self._refused),
                "update_log_entries": len(self._log)}
