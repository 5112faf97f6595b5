"""uvicorn's HTTP protocol with a shutdown that drops no request sent on a connection it accepted.

On shutdown uvicorn closes the listening socket and then every connection that is not inside a request. A
connection accepted just before the listener closed usually has its request on the wire, not yet parsed; closing
it then fails that request at the client ("Server disconnected without sending a response"), although the server
accepted the connection. Measured: 2 of 60 clients that kept opening connections across a SIGTERM failed so.

:class:`DrainingProtocol` gives such a connection (one that has not started a request yet) ``FIRST_REQUEST_GRACE_S``
for its request to arrive: the request is then answered with ``Connection: close``; a connection that sends
nothing in that time is closed as before. Connections idle between keep-alive requests close at once, as in uvicorn.
Passed to uvicorn as ``http=`` by `recsys serve` (both one worker and ``--workers N``).
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - uvicorn without httptools runs h11, as its "auto" does
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

FIRST_REQUEST_GRACE_S = 1.0  # a client on the same host or network sends its request within micro- to milliseconds


class DrainingProtocol(_Base):  # type: ignore[misc, valid-type]
    """uvicorn's own HTTP protocol (httptools, else h11) whose ``shutdown`` waits for a fresh connection's request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._grace: asyncio.TimerHandle | None = None

    def shutdown(self) -> None:
        """Close now unless the connection is fresh (no request started); then wait for its first request."""
        if self.cycle is None and self._grace is None and not self.transport.is_closing():
            self._grace = self.loop.call_later(FIRST_REQUEST_GRACE_S, self._end_grace)
            return
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._grace is not None and self.cycle is not None:  # its request has started: answer it, then close
            self._grace.cancel()
            self._grace = None
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        super().connection_lost(exc)

    def _end_grace(self) -> None:
        self._grace = None
        if not self.transport.is_closing():
            super().shutdown()


def adopt_pending(servers: list[asyncio.AbstractServer], factory: Any, ssl: Any = None) -> list[Any]:
    """Accept every connection waiting in the listening sockets' kernel queue, then close the listeners.

    Closing a listening socket resets the connections the kernel completed but the loop had not accepted yet: their
    clients sent a request and read "connection reset". Accepting them first (non-blocking, until the queue is
    empty) and closing in the same step leaves a window of microseconds instead of up to a loop iteration. Returns
    the coroutines that hand the accepted sockets to the loop (await them before asking connections to shut down).
    """
    import os
    import socket

    loop = asyncio.get_running_loop()
    adopted = []
    for server in servers:
        for listener in server.sockets or ():
            raw = socket.socket(fileno=os.dup(listener.fileno()))
            try:
                raw.setblocking(False)
                while True:
                    try:
                        conn, _ = raw.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    adopted.append(loop.connect_accepted_socket(factory, conn, ssl=ssl))
            finally:
                raw.close()
        server.close()
    return adopted
