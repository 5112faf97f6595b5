"""CPU per answer of ``recsys serve`` against ``recommend`` in process: where the service's own overhead is measured.

``python -m recsys.bench.serve_cpu --bundle DIR [--requests N] [--servers service,stub,floor] [--rate R]``:

* **in process**: ``N`` calls of ``recommend`` on the loaded bundle, CPU seconds of this process, with the
  libraries' default intra-op threads and with one (as the service runs a feed);
* **service**: ``recsys serve`` on 127.0.0.1 (a free port, partner keys, the poller off), the same ``N`` requests
  sent one after another on one keep-alive connection, CPU seconds (user + system, psutil) of the server process;
* **stub**: the same service (uvicorn with ``recsys serve``'s settings, keys, limits, metrics) over a model whose
  ``recommend`` hands back feeds computed before the start (a new :class:`~recsys.feed.result.Feed` each call, so
  ``to_dict`` and the JSON run every time): what HTTP, the key check, the limits, the metrics and the answer's JSON
  cost per request, without the feed's own few milliseconds and their variance;
* **floor**: the bare FastAPI endpoint (:mod:`recsys.bench.serve_floor`).

CPU time, unlike wall time, is little moved by other work on a shared machine. With ``--rate``, an open loop at
that many requests per second for ``--seconds`` against each server gives p50 and p99
(:func:`recsys.bench.serve_load.run_open_loop`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["in_process_cpu", "server_cpu", "StubModel", "main"]

SERVERS = ("service", "stub", "floor")


def in_process_cpu(rec: Any, picks: list, k: int) -> dict:
    """CPU ms per ``recommend`` call over ``picks`` in this process (after 50 warm-up calls)."""
    for u, m in picks[:50]:
        rec.recommend(u, k=k, media_id=m)
    cpu, t = time.process_time(), time.perf_counter()
    for u, m in picks:
        rec.recommend(u, k=k, media_id=m)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - t
    return {"calls": len(picks), "cpu_ms_per_call": 1e3 * cpu / len(picks), "wall_ms_per_call": 1e3 * wall / len(picks)}


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def server_cpu(url: str, pid: int, bodies: list[tuple[str, str]]) -> dict:
    """Server CPU ms per answer and client-side latency for ``bodies`` (JSON, key) sent one by one on one
    keep-alive connection (the first 50 once more before, as a warm-up, not counted)."""
    host, port = url.split("://", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def send(body: str, key: str) -> int:
        conn.request("POST", "/v1/recommend", body=body.encode(),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        r.read()
        return r.status

    for body, key in bodies[:50]:
        send(body, key)
    lat, statuses = [], {}
    cpu = _cpu(pid)
    for body, key in bodies:
        t = time.perf_counter()
        status = send(body, key)
        lat.append(time.perf_counter() - t)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    used = _cpu(pid) - cpu
    conn.close()
    a = np.asarray(lat) * 1e3
    return {"requests": len(bodies), "statuses": statuses, "server_cpu_ms_per_answer": 1e3 * used / len(bodies),
            "latency_ms": {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}}


class StubModel:
    """A loaded Recommender whose ``recommend`` answers the requests seen at construction from feeds computed then
    (a fresh Feed each call); every other attribute is the Recommender's own."""

    def __init__(self, rec: Any, picks: list, k: int) -> None:
        self.rec, self._feeds = rec, {}
        for u, m in picks:
            f = rec.recommend(u, k=k, media_id=m)
            self._feeds[(u, m)] = (f, dict(f._columns) if f._frame is None else f._frame)

    def recommend(self, user_id: Any, k: int = 20, media_id: str | None = None, exclude: Any = (),
                  context: Any = None) -> Any:
        from recsys.feed.result import Feed

        f, items = self._feeds[(user_id, media_id)]
        return Feed(f.user_id, f.media_id, dict(items) if isinstance(items, dict) else items, f.fallback,
                    list(f.notes), score_kind=f.score_kind, objective=f.objective, catalogue=f._catalogue)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rec, name)


def _plan(bundle: str, n: int, k: int) -> tuple[Any, list, dict]:
    import recsys
    from recsys.bench.serve import _requests

    rec = recsys.load(bundle)
    picks, keys = _requests(rec, n, k, 0)
    return rec, picks, keys


def serve_stub(argv: list[str]) -> None:
    """``serve-stub --bundle B --keys K --port P --requests N --k K``: the service over a :class:`StubModel`, run
    by uvicorn as ``recsys serve`` runs it."""
    import uvicorn

    from recsys.service.app import create_app
    from recsys.service.settings import ServiceSettings

    p = argparse.ArgumentParser()
    for name in ("--bundle", "--keys"):
        p.add_argument(name, required=True)
    for name, default in (("--port", 0), ("--requests", 2000), ("--k", 20)):
        p.add_argument(name, type=int, default=default)
    a = p.parse_args(argv)
    rec, picks, _ = _plan(a.bundle, a.requests, a.k)
    stub = StubModel(rec, picks, a.k)
    app = create_app(ServiceSettings(model=a.bundle, keys=a.keys, poll_seconds=0, warm=False),
                     loader=lambda uri: stub)
    uvicorn.run(app, host="127.0.0.1", port=a.port, timeout_graceful_shutdown=None, log_level="info")


def _measure(name: str, args: list[str], tmp: Path, bodies: list, rate: float, seconds: float) -> dict:
    from recsys.bench.serve_load import Target, run_open_loop, summarize
    from recsys.bench.serve_proc import ServerProcess

    srv = ServerProcess(args, tmp / f"{name}.log", cwd=tmp)
    try:
        out = server_cpu(srv.url, srv.proc.pid, bodies)
        if rate > 0:
            records, gen = run_open_loop(Target(srv.url, bodies), rate, seconds)
            s = summarize(records, seconds)
            out["open_loop"] = {"rate": rate, "ok_per_s": s["ok_per_s"], "statuses": s["statuses"],
                                "latency_ms": s["latency_ms"], "max_schedule_lag_ms": gen["max_schedule_lag_ms"]}
    finally:
        srv.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the figures as JSON (see the module docstring); ``serve-stub`` first: run the stub server."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-stub"]:
        serve_stub(argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--servers", default=",".join(SERVERS), help=f"which of {','.join(SERVERS)} to measure")
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    bundle = str(Path(args.bundle).resolve())
    rec, picks, keys = _plan(bundle, args.requests, args.k)
    from recsys.bench.serve_inproc import _one_intra_op_thread

    out: dict = {"bundle": bundle, "requests": args.requests, "k": args.k,
                 "in_process": in_process_cpu(rec, picks, args.k)}
    with _one_intra_op_thread():  # as the service computes a feed (recsys serve --threads 1, its default)
        out["in_process_one_intra_op_thread"] = in_process_cpu(rec, picks, args.k)
    del rec
    bodies = [(json.dumps({"user_id": u, "media_id": m, "k": args.k}, separators=(",", ":")), keys[m])
              for u, m in picks]
    with tempfile.TemporaryDirectory(prefix="recsys-serve-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        keys_file = tmp / "keys.yaml"
        keys_file.write_text(json.dumps({"admin": "bench-admin-key-0123456789", "partners": keys}))  # JSON is YAML
        commands = {"service": ["recsys", "serve", "--model", bundle, "--keys", str(keys_file), "--poll-seconds", "0"],
                    "stub": ["recsys.bench.serve_cpu", "serve-stub", "--bundle", bundle, "--keys", str(keys_file),
                             "--requests", str(args.requests), "--k", str(args.k)],
                    "floor": ["recsys.bench.serve_floor"]}
        for name in servers:
            out[name] = _measure(name, commands[name], tmp, bodies, args.rate, args.seconds)
    if "service" in out:  # against the in-process run that used less CPU per call
        best = min(out["in_process"]["cpu_ms_per_call"], out["in_process_one_intra_op_thread"]["cpu_ms_per_call"])
        out["service_overhead_cpu_ms"] = out["service"]["server_cpu_ms_per_answer"] - best
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
