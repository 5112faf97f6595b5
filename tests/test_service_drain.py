"""Shutdown drops no request sent on a connection the server accepted: recsys.service.protocol and .server.

Deterministic pieces of the SIGTERM guarantee (tests/test_service_shutdown.py runs the whole of it): connections
queued in the kernel are adopted, not reset, when the listener closes; a connection accepted before shutdown gets
its request answered (with ``Connection: close``) even if the request arrives after the listener closed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httptools")

import uvicorn  # noqa: E402

from recsys.service import protocol  # noqa: E402
from recsys.service.protocol import DrainingProtocol, adopt_pending  # noqa: E402
from recsys.service.server import DrainingServer  # noqa: E402
from tests.test_service_support import free_port  # noqa: E402


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"ok:" + data)
        self.transport.close()


def _queued_clients(adopt: bool, loop_factory) -> tuple[list[bytes | str], bool]:
    """Three clients connect and send while the loop is busy (the kernel queues them); then the listener closes,
    after adopt_pending or plainly. Returns what each client read and whether a new connection was refused."""

    async def main() -> tuple[list[socket.socket], int]:
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = []
        for i in range(3):  # no await in between: the loop never polls the listener, the kernel completes these
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"req%d" % i)
            clients.append(client)
        if adopt:
            pending = adopt_pending([server], _Echo)
            assert len(pending) == 3
            await asyncio.gather(*pending)
        else:
            server.close()
        await asyncio.sleep(0.2)  # the loop answers what it adopted
        return clients, port

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        clients, port = runner.run(main())
    answers: list[bytes | str] = []
    for client in clients:
        try:
            answers.append(client.recv(100))
        except ConnectionResetError:
            answers.append("reset")
        client.close()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    return answers, refused


def _loops() -> list:
    loops = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop

        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))  # what uvicorn runs when it is installed
    except ImportError:  # pragma: no cover - uvloop is in the serving extra on Linux
        pass
    return loops


@pytest.mark.parametrize("loop_factory", _loops())
def test_adopt_pending_answers_connections_queued_in_the_kernel(loop_factory) -> None:
    answers, refused = _queued_clients(adopt=True, loop_factory=loop_factory)
    assert answers == [b"ok:req0", b"ok:req1", b"ok:req2"] and refused
    # the failure it prevents: closing the listener resets the queued connections (their requests were sent)
    answers, refused = _queued_clients(adopt=False, loop_factory=loop_factory)
    assert answers == ["reset"] * 3 and refused


async def _hello(scope, receive, send) -> None:  # the smallest ASGI app: 200 "hello"
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _serve_in_thread() -> tuple[DrainingServer, threading.Thread, int]:
    port = free_port()
    server = DrainingServer(uvicorn.Config(_hello, host="127.0.0.1", port=port, http=DrainingProtocol,
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)  # off the main thread uvicorn hooks no signals
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return server, thread, port


def _wait_refused(port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    raise AssertionError("the listener did not close")


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_sent_after_shutdown_began_on_an_accepted_connection_is_answered() -> None:
    server, thread, port = _serve_in_thread()
    early = socket.create_connection(("127.0.0.1", port), timeout=5)  # accepted, request not yet sent
    time.sleep(0.2)
    server.should_exit = True
    _wait_refused(port)  # shutdown is under way: new connections are refused
    early.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    reply = _read_all(early)
    early.close()
    thread.join(10)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello")
    assert b"connection: close" in reply.lower()  # answered, then closed: the server is going away
    assert not thread.is_alive()


def test_a_fresh_connection_that_sends_nothing_is_closed_after_the_grace(monkeypatch) -> None:
    monkeypatch.setattr(protocol, "FIRST_REQUEST_GRACE_S", 0.3)
    server, thread, port = _serve_in_thread()
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(0.2)
    began = time.monotonic()
    server.should_exit = True
    assert _read_all(idle) == b""  # closed without a reply once the grace ran out, not held open forever
    waited = time.monotonic() - began
    idle.close()
    thread.join(10)
    assert not thread.is_alive() and 0.25 <= waited < 5.0
