"""Load generators of the serving benchmark and the per-request records they leave.

* :func:`run_wrk`: ``wrk`` (closed loop) with one thread per connection, driving a Lua script that POSTs
  ``/v1/recommend`` bodies for random known (user, partner) pairs with that partner's key. Each thread logs every
  request it sends (``S``, wall-clock time from ``clock_gettime`` through LuaJIT's FFI) and every response
  (``R``: sent, received, status, the body's ``model_version``); with one connection per thread the lines
  alternate, so an ``S`` not followed by its ``R`` is a request that got no answer (a connection error, or still
  in flight when wrk stopped).
* :func:`run_open_loop`: an open-loop generator of our own (Debian has no wrk2): requests at a fixed rate on
  asyncio keep-alive connections (a new one whenever none is idle), each timed from its *scheduled* start, so a
  slow server cannot slow the arrivals down (no coordinated omission).

Both return :class:`Record` lists; :func:`summarize` turns one into counts and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.errors import ConfigError

__all__ = ["Record", "Target", "run_wrk", "run_open_loop", "summarize", "wrk_binary"]


@dataclass(frozen=True)
class Record:
    """One request: when it was sent (or scheduled, open loop) and answered (``time.time()`` seconds), the HTTP
    status and ``model_version`` (None: no answer)."""

    sent: float
    received: float | None
    status: int | None
    version: str | None
    at_stop: bool = False  # unanswered and the last request of its wrk connection: in flight when wrk stopped


@dataclass(frozen=True)
class Target:
    """Where and what to send: the server's URL and the (JSON body, API key) pairs drawn from at random."""

    url: str
    requests: list[tuple[str, str]]


def wrk_binary() -> str:
    """The ``wrk`` executable, or a ConfigError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise ConfigError("the serving benchmark drives the service with wrk, which is not installed: "
                          "apt-get install -y wrk (Debian/Ubuntu) or see https://github.com/wg/wrk")
    return path


_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } recsys_ts; int clock_gettime(int, recsys_ts *); ]]
local ts = ffi.new("recsys_ts")
local function now() ffi.C.clock_gettime(0, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9 end
local LOGDIR = [==[%(logdir)s]==]
local REQS = {
%(reqs)s
}
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args)
  math.randomseed(%(seed)d + id)
  log = io.open(LOGDIR .. "/conn-" .. id .. ".log", "w")
  sent = nil
end
function request()
  local r = REQS[math.random(#REQS)]
  if id == 1 and not verified then
    verified = true  -- wrk calls the first thread's request() once before the run to check it; it is never sent
  else
    sent = now()
    log:write(string.format("S %%.6f\n", sent))
  end
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json",
                                              ["Authorization"] = "Bearer " .. r[2]}, r[1])
end
function response(status, headers, body)
  local v = body:match('"model_version":"([^"]*)"') or "-"
  log:write(string.format("R %%.6f %%.6f %%d %%s\n", sent or 0, now(), status, v))
  sent = nil
end
function done(summary, latency, requests)
  local f = io.open(LOGDIR .. "/summary.json", "w")
  local e = summary.errors
  f:write(string.format('{"requests": %%d, "duration_s": %%.6f, "errors": {"connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d}, "latency_ms": {"p50": %%.3f, "p99": %%.3f, "max": %%.3f}}',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
  f:close()
end
"""


def _lua(target: Target, logdir: Path, seed: int) -> str:
    reqs = ",\n".join(f"  {{[==[{body}]==], [==[{key}]==]}}" for body, key in target.requests)
    return _LUA % {"logdir": str(logdir), "reqs": reqs, "seed": seed}


def start_wrk(target: Target, connections: int, seconds: int, workdir: Path, *, seed: int = 0) -> subprocess.Popen:
    """Start wrk against ``target`` (``connections`` connections, one thread each, ``seconds`` long) logging into
    ``workdir``; :func:`finish_wrk` waits for it and reads the records."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "load.lua"
    script.write_text(_lua(target, workdir, seed))
    cmd = [wrk_binary(), "-t", str(connections), "-c", str(connections), "-d", f"{max(1, int(seconds))}s",
           "--timeout", "30s", "-s", str(script), target.url]
    return subprocess.Popen(cmd, stdout=(workdir / "wrk.out").open("wb"), stderr=subprocess.STDOUT)


def finish_wrk(proc: subprocess.Popen, workdir: Path, timeout: float) -> tuple[list[Record], dict]:
    """Wait for a wrk run; every request it logged and wrk's own summary (``duration_s``, errors, latency)."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ConfigError(f"wrk did not finish within {timeout} s; see {workdir / 'wrk.out'}") from None
    summary_file = workdir / "summary.json"
    if code != 0 or not summary_file.exists():
        out = (workdir / "wrk.out").read_text(errors="replace")[-2000:]
        raise ConfigError(f"wrk failed (exit {code}): {out}")
    records: list[Record] = []
    for log in sorted(workdir.glob("conn-*.log")):
        pending: float | None = None
        for line in log.read_text().splitlines():
            parts = line.split()
            if parts[0] == "S":
                if pending is not None:
                    records.append(Record(pending, None, None, None))
                pending = float(parts[1])
            elif parts[0] == "R" and len(parts) == 5:
                records.append(Record(float(parts[1]), float(parts[2]), int(parts[3]),
                                      None if parts[4] == "-" else parts[4]))
                pending = None
        if pending is not None:
            records.append(Record(pending, None, None, None, at_stop=True))
    return records, json.loads(summary_file.read_text())


def run_wrk(target: Target, connections: int, seconds: int, workdir: Path, *, seed: int = 0) -> tuple[list[Record],
                                                                                                     dict]:
    """One closed-loop wrk run (see :func:`start_wrk`): its records and wrk's summary."""
    return finish_wrk(start_wrk(target, connections, seconds, workdir, seed=seed), workdir, seconds + 120)


async def _send(pool: list, host: str, port: int, payload: bytes, limits: asyncio.Semaphore,
                ) -> tuple[int | None, str | None]:
    """One request on an idle pooled connection (one idle for 4 s or more is closed first: uvicorn drops idle
    keep-alive connections after 5 s) or a new one; (status, model_version), (None, None) without an answer."""
    async with limits:
        conn = None
        while pool:
            reader, writer, last = pool.pop()
            if time.monotonic() - last < 4.0:
                conn = (reader, writer)
                break
            writer.close()
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            if conn is not None:
                conn[1].close()
            return None, None
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            pool.append((reader, writer, time.monotonic()))
    try:
        version = json.loads(body).get("model_version") if status < 300 else None
    except ValueError:
        version = None
    return status, version


async def _open_loop(target: Target, rate: float, seconds: float, seed: int, max_connections: int,
                     warmup: float) -> tuple[list[Record], dict]:
    host_port = target.url.split("://", 1)[1]
    host, port = host_port.split(":")[0], int(host_port.split(":")[1])
    rng = random.Random(seed)
    payloads = [(f"POST /v1/recommend HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer {key}\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}").encode()
                for body, key in target.requests]
    pool: list = []
    limits = asyncio.Semaphore(max_connections)
    records: list[Record] = []
    loop = asyncio.get_running_loop()
    offset = time.time() - loop.time()  # loop.time() (monotonic) -> wall clock, for records comparable with wrk's
    n_warm, n = int(rate * warmup), int(rate * seconds)
    t0 = loop.time() + 0.05
    lag = 0.0
    warm_records: list[Record] = []

    async def one(at: float, payload: bytes, into: list[Record]) -> None:
        status, version = await _send(pool, host, port, payload, limits)
        into.append(Record(at + offset, loop.time() + offset, status, version))

    tasks = []
    for i in range(n_warm + n):  # one schedule: the measured requests follow the warm-up's without a gap
        at = t0 + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if i >= n_warm:
            lag = max(lag, loop.time() - at)
        tasks.append(asyncio.ensure_future(one(at, payloads[rng.randrange(len(payloads))],
                                               records if i >= n_warm else warm_records)))
    await asyncio.gather(*tasks)
    for _, writer, _ in pool:
        writer.close()
    warm_ok = sum(1 for r in warm_records if r.status is not None and 200 <= r.status < 300)
    return records, {"rate_requested": rate, "requests_scheduled": n, "seconds": seconds,
                     "max_schedule_lag_ms": lag * 1e3, "max_connections": max_connections,
                     "warmup_seconds": warmup, "warmup_requests": n_warm, "warmup_2xx": warm_ok}


def run_open_loop(target: Target, rate: float, seconds: float, *, seed: int = 0,
                  max_connections: int = 512, warmup: float = 0.0) -> tuple[list[Record], dict]:
    """``rate`` requests/s for ``seconds`` whatever the answers' pace (open loop); latency counts from each
    request's scheduled time. Returns the records and the generator's own figures (its worst lag behind schedule).

    ``warmup``: seconds of the same schedule sent first and left out of the records, as wrk2 leaves out its
    calibration period: the generator starts with no open connection and opens one whenever none is idle, so its
    first fraction of a second measures a burst of connection set-ups (the service answering new connections while
    busy), not the steady rate. The warm-up's connections stay in the pool for the measured requests."""
    return asyncio.run(_open_loop(target, rate, seconds, seed, max_connections, float(warmup)))


def _pct(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    a = np.asarray(values) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def summarize(records: list[Record], seconds: float) -> dict:
    """Counts (sent = ok + non_2xx + unanswered + in_flight_at_stop: the last request of a wrk connection, still
    unanswered when wrk stopped, is no failure of the server) and, over the 2xx answers, throughput per second of ``seconds``
    and latency percentiles in ms; ``statuses``: non-2xx answers by status."""
    ok = [r for r in records if r.status is not None and 200 <= r.status < 300]
    answered = [r for r in records if r.status is not None]
    statuses: dict[str, int] = {}
    for r in answered:
        if not 200 <= r.status < 300:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    at_stop = sum(1 for r in records if r.at_stop)
    return {"sent": len(records), "ok": len(ok), "non_2xx": len(answered) - len(ok),
            "unanswered": len(records) - len(answered) - at_stop, "in_flight_at_stop": at_stop, "statuses": statuses, "seconds": seconds,
            "ok_per_s": len(ok) / seconds if seconds > 0 else None,
            "latency_ms": _pct([r.received - r.sent for r in ok])}
