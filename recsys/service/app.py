"""The FastAPI app of ``recsys serve``: :func:`create_app` builds it from :class:`ServiceSettings`.

Layers of one request, outside in: metrics (count and time it) -> limits (503 beyond the queue, 504 past the
deadline) -> the fast path of ``POST /v1/recommend`` (:mod:`recsys.service.fast`: a valid JSON body answered
without FastAPI's machinery) -> FastAPI (key check, JSON body, the endpoint in :mod:`recsys.service.routes`). The lifespan loads
the model before the socket accepts anything (a model that cannot be loaded stops the start with its error)
and stops the poller on shutdown, after uvicorn has finished the requests in flight.
"""

from __future__ import annotations

import logging
from typing import Any

from recsys.errors import RecsysError
from recsys.service.context import ServiceContext, ServiceError, error_answer
from recsys.service.holder import ModelHolder
from recsys.service.keys import KeyStore, keys_from_env, load_keys
from recsys.service.settings import ServiceSettings
from recsys.service.sync import JournalSync

__all__ = ["create_app", "create_app_from_env", "ServiceApp"]

log = logging.getLogger("recsys.service")
def _keys(settings: ServiceSettings) -> KeyStore | None:
    return load_keys(settings.keys) if settings.keys else keys_from_env()


def _journal(settings: ServiceSettings) -> Any:
    """The event journal: ``settings.journal``, else ``$RECSYS_EVENT_JOURNAL``, else None (events refused)."""
    import os

    path = settings.journal or os.environ.get("RECSYS_EVENT_JOURNAL")
    if not path:
        return None
    from recsys.feed.live import open_journal

    return open_journal(path)


def create_app(settings: ServiceSettings, *, keys: KeyStore | None | type[Ellipsis] = ...,
               loader: Any = None):
    """The service as an ASGI app (:class:`ServiceApp`; not started: uvicorn runs it). ``keys``: a :class:`KeyStore`,
    None for no keys, or (default) read from ``settings.keys`` / the environment. The model loads in the lifespan,
    with ``loader(uri)`` when given (default :func:`recsys.load`; the serving benchmark's stub model uses it)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from recsys.service.dashboard import router as dashboard_router
    from recsys.service.fast import RecommendFastPath
    from recsys.service.limits import LimitsMiddleware
    from recsys.service.metrics import MetricsMiddleware, ServiceMetrics
    from recsys.service.partner_routes import router as partner_router
    from recsys.service.partner_select_routes import router as partner_select_router
    from recsys.service.routes import router
    from recsys.version import __version__

    metrics = ServiceMetrics()
    journal = _journal(settings)

    # every version serves what was journaled (events and catalogue updates, in journal order), and each worker
    # applies what the others journaled before its next request (recsys/service/sync.py)
    sync = JournalSync(journal) if journal is not None else None
    holder = ModelHolder(settings.model, poll_seconds=settings.poll_seconds, warm=settings.warm, loader=loader,
                         on_load=None if sync is None else sync.on_load,
                         on_poll=None if sync is None else sync.catch_up,
                         on_result=lambda r: _count_reload(metrics, holder, r))
    ctx = ServiceContext(settings=settings, keys=_keys(settings) if keys is ... else keys, holder=holder,
                         metrics=metrics, journal=journal, sync=sync)

    app = FastAPI(title="recsys", version=__version__,
                  description="Guess-you-like feeds for media partners. Send 'Authorization: Bearer KEY'.")
    app.state.ctx = ctx
    app.include_router(router)
    app.include_router(dashboard_router)  # the partner dashboard at /ui
    app.include_router(partner_select_router)  # products to carry, partners to recruit
    app.include_router(partner_router)  # a partner's audience insight and lifecycle funnel

    @app.exception_handler(ServiceError)
    @app.exception_handler(RecsysError)
    async def service_error(_request, exc: Exception):
        status, body, headers = error_answer(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def body_error(_request, exc: RequestValidationError):
        parts = ["{}: {}".format(".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body", e.get("msg"))
                 for e in exc.errors()[:5]]
        return JSONResponse({"error": "; ".join(parts), "fix": "see the request schema at /docs"}, status_code=422)

    # POST /v1/recommend skips FastAPI when its body is valid (recsys/service/fast.py); FastAPI answers the rest
    limits = LimitsMiddleware(RecommendFastPath(app, ctx), max_concurrency=settings.max_concurrency,
                              max_queue=settings.max_queue, deadline_s=settings.deadline_s,
                              on_reject=lambda r: metrics.rejected.labels(r).inc())
    ctx.limits = limits
    return ServiceApp(MetricsMiddleware(limits, metrics, gauges=lambda: (limits.depth(), limits.running())), ctx,
                      app)


class ServiceApp:
    """The ASGI app uvicorn runs: HTTP through metrics -> limits -> fast path -> FastAPI (``fastapi``); the
    lifespan handled here: startup loads the model (a RecsysError fails the start with its message alone, no
    traceback), shutdown (after uvicorn has finished the requests in flight) stops the poller and the reload
    thread."""

    def __init__(self, http: Any, ctx: ServiceContext, fastapi: Any) -> None:
        self.http, self.ctx, self.fastapi = http, ctx, fastapi

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.http(scope, receive, _with_worker(send) if scope["type"] == "http" else send)
            return
        import anyio

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await anyio.to_thread.run_sync(self.ctx.holder.start)
                except RecsysError as e:  # uvicorn logs the message and exits
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                _hook_sigterm(self.ctx)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await anyio.to_thread.run_sync(self.ctx.holder.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _with_worker(send: Any) -> Any:
    """``send`` adding ``X-Recsys-Worker: <pid>`` to the response (which worker process answered)."""
    import os

    worker = str(os.getpid()).encode()

    async def send_with_worker(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"x-recsys-worker", worker)]}
        await send(message)

    return send_with_worker


def _hook_sigterm(ctx: ServiceContext) -> None:
    """Chain a handler in front of uvicorn's SIGTERM handler (installed before the lifespan starts): it marks the
    service as shutting down (``/readyz`` 503) and hands the signal on to uvicorn after ``drain_seconds`` (the
    worker accepts requests meanwhile), or at once on a second SIGTERM. Signals can be hooked from the main
    thread only; elsewhere (a test client) nothing is hooked."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def on_sigterm(sig: int, frame: Any) -> None:
        first = not ctx.shutting_down.is_set()
        ctx.shutting_down.set()
        drain = ctx.settings.drain_seconds
        if first and drain > 0:
            log.info("SIGTERM: /readyz answers 503; still accepting requests for %.1f s, then shutting down", drain)
            timer = threading.Timer(drain, previous, (sig, frame))  # uvicorn's handler only sets flags
            timer.daemon = True
            timer.start()
        else:
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _count_reload(metrics: Any, holder: ModelHolder, result: dict) -> None:
    metrics.reloads.labels(result["result"]).inc()
    if holder.ready:
        served = holder.current()
        metrics.set_model(served.version, served.name)


def create_app_from_env():
    """The app from ``RECSYS_SERVE_*`` variables (:meth:`ServiceSettings.from_env`), the process's intra-op
    threads limited to ``RECSYS_SERVE_THREADS`` (1 unless set): uvicorn's factory for ``recsys serve --workers N``
    and ``uvicorn --factory recsys.service.app:create_app_from_env``."""
    from recsys.threads import limit_threads

    settings = ServiceSettings.from_env()
    limit_threads(settings.threads)  # a worker process of its own (the factory runs in each)
    return create_app(settings)
