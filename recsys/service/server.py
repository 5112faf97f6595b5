"""The uvicorn server of `recsys serve` (one worker): uvicorn's own, with a shutdown that resets no connection.

uvicorn's shutdown closes the listening socket first; connections still in its kernel queue are then reset although
their clients already sent a request. :class:`DrainingServer` accepts those first
(:func:`recsys.service.protocol.adopt_pending`), then shuts down as uvicorn does; with
:class:`~recsys.service.protocol.DrainingProtocol` as the connections' protocol they are answered before it exits.
"""

from __future__ import annotations

import asyncio
import functools
import socket

import uvicorn

from recsys.service.protocol import adopt_pending


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that adopts the connections queued in the kernel before closing its listeners."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        factory = functools.partial(self.config.http_protocol_class, config=self.config,
                                    server_state=self.server_state, app_state=self.lifespan.state)
        adopted = adopt_pending(self.servers, factory, ssl=self.config.ssl)
        if adopted:
            await asyncio.gather(*adopted, return_exceptions=True)  # a client gone meanwhile is not our failure
        await super().shutdown(sockets)  # closing the listeners again is a no-op in asyncio and uvloop
