"""Shutdown: from the moment SIGTERM arrives `/readyz` answers 503 while requests still get answered; with
`--drain-seconds` the worker goes on accepting for that long (so a load balancer's probe takes it out of
rotation first), then stops accepting, finishes what is in flight and exits. In process and as a real
`recsys serve` subprocess."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from recsys.service.app import create_app  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import V1, Server  # noqa: E402

REQ = {"user_id": 18, "media_id": "guide-0", "k": 5}
GRACEFUL = (0, -15)  # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done


def test_readyz_503_once_shutting_down_in_process() -> None:
    app = create_app(ServiceSettings(model=str(V1), poll_seconds=0, warm=False), keys=None)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        app.ctx.shutting_down.set()  # what the SIGTERM hook does first
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "shutting down"
        assert client.post("/v1/recommend", json=REQ).status_code == 200  # requests are still answered
        assert client.get("/healthz").status_code == 200  # alive, only not ready


def test_sigterm_drains_with_readyz_503_then_exits(tmp_path: Path) -> None:
    srv = Server(["--model", str(V1), "--poll-seconds", "0", "--drain-seconds", "3"], tmp_path)
    results: list = []
    stop = threading.Event()

    def load() -> None:  # one request after another, each on a new connection, until the socket is closed
        while not stop.is_set():
            try:
                results.append(httpx.post(srv.url + "/v1/recommend", json=REQ, timeout=30).status_code)
            except httpx.ConnectError:
                results.append("refused")
                return
            except httpx.HTTPError as e:  # a request dropped half-way
                results.append(type(e).__name__)
                return

    worker = threading.Thread(target=load)
    worker.start()
    try:
        while not results:
            time.sleep(0.01)
        assert httpx.get(srv.url + "/readyz", timeout=5).status_code == 200
        sent = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        ready = None
        while time.monotonic() - sent < 2.5:  # inside the drain: not ready, yet still accepting and answering
            ready = httpx.get(srv.url + "/readyz", timeout=5)
            if ready.status_code == 503:
                break
            time.sleep(0.05)
        assert ready is not None and ready.status_code == 503 and ready.json()["status"] == "shutting down"
        assert httpx.post(srv.url + "/v1/recommend", json=REQ, timeout=5).status_code == 200
        code = srv.proc.wait(30)
        took = time.monotonic() - sent
    finally:
        stop.set()
        worker.join(30)
        srv.stop()
    assert code in GRACEFUL, srv.output()
    assert took >= 3.0  # it kept accepting for the drain before it stopped
    assert results[-1] == "refused" and set(results[:-1]) == {200}, results[-5:]  # nothing dropped half-way
    assert "Application shutdown complete" in srv.output()
