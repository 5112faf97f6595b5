"""Subprocesses of the serving benchmark: ``recsys serve`` and the bare FastAPI floor on 127.0.0.1, a free port each.

:class:`ServerProcess` starts one, waits until ``/readyz`` answers 200 (the model loaded and warmed), and stops
it with SIGTERM; its output goes to a log file (read back only on failure, to name what went wrong).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.errors import ConfigError

__all__ = ["ServerProcess", "free_port", "http_json"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body: dict | None = None, key: str | None = None,
              timeout: float = 600.0) -> tuple[int, dict]:
    """One HTTP request with the standard library: (status, the JSON answer or {})."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {}


class ServerProcess:
    """A server subprocess on 127.0.0.1 (``url``, ``proc``): ``args`` after ``python -m``, with ``--port`` added."""

    def __init__(self, args: list[str], log_path: Path, *, cwd: Path, ready_timeout: float = 600.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", *args, "--port", str(self.port)]
        with open(log_path, "wb") as fh:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**os.environ, "CI": "true"})
        t = time.monotonic()
        while time.monotonic() - t < ready_timeout:
            if self.proc.poll() is not None:
                raise ConfigError(f"{' '.join(args[:2])} exited with {self.proc.returncode} before it was ready:\n"
                                  f"{self.output()}")
            try:
                if http_json("GET", self.url + "/readyz", timeout=2)[0] == 200:
                    self.ready_seconds = time.monotonic() - t
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ConfigError(f"{' '.join(args[:2])} was not ready within {ready_timeout} s:\n{self.output()}")

    def output(self) -> str:
        """The last 4,000 characters the server wrote."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def terminate(self) -> float:
        """Send SIGTERM now; returns the time it was sent (``time.time()``)."""
        at = time.time()
        self.proc.send_signal(signal.SIGTERM)
        return at

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit (SIGKILL after ``timeout``); its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (if still running) and wait; the exit code."""
        if self.proc.poll() is None:
            self.terminate()
        return self.wait(timeout)
