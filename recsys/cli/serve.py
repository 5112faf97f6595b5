"""`recsys serve`: the HTTP service (FastAPI on uvicorn) over one hot-swappable model.

Registered by recsys/cli/__init__.py; the body imports lazily so that `recsys --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.service.settings import ServiceSettings

LOCAL_ONLY_HOST = "127.0.0.1"


def serve(
    model: Annotated[str, typer.Option("--model", help="A bundle directory or an MLflow URI (models:/name@alias).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (without --keys: 127.0.0.1 only).")]
    = LOCAL_ONLY_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes (each loads the model).")] = 1,
    keys: Annotated[Path | None, typer.Option("--keys", help="keys.yaml: admin: KEY, partners: {ID: KEY} "
                                                            "(else RECSYS_ADMIN_KEY / RECSYS_PARTNER_KEYS).")] = None,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", help="How often to re-resolve the model source "
                                                                       "(0: only on POST /v1/admin/reload).")] = 30.0,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="Requests running at once per worker.")]
    = ServiceSettings.max_concurrency,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests waiting per worker; beyond: 503.")]
    = ServiceSettings.max_queue,
    deadline: Annotated[float, typer.Option("--deadline", help="Seconds a request may take (queue included); "
                                                               "beyond: 504.")] = 10.0,
    journal: Annotated[Path | None, typer.Option("--journal", help="The event journal (SQLite file) of "
                                                                   "POST /v1/events; without it events get 503.")]
    = None,
    graceful_timeout: Annotated[int | None, typer.Option("--graceful-timeout", help="On SIGTERM, seconds to wait for "
                                                                                    "requests in flight (default: "
                                                                                    "until they finish).")] = None,
    drain_seconds: Annotated[float, typer.Option("--drain-seconds", min=0, help="On SIGTERM, seconds to go on "
                                                 "accepting requests with /readyz at 503 before shutting down.")]
    = 0.0,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Intra-op threads of torch, faiss and BLAS per "
                                        "worker (one feed at a time each; 0: the libraries' defaults).")] = 1,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="uvicorn's line per request "
                                             "(about 0.05 ms of CPU each; /metrics counts requests either way).")]
    = True,
) -> None:
    """Serve feeds over HTTP: /v1/recommend, /v1/similar, catalogue, events, /v1/model, /metrics, /docs."""
    import dataclasses

    from recsys.errors import RecsysError

    try:
        settings = _settings(model, keys, poll_seconds, max_concurrency, max_queue, deadline, journal)
        settings = dataclasses.replace(settings, drain_seconds=drain_seconds, threads=threads)
        _check_host(host, settings)
        from recsys.service.holder import resolve_source

        resolve_source(settings.model)  # a typo in --model fails here, before any worker starts
    except RecsysError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    import uvicorn

    from recsys.service.protocol import DrainingProtocol

    common = dict(host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level="info",
                  access_log=access_log, http=DrainingProtocol)
    if workers > 1:
        import os

        os.environ.update(settings.to_env())  # the workers build their app from these (create_app_from_env)
        uvicorn.run("recsys.service.app:create_app_from_env", factory=True, workers=workers, **common)
    else:
        from recsys.service.app import create_app
        from recsys.service.server import DrainingServer
        from recsys.threads import limit_threads

        limit_threads(settings.threads)
        server = DrainingServer(uvicorn.Config(create_app(settings), **common))
        try:
            server.run()  # what uvicorn.run does with one worker, with the draining shutdown
        except KeyboardInterrupt:  # Ctrl-C: uvicorn shut down gracefully, then re-raised it (uvicorn.run ignores it)
            pass
        if not server.started:
            raise typer.Exit(code=3)  # uvicorn's STARTUP_FAILURE (e.g. the port is taken)


def _settings(model: str, keys: Path | None, poll_seconds: float, max_concurrency: int, max_queue: int,
              deadline: float, journal: Path | None):
    return ServiceSettings(model=model, keys=None if keys is None else str(keys), poll_seconds=poll_seconds,
                           max_concurrency=max_concurrency, max_queue=max_queue, deadline_s=deadline,
                           journal=None if journal is None else str(journal))


def _check_host(host: str, settings) -> None:
    """Without keys the service answers anyone who can reach it: only 127.0.0.1 is allowed then."""
    from recsys.errors import ConfigError
    from recsys.service.keys import keys_from_env, load_keys

    store = load_keys(settings.keys) if settings.keys else keys_from_env()
    if store is None and host != LOCAL_ONLY_HOST:
        raise ConfigError(f"refusing to serve on {host} without API keys: pass --keys keys.yaml (admin: KEY, "
                          f"partners: {{ID: KEY}}) or set RECSYS_ADMIN_KEY, or serve on {LOCAL_ONLY_HOST}")
