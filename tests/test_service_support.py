"""Helpers of the service tests (no tests here): keys, a second bundle made from the fixture, a corrupted copy,
and a real `recsys serve` subprocess on 127.0.0.1 with a free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
V1 = REPO / "tests" / "fixtures" / "bundles" / "v1"
ADMIN, GUIDE0, APP0 = "admin-key-0123456789abcdef", "guide0-key-0123456789abcdef", "app0-key-0123456789abcdef"
KEYS_YAML = f"admin: {ADMIN}\npartners:\n  guide-0: {GUIDE0}\n  app-0: {APP0}\n"
OUT_OF_STOCK_IN_V2 = 42  # the first item of user 18's guide-0 feed in v1 (tests/fixtures/bundles/v1_expected.json)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_v2(dst: Path) -> Path:
    """A second version of the fixture: the same model with item 42 out of stock (so its manifest differs)."""
    import recsys

    rec = recsys.load(V1)
    rec.set_in_stock([OUT_OF_STOCK_IN_V2], False)
    rec.save(dst)
    return dst


def corrupt_copy(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with one byte of its item embeddings flipped (its checksum no longer matches)."""
    shutil.copytree(src, dst, symlinks=False)
    target = dst / "item_embeddings.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`recsys serve` as a real subprocess on 127.0.0.1 (``url``, ``proc``); stop() sends SIGTERM."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"server-{self.port}.log"
        full_env = {**os.environ, "CI": "true", **(env or {})}
        cmd = [sys.executable, "-m", "recsys", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"recsys serve exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"recsys serve did not get ready in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
