"""The HTTP floor of the serving benchmark: a bare FastAPI endpoint on uvicorn that returns a fixed small JSON.

``python -m recsys.bench.serve_floor --port P`` serves ``POST /v1/recommend`` with the settings ``recsys serve``
gives uvicorn (one process, ``log_level="info"`` with its access log, the default HTTP and event-loop
implementations) and a synchronous FastAPI endpoint (run in the thread pool; the service's own
``POST /v1/recommend`` skips FastAPI when the body is valid, :mod:`recsys.service.fast`), so wrk's requests cost
what FastAPI's plainest endpoint costs: HTTP, routing, one thread hop, a small JSON answer.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["FIXED", "create_floor_app", "main"]

FIXED = {"user_id": 0, "media_id": "floor", "model_version": "floor", "fallback": None, "notes": [],
         "items": [{"rank": 1, "item_id": 0, "score": 0.0}]}


def create_floor_app() -> Any:
    """The floor app: ``POST /v1/recommend`` and ``GET /readyz``, each a fixed JSON."""
    from fastapi import FastAPI

    app = FastAPI(title="recsys benchmark floor")

    @app.post("/v1/recommend")
    def recommend() -> dict:
        return FIXED

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready", "model_version": "floor"}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the floor app on 127.0.0.1:``--port`` until SIGTERM."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_floor_app(), host="127.0.0.1", port=args.port, timeout_graceful_shutdown=None,
                log_level="info")


if __name__ == "__main__":
    main()
