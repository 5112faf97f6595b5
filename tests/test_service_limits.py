"""LimitsMiddleware on a plain ASGI app whose requests take a known time: the bound on running and queued
requests (503 + Retry-After beyond it, at once), the deadline (504, the slot held until the work ends) and the
probe paths that bypass the limits."""

from __future__ import annotations

import asyncio
import json
import time

import anyio

from recsys.service.limits import LimitsMiddleware


def _slow_app(seconds: float, log: list[str]):
    """Requests that take ``seconds`` in a worker thread, as FastAPI runs a sync endpoint (anyio's run_sync:
    cancelling the caller waits for the thread); probe paths answer at once."""
    def work() -> None:
        log.append("start")
        time.sleep(seconds)
        log.append("end")

    async def app(scope, receive, send):
        if scope["path"] != "/healthz":
            await anyio.to_thread.run_sync(work)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def _call(mw: LimitsMiddleware, path: str = "/v1/recommend") -> tuple[int, dict, float]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await mw({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"]), loop.time() - t0


def test_bounded_queue_rejects_at_once() -> None:
    async def main():
        log: list[str] = []
        rejected: list[str] = []
        mw = LimitsMiddleware(_slow_app(0.2, log), max_concurrency=2, max_queue=1, deadline_s=5,
                              on_reject=rejected.append)
        results = await asyncio.gather(*[_call(mw) for _ in range(6)])
        return results, rejected, mw

    results, rejected, mw = asyncio.run(main())
    codes = sorted(code for code, _, _ in results)
    assert codes == [200, 200, 200, 503, 503, 503]  # 2 running + 1 queued; the other 3 refused
    for code, headers, took in results:
        if code == 503:
            assert headers[b"retry-after"] == b"1" and took < 0.1  # at once, not after waiting
    assert rejected == ["overload"] * 3 and mw.running() == 0 and mw.depth() == 0


def test_deadline_504_keeps_the_slot_until_the_work_ends() -> None:
    async def main():
        log: list[str] = []
        mw = LimitsMiddleware(_slow_app(0.3, log), max_concurrency=1, max_queue=0, deadline_s=0.1)
        code, headers, took = await _call(mw)
        busy = mw.running()  # the timed-out work still runs and holds its slot
        refused = await _call(mw)
        await asyncio.sleep(0.35)
        return code, headers, took, busy, refused[0], mw.running(), log

    code, headers, took, busy, refused, running_after, log = asyncio.run(main())
    assert code == 504 and b"retry-after" in headers and took < 0.25
    assert busy == 1 and refused == 503 and running_after == 0 and log == ["start", "end"]


def test_probes_bypass_the_limits() -> None:
    async def main():
        mw = LimitsMiddleware(_slow_app(0.2, []), max_concurrency=1, max_queue=0, deadline_s=5)
        busy = asyncio.ensure_future(_call(mw))
        await asyncio.sleep(0.05)
        probe = await _call(mw, "/healthz")
        other = await _call(mw)
        await busy
        return probe[0], other[0]

    assert asyncio.run(main()) == (200, 503)


def test_rejection_body_is_json() -> None:
    async def main():
        sent: list[dict] = []
        mw = LimitsMiddleware(_slow_app(0.2, []), max_concurrency=1, max_queue=0, deadline_s=5)
        busy = asyncio.ensure_future(_call(mw))
        await asyncio.sleep(0.05)

        async def send(m):
            sent.append(m)

        async def receive():
            return {"type": "http.request", "body": b""}

        await mw({"type": "http", "path": "/v1/recommend", "headers": []}, receive, send)
        await busy
        return json.loads(sent[1]["body"])

    body = asyncio.run(main())
    assert body["reason"] == "overload" and "Retry-After" in body["error"]
