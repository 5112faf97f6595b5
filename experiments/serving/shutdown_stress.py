"""Stress the SIGTERM path of `recsys serve`: clients that keep opening connections across the stop.

    python experiments/serving/shutdown_stress.py --trials 120 [--model tests/fixtures/bundles/v1] [--clients 4]

Each trial starts `recsys serve` on a free 127.0.0.1 port, runs ``--clients`` threads that post /v1/recommend on a
new connection each time, sends SIGTERM after 0.5 s and counts how each client ended: "refused" (the listener was
closed: expected), or an error after the connection was accepted (a dropped request). Prints one line a trial and
the totals; the server logs go to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REQ = {"user_id": 18, "media_id": "guide-0", "k": 5}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trial(model: str, clients: int, logdir: Path) -> collections.Counter:
    port = _port()
    url = f"http://127.0.0.1:{port}"
    with open(logdir / f"serve-{port}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "recsys", "serve", "--model", model, "--port", str(port),
                                 "--poll-seconds", "0"], stdout=log, stderr=subprocess.STDOUT)
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"recsys serve exited with {proc.returncode}; see {log.name}")
        time.sleep(0.1)
    ended: collections.Counter = collections.Counter()

    def load() -> None:
        while True:
            try:
                ended[httpx.post(url + "/v1/recommend", json=REQ, timeout=30).status_code] += 1
            except httpx.ConnectError:
                ended["refused"] += 1
                return
            except httpx.HTTPError as e:
                ended[f"dropped: {type(e).__name__}"] += 1
                return

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    for t in threads:
        t.join(60)
    return ended


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/bundles/v1"))
    args = ap.parse_args()
    total: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as logdir:
        for i in range(args.trials):
            ended = trial(args.model, args.clients, Path(logdir))
            print(i, dict(ended), flush=True)
            total.update({k: v for k, v in ended.items() if not isinstance(k, int)})
    dropped = sum(v for k, v in total.items() if str(k).startswith("dropped"))
    print(f"clients: {args.trials * args.clients}, refused: {total['refused']}, dropped: {dropped}", dict(total))


if __name__ == "__main__":
    main()
