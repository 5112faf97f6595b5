"""Bounded concurrency, a bounded queue and a per-request deadline, as one ASGI middleware.

At most ``max_concurrency`` requests run at once and at most ``max_queue`` wait for a slot; a request beyond
both gets ``503`` with ``Retry-After`` at once (never a pile-up). A request that has not started its response
``deadline_s`` seconds after it arrived (queue time included) gets ``504``; its work, if already running in
a thread, finishes in the background and keeps its slot until then, so the bound stays true. The probe and
metrics paths (``/healthz``, ``/readyz``, ``/metrics``) bypass the limits so that an overloaded service still
answers its probes, and so does ``/v1/admin/reload`` (admin only; it waits for the reload thread).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["LimitsMiddleware", "EXEMPT_PATHS"]

# probes and metrics must answer under overload; an admin reload only waits for the reload thread (a large model
# may take longer than the deadline to load) and is shared by concurrent callers
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/admin/reload"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def _json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


class LimitsMiddleware:
    """``app`` behind at most ``max_concurrency`` running and ``max_queue`` waiting requests, each answered
    within ``deadline_s`` (None: no deadline). ``on_reject(reason)`` is called for each 503 ("overload") and
    504 ("deadline"); ``depth()`` and ``running()`` are the current queue and in-flight counts."""

    def __init__(self, app: Any, *, max_concurrency: int = 8, max_queue: int = 64, deadline_s: float | None = 10.0,
                 retry_after_s: int = 1, on_reject: Callable[[str], None] | None = None) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError("max_concurrency must be >= 1 and max_queue >= 0")
        self.app, self.max_concurrency, self.max_queue = app, max_concurrency, max_queue
        self.deadline_s, self.retry_after_s, self.on_reject = deadline_s, retry_after_s, on_reject
        self._running = 0
        self._waiting = 0
        self._slots: asyncio.Semaphore | None = None

    def depth(self) -> int:
        return self._waiting

    def running(self) -> int:
        return self._running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self._slots is None:  # created inside the running loop (one loop per worker process)
            self._slots = asyncio.Semaphore(self.max_concurrency)
        if self._running + self._waiting >= self.max_concurrency + self.max_queue:
            await self._reject(send, 503, "overload", "the service is at its concurrency and queue limits; "
                                                      "retry after the Retry-After seconds")
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.deadline_s is None else loop.time() + self.deadline_s
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), None if deadline is None else deadline - loop.time())
        except TimeoutError:
            await self._reject(send, 504, "deadline", f"no slot within the {self.deadline_s} s deadline; retry later")
            return
        finally:
            self._waiting -= 1
        self._running += 1
        started = False
        timed_out = False

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if timed_out:
                return  # the 504 went out; the late answer is dropped
            started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))

        def release(_: asyncio.Future) -> None:
            self._running -= 1
            self._slots.release()

        task.add_done_callback(release)
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            task.result()  # re-raise what the app raised
            return
        if started:  # the response is already under way: let it finish
            await task
            return
        timed_out = True
        task.cancel()  # a thread already running keeps its slot until it returns (release above)
        await self._reject(send, 504, "deadline", f"the request took longer than the {self.deadline_s} s deadline")

    async def _reject(self, send: Send, status: int, reason: str, message: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        headers = [(b"retry-after", str(self.retry_after_s).encode())]
        await _json(send, status, {"error": message, "reason": reason}, headers)
