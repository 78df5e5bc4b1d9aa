"""
The WebSocket endpoint in memory: the real site and Autobahn protocols
connected by twisted.test.iosim, on a fake clock.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet.address import IPv4Address
from twisted.test import iosim

from jmap_twisted.config import ServerConfig, WebSocketOptions
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.support import CHEAP_HASHER, ImmediateReactor, jmap_service


class Client(WebSocketClientProtocol):
    """
    Records what the server sends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.opened = False
        #: What the server sent before the socket opened (its handshake
        #: answer).
        self.handshake = b""

    def dataReceived(self, data: bytes) -> None:
        if not self.opened:
            self.handshake += data
        super().dataReceived(data)

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed_with = code

    def send_json(self, value: Any) -> None:
        self.sendMessage(json.dumps(value).encode())


class Connection:
    """
    A server with one user and a connected client.
    """

    def __init__(
        self,
        options: WebSocketOptions | None = None,
        deflate: bool = True,
        max_push_connections: int = 50,
        **limits: Any,
    ) -> None:
        self.clock = ImmediateReactor()
        self.directory = MemoryDirectory(self.clock)
        self.mail = MemoryMailStore(self.clock)
        config = ServerConfig(
            password_cost=2**4,
            limits=CoreLimits(**limits),
            websocket=options or WebSocketOptions(),
            max_push_connections=max_push_connections,
        )
        self.service = jmap_service(
            config, self.directory, MemoryBlobStore(self.clock), self.mail, self.clock
        )
        self.service.startService()
        self.user = self.directory.create_user("alice", CHEAP_HASHER.hash("pw")).result
        self.account = self.directory.accounts_for_user(self.user.id).result[0].id
        self.pumps: list[iosim.IOPump] = []
        self.client = self.connect(deflate=deflate)

    def connect(
        self,
        headers: dict[str, str] | None = None,
        deflate: bool = True,
        protocols: list[str] | None = None,
        query: str = "",
    ) -> Client:
        factory = WebSocketClientFactory(
            "ws://jmap.example/jmap/ws" + query,
            protocols=["jmap"] if protocols is None else protocols,
            headers=headers
            if headers is not None
            else {"Authorization": "Basic " + b64encode(b"alice:pw").decode()},
            reactor=self.clock,
        )
        factory.protocol = Client
        if deflate:
            factory.setProtocolOptions(
                perMessageCompressionOffers=[PerMessageDeflateOffer()],
                perMessageCompressionAccept=lambda r: (
                    PerMessageDeflateResponseAccept(r)
                    if isinstance(r, PerMessageDeflateResponse)
                    else None
                ),
            )
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        client, _, self.pump = iosim.connectedServerAndClient(
            lambda: self.service.site.buildProtocol(address),
            lambda: factory.buildProtocol(address),
            greet=False,
            clock=self.clock,
        )
        self.server_transport = self.pump.serverIO
        self.pumps.append(self.pump)
        self.flush()
        return client  # type: ignore[no-any-return]

    def flush(self) -> None:
        """
        Move what every connection made so far has to send, until none
        has anything left.
        """
        for _ in range(1000):
            if not any([pump.pump() for pump in self.pumps]):
                return
        raise AssertionError("the connections never fell quiet")

    def deliver(self, subject: str = "hi") -> None:
        from tests.mailfactory import message

        self.mail.setup_account(self.account)

        def write(w: Any) -> None:
            inbox = next(m.id for m in w.mailboxes() if m.role == "inbox")
            w.add_email(message(subject=subject), [inbox], [], 0.0)

        self.mail.write(self.account, write, delivery=True)
        self.flush()
