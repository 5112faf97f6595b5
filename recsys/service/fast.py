"""The fast path of ``POST /v1/recommend``: the service's busiest endpoint answered without FastAPI's machinery.

A feed costs a few milliseconds of CPU; FastAPI's request handling (dependency solving, two hops to the thread
pool, the response model) cost about as much again per request. :class:`RecommendFastPath` sits between the
limits and FastAPI and answers a ``POST /v1/recommend`` whose body is JSON (``Content-Type: application/json``)
that :class:`~recsys.service.schemas.RecommendRequest` accepts: the same key check, the same answer
(:func:`recsys.service.routes.recommend_content`), the same errors (:func:`recsys.service.context.error_answer`),
the same JSON as FastAPI's ``JSONResponse`` (:func:`render_json`). Every other request, and a body that is not
JSON or does not validate, goes to FastAPI unchanged (the body replayed), which answers it exactly as before (its
422 naming the field). ``/docs`` still shows the endpoint: FastAPI's route stays registered.

Without an event journal the feed is computed on the event loop, with no hop to a thread: a feed is CPU work
that holds the GIL, so a thread would only add a switch, and the limits middleware already bounds how many
requests run at once (the others wait in its queue, where probes and ``/metrics`` pass them). With a journal,
bringing the model up to date with other workers' updates may wait for the journal's lock or the swap lock, so
the request runs in the thread pool, as FastAPI would run it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from recsys.service.context import ServiceContext, error_answer
from recsys.service.routes import recommend_content
from recsys.service.schemas import RecommendRequest

__all__ = ["RecommendFastPath", "render_json"]

log = logging.getLogger("recsys.service")

try:
    import orjson as _orjson
except ImportError:  # the serving extra installs it; without it the standard library writes the JSON
    _orjson = None

PATH = "/v1/recommend"
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass(frozen=True)
class _Route:
    """What ``scope["route"]`` carries for the metrics: the route's path template (FastAPI puts its route there)."""

    path: str
    methods: frozenset = frozenset({"POST"})


_ROUTE = _Route(PATH)


def render_json(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON, the values Starlette's ``JSONResponse`` sends: with orjson when it is
    installed (the serving extra; several times faster than :func:`json.dumps` on a feed; it may spell a number
    otherwise, 0.00001 for 1e-05), else or for what orjson refuses (an int beyond 64 bits) the standard library."""
    if _orjson is not None:
        try:
            return _orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                   headers: dict | None = None) -> None:
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands out ``body`` again (read by the fast path before it handed the request on)."""
    pending = True

    async def replay() -> dict:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parse(body: bytes, content_type: bytes | None) -> RecommendRequest | None:
    """The validated request, or None for anything FastAPI should answer itself (its error messages)."""
    if not body or content_type is None or content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        return None
    try:
        return RecommendRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # not JSON (json.JSONDecodeError is a ValueError), or a bad field
        return None


class RecommendFastPath:
    """ASGI: ``POST /v1/recommend`` with a valid JSON body answered here, everything else by ``app`` (FastAPI)."""

    def __init__(self, app: Any, ctx: ServiceContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        request = _parse(body, content_type)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = _ROUTE
        await self._answer(scope, send, request, None if authorization is None else authorization.decode("latin-1"))

    async def _answer(self, scope: dict, send: Send, request: RecommendRequest, authorization: str | None) -> None:
        ctx = self.ctx
        try:
            who = ctx.authenticate(authorization)
            scope.setdefault("state", {})["partner"] = who.label  # the metrics label (never the key)
            if ctx.sync is None:
                content = recommend_content(ctx, who, request)
            else:
                import anyio

                content = await anyio.to_thread.run_sync(recommend_content, ctx, who, request)
        except Exception as e:
            answer = error_answer(e)
            if answer is None:  # as Starlette answers an unexpected error; uvicorn logs the traceback
                await _respond(send, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
                raise
            status, content, headers = answer
            await _respond(send, status, render_json(content), headers=headers)
            return
        await _respond(send, 200, render_json(content))
