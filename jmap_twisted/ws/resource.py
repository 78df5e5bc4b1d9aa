"""
The WebSocket endpoint in the twisted.web tree: authenticates the upgrade
request (401 with challenges when that fails, before any handshake), then
hands the connection to Autobahn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autobahn.twisted.resource import WebSocketResource
from twisted.web.iweb import IRequest

from jmap_twisted.http.problem import write_status
from jmap_twisted.http.resources import JMAPResource

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer
    from jmap_twisted.ws.protocol import JMAPWebSocketFactory


class WebSocketUpgradeResource(JMAPResource):
    """
    ``GET /jmap/ws`` with ``Upgrade: websocket``.
    """

    def __init__(self, server: JMAPServer, factory: JMAPWebSocketFactory) -> None:
        super().__init__(server)
        self.factory = factory
        self._autobahn = WebSocketResource(factory)

    async def handle(self, request: IRequest) -> None:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setHeader(b"Upgrade", b"websocket")
            write_status(request, 426, "This endpoint needs a WebSocket upgrade.")
            return
        # Refused before the handshake when the user holds too many push
        # connections, so the socket costs nothing; it is counted when it
        # opens, in this same turn (below).
        admitted = await self.push_login(request)
        if admitted is None:
            return
        principal, probe, seen, _ = admitted
        # buildProtocol runs synchronously inside render, so the principal
        # cannot be taken by another connection in between.
        self.factory.next_principal = (principal, probe, seen)
        try:
            self._autobahn.render(request)
        finally:
            self.factory.next_principal = None
