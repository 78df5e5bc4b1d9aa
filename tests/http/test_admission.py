"""
Connection admission: anonymous connections are bounded per address and in
time, and make room for new ones when the server is full.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from jmap_twisted.config import ConnectionLimits
from jmap_twisted.http.admission import ConnectionGuard


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self.lost = True


class _Net:
    """
    A guard over a recording factory, and the connections made to it.
    """

    def __init__(self, descriptors: int = 100_000, **limits: float) -> None:
        self.clock = Clock()
        self.guard = ConnectionGuard(
            Factory.forProtocol(_Recorder),
            ConnectionLimits(**limits),  # type: ignore[arg-type]
            self.clock,
            descriptor_limit=lambda: descriptors,
        )

    def connect(self, host: str = "10.0.0.1") -> tuple[object, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.guard.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        assert protocol is not None
        protocol.makeConnection(transport)
        return protocol, transport

    def lose(self, protocol: object) -> None:
        protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]


def test_anonymous_connections_are_bounded_per_address() -> None:
    """
    Past the per-address bound a new anonymous connection is refused at
    once; other addresses still connect, and a connection that logs in no
    longer counts.
    """
    net = _Net(max_anonymous_per_address=3)
    first = [net.connect("10.0.0.1") for _ in range(3)]
    _, refused = net.connect("10.0.0.1")
    assert refused.disconnected
    _, other = net.connect("10.0.0.2")
    assert not other.disconnected
    first[0][0].authenticated()  # type: ignore[attr-defined]
    _, again = net.connect("10.0.0.1")
    assert not again.disconnected
    assert net.guard.anonymous_count("10.0.0.1") == 3
    assert net.guard.refused == 1


def test_anonymous_connections_must_log_in_in_time() -> None:
    """
    An anonymous connection is closed at the login timeout (slow headers
    or an idle half-open socket); one that logged in is not.
    """
    net = _Net(login_timeout=30)
    idle_protocol, idle = net.connect()
    user_protocol, user = net.connect()
    idle_protocol.dataReceived(b"GET / HTTP/1.1\r\nHo")  # type: ignore[attr-defined]
    net.clock.advance(10)
    user_protocol.authenticated()  # type: ignore[attr-defined]
    net.clock.advance(25)
    assert idle.disconnected
    assert not user.disconnected
    net.lose(idle_protocol)
    assert net.guard.open == 1
    assert net.guard.anonymous_count() == 0


def test_a_full_server_evicts_the_oldest_anonymous_connection() -> None:
    """
    When the server holds as many connections as it may, a new one closes
    the oldest anonymous connection instead of being refused; connections
    that logged in are never evicted, and when only they are left, new
    connections are refused.
    """
    net = _Net(max_connections=3, max_anonymous_per_address=100)
    logged_in, logged_in_transport = net.connect("10.0.0.9")
    logged_in.authenticated()  # type: ignore[attr-defined]
    oldest, oldest_transport = net.connect("10.0.0.1")
    _, newer = net.connect("10.0.0.2")
    _, newest_transport = net.connect("10.0.0.3")
    assert oldest_transport.disconnected
    assert not newer.disconnected and not newest_transport.disconnected
    net.lose(oldest)
    assert net.guard.evicted == 1
    for protocol in net.guard.anonymous_connections():
        protocol.authenticated()
    _, refused = net.connect("10.0.0.4")
    assert refused.disconnected
    assert not logged_in_transport.disconnected


def test_capacity_stays_below_the_descriptor_limit() -> None:
    """
    A process allowed fewer descriptors than the configured bound keeps a
    reserve of them instead of running out.
    """
    net = _Net(descriptors=300, max_connections=10_000, max_anonymous_per_address=1000)
    assert net.guard.capacity() == 44
    for _ in range(44):
        net.connect()
    first = net.guard.anonymous_connections()[0]
    net.connect()
    assert first.transport.disconnected  # type: ignore[union-attr]
    assert net.guard.open == 45  # until the evicted one's connectionLost


def test_a_refused_connection_never_reaches_the_site() -> None:
    """
    Data on a refused connection is dropped and its loss is not reported
    to a protocol that never started.
    """
    net = _Net(max_anonymous_per_address=1)
    net.connect()
    protocol, transport = net.connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")  # type: ignore[attr-defined]
    net.lose(protocol)
    assert net.guard.open == 1
    assert transport.disconnected


def test_the_guard_offers_the_sites_application_protocols() -> None:
    """
    TLS endpoints ask the factory they wrap for its ALPN protocols; the
    guard answers with the site's, or a client offering ALPN could not
    complete its handshake.
    """
    from twisted.internet.interfaces import IProtocolNegotiationFactory
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    site = Site(Resource())
    guard = ConnectionGuard(site, ConnectionLimits(), Clock())
    assert IProtocolNegotiationFactory.providedBy(guard)
    assert guard.acceptableProtocols() == site.acceptableProtocols()
    assert b"http/1.1" in guard.acceptableProtocols()
