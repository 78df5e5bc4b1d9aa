# -*- test-case-name: tests.http.test_admission -*-
"""
Connection admission: which TCP connections the HTTP port keeps, so that
no client address can exhaust the server's descriptors and a user with
credentials can always get in.

Every connection starts *anonymous*.  It becomes *authenticated* once one
of its requests logs in.  Anonymous connections are bounded per client
address and must log in within :attr:`ConnectionLimits.login_timeout`
seconds; when the server holds :attr:`ConnectionLimits.max_connections`,
a new connection is admitted by closing the oldest anonymous one, so
half-open or idle connections (slowloris) cannot keep a user with
credentials out.
"""

from __future__ import annotations

import resource
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from jmap_twisted.config import ConnectionLimits

log = Logger()


#: Descriptors kept for everything but HTTP connections.
RESERVED_DESCRIPTORS = 256


def descriptors_allowed() -> int:
    """
    The process's soft limit on open descriptors.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class _Guarded(ProtocolWrapper):
    """
    One admitted (or refused) connection.
    """

    factory: ConnectionGuard
    address: str = ""
    anonymous = True
    refused = False
    deadline: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        peer = transport.getPeer()
        self.address = str(getattr(peer, "host", "") or "")
        if not self.factory.admit(self):
            self.refused = True
            self.transport = transport
            transport.abortConnection()
            return
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.refused:
            return
        self.factory.forget(self)
        super().connectionLost(reason)

    def authenticated(self) -> None:
        if self.anonymous:
            self.anonymous = False
            self.factory.promote(self)

    def evict(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class ConnectionGuard(WrappingFactory):
    """
    Wraps the site's factory and admits connections under
    :class:`ConnectionLimits`.

    It offers the site's application protocols for TLS negotiation
    (ALPN): a TLS endpoint asks the factory it wraps, and a client that
    offers ALPN (as most do) fails the handshake when none are given.
    """

    protocol = _Guarded
    noisy = False

    def __init__(
        self,
        wrapped: IProtocolFactory,
        limits: ConnectionLimits,
        clock: IReactorTime,
        descriptor_limit: Callable[[], int] = descriptors_allowed,
    ) -> None:
        super().__init__(wrapped)
        self.limits = limits
        self.clock = clock
        self._descriptor_limit = descriptor_limit
        #: Anonymous connections, oldest first.
        self._anonymous: OrderedDict[_Guarded, None] = OrderedDict()
        self._per_address: dict[str, int] = {}
        self.open = 0
        #: Connections refused or evicted since start, for operators.
        self.refused = 0
        self.evicted = 0

    def admit(self, connection: _Guarded) -> bool:
        address = connection.address
        if self._per_address.get(address, 0) >= self.limits.max_anonymous_per_address:
            self.refused += 1
            return False
        if self.open >= self.capacity():
            if not self._anonymous:
                self.refused += 1
                return False
            oldest = next(iter(self._anonymous))
            self._drop_anonymous(oldest)
            self.evicted += 1
            oldest.evict()
        self.open += 1
        self._anonymous[connection] = None
        self._per_address[address] = self._per_address.get(address, 0) + 1
        connection.deadline = self.clock.callLater(
            self.limits.login_timeout, self._expire, connection
        )
        return True

    def acceptableProtocols(self) -> list[bytes]:
        negotiating = IProtocolNegotiationFactory(self.wrappedFactory, None)
        if negotiating is None:
            return [b"http/1.1"]
        return list(negotiating.acceptableProtocols())

    def capacity(self) -> int:
        """
        How many connections may be open at once: the configured bound, or
        fewer when the process may not open that many descriptors (some
        are kept for the database, logs and mail).
        """
        return max(
            1, min(self.limits.max_connections, self._descriptor_limit() - RESERVED_DESCRIPTORS)
        )

    def _expire(self, connection: _Guarded) -> None:
        connection.deadline = None
        if connection.anonymous and connection in self._anonymous:
            self._drop_anonymous(connection)
            self.evicted += 1
            connection.evict()

    def _drop_anonymous(self, connection: _Guarded) -> None:
        if self._anonymous.pop(connection, False) is None:
            count = self._per_address[connection.address] - 1
            if count:
                self._per_address[connection.address] = count
            else:
                del self._per_address[connection.address]
        if connection.deadline is not None:
            if connection.deadline.active():
                connection.deadline.cancel()
            connection.deadline = None

    def promote(self, connection: _Guarded) -> None:
        self._drop_anonymous(connection)

    def forget(self, connection: _Guarded) -> None:
        self._drop_anonymous(connection)
        self.open -= 1

    def anonymous_connections(self) -> list[_Guarded]:
        """
        The anonymous connections, oldest first.
        """
        return list(self._anonymous)

    def anonymous_count(self, address: str | None = None) -> int:
        if address is None:
            return len(self._anonymous)
        return self._per_address.get(address, 0)

    def registerProtocol(self, p: IProtocol) -> None:
        pass  # counted in admit; WrappingFactory's own dict is not needed

    def unregisterProtocol(self, p: IProtocol) -> None:
        pass


def mark_authenticated(request: IRequest) -> None:
    """
    Tell the connection a request came on that it logged in, which lifts
    the anonymous limits from it.
    """
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if isinstance(transport, _Guarded):
        transport.authenticated()
