"""
Which push services the server may reach (RFC 8620 §8.6): the address
policy, the agent that applies it when connecting, and the certificate
authorities it trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHandshakeListener,
    IHostnameResolver,
    IHostResolution,
    IOpenSSLContextFactory,
    IResolutionReceiver,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.outbound import read_ca_file, tls_policy
from jmap_twisted.push.webpush.policy import RefusedPushService, allowed_address, push_agent

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "192.0.2.1",  # documentation
    "240.0.0.1",  # reserved
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "2001:db8::1",
]
NEVER = ["0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "239.255.255.250", "255.255.255.255", "ff02::1"]
PUBLIC = [
    "93.184.216.34",
    "142.250.185.74",
    "2606:2800:220:1:248:1893:25c8:1946",
    "2a00:1450:4001:82b::200a",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
]


@pytest.mark.parametrize("text", REFUSED)
def test_private_addresses_are_refused_unless_allowed(text: str) -> None:
    """
    Loopback, private, link-local (the metadata service), carrier-grade
    NAT, reserved and documentation addresses, also when embedded in IPv6
    (IPv4-mapped, NAT64, 6to4), are refused by default and allowed with
    ``allow_private``.
    """
    ip = ipaddress.ip_address(text)
    assert not allowed_address(ip, allow_private=False)
    assert allowed_address(ip, allow_private=True)


@pytest.mark.parametrize("text", NEVER)
def test_unspecified_multicast_and_broadcast_are_always_refused(text: str) -> None:
    """
    Unspecified, multicast and broadcast addresses are no push service's,
    even with ``allow_private``.
    """
    ip = ipaddress.ip_address(text)
    assert not allowed_address(ip, allow_private=False)
    assert not allowed_address(ip, allow_private=True)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_allowed(text: str) -> None:
    """
    Public unicast addresses, IPv4 or IPv6 (also IPv4-mapped or NAT64 of
    a public IPv4 address), may be reached.
    """
    assert allowed_address(ipaddress.ip_address(text), allow_private=False)


@implementer(IHostnameResolver)
class Names:
    """
    A resolver answering from a table, recording what it was asked.
    """

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: object = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.asked.append(hostName)
        resolutionReceiver.resolutionBegan(None)  # type: ignore[arg-type]
        for text in self.table.get(hostName, ()):
            kind = IPv6Address if ":" in text else IPv4Address
            resolutionReceiver.addressResolved(kind("TCP", text, portNumber))
        resolutionReceiver.resolutionComplete()
        return None  # type: ignore[return-value]


def agent_resolving(
    table: Mapping[str, Sequence[str]], allow_private: bool = False
) -> tuple[IAgent, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    reactor.installNameResolver(Names(table))
    return push_agent(reactor, allow_private=allow_private), reactor


def failure_of(d: object) -> Failure:
    failures: list[Failure] = []
    d.addErrback(failures.append)  # type: ignore[attr-defined]
    assert failures, "the request did not fail"
    return failures[0]


def test_agent_refuses_a_name_resolving_to_loopback() -> None:
    """
    A push URL whose host resolves only to 127.0.0.1 fails with a clear
    error when connecting, and no connection is attempted.
    """
    agent, reactor = agent_resolving({"push.example": ["127.0.0.1"]})
    verifyObject(IAgent, agent)
    failure = failure_of(agent.request(b"POST", b"https://push.example/sub/1"))
    assert failure.check(RefusedPushService)
    assert "push.example" in str(failure.value)
    assert "refused" in str(failure.value)
    assert reactor.tcpClients == []


def test_agent_connects_only_to_the_allowed_addresses_of_a_name() -> None:
    """
    Of the addresses a name resolves to, only the allowed ones are
    connected to, on the URL's port.
    """
    agent, reactor = agent_resolving(
        {"push.example": ["10.0.0.7", "169.254.169.254", "93.184.216.34"]}
    )
    agent.request(b"POST", b"https://push.example:8443/sub/1")
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("93.184.216.34", 8443)]


def test_agent_checks_the_addresses_at_every_connection() -> None:
    """
    The name is resolved and checked at connect time, each time: a name
    that resolved to a public address and later to a private one (DNS
    rebinding) is refused the second time.
    """
    table = {"push.example": ["93.184.216.34"]}
    agent, reactor = agent_resolving(table)
    agent.request(b"POST", b"https://push.example/a")
    assert [host for host, *_ in reactor.tcpClients] == ["93.184.216.34"]
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionError()))
    table["push.example"] = ["127.0.0.1"]
    failure = failure_of(agent.request(b"POST", b"https://push.example/b"))
    assert failure.check(RefusedPushService)
    assert [host for host, *_ in reactor.tcpClients] == ["93.184.216.34"]


def test_agent_refuses_address_literals_in_urls_too() -> None:
    """
    A URL naming a refused address directly is refused like a name.
    """
    agent, reactor = agent_resolving({"127.0.0.1": ["127.0.0.1"], "::1": ["::1"]})
    assert failure_of(agent.request(b"POST", b"https://127.0.0.1/x")).check(RefusedPushService)
    assert failure_of(agent.request(b"POST", b"https://[::1]/x")).check(RefusedPushService)
    assert reactor.tcpClients == []


def test_allow_private_lets_the_agent_reach_loopback() -> None:
    """
    With ``allow_private`` the same name is connected to.
    """
    agent, reactor = agent_resolving({"push.example": ["127.0.0.1"]}, allow_private=True)
    agent.request(b"POST", b"https://push.example/sub/1")
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.1", 443)]


def test_agent_speaks_https_only() -> None:
    """
    A plain ``http`` push URL is refused before any name is resolved.
    """
    names = Names({"push.example": ["93.184.216.34"]})
    reactor = MemoryReactorClock()
    reactor.installNameResolver(names)
    failure = failure_of(push_agent(reactor).request(b"POST", b"http://push.example/sub/1"))
    assert failure.check(SchemeNotSupported)
    assert names.asked == [] and reactor.tcpClients == []


# -- certificate authorities


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ServerTLS]:
    """
    A certificate authority of our own (its PEM file) and a push
    service's certificate for ``push.example`` issued by it.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test push CA"))
        .issuer_name(_name("Test push CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("push.example"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("push.example")]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path_factory.mktemp("ca") / "push-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file, ServerTLS(key, leaf)


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """
    The push service's side of TLS.
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self._certificate = certificate

    def getContext(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate(self._certificate)
        context.use_privatekey(self._key)
        return context


@implementer(IHandshakeListener)
class Handshake(Protocol):
    """
    Records whether the TLS handshake completed or why the connection
    ended.
    """

    completed = False
    lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        self.completed = True

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


def handshake(ca_file: Path | None, server: ServerTLS, host: bytes) -> Handshake:
    """
    A TLS handshake, in memory, of a client verifying ``host`` as the
    push agent does with a server presenting ``server``.
    """
    recorder = Handshake()
    client_creator = tls_policy(None if ca_file is None else str(ca_file)).creatorForNetloc(
        host, 443
    )
    client_factory = TLSMemoryBIOFactory(
        client_creator, True, Factory.forProtocol(lambda: recorder)
    )
    server_factory = TLSMemoryBIOFactory(server, False, Factory.forProtocol(Protocol))
    _, _, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None)
    )
    pump.flush()
    return recorder


def test_certificates_from_the_ca_file_are_trusted(
    private_ca: tuple[Path, ServerTLS],
) -> None:
    """
    A push service whose certificate comes from the configured extra CA
    completes the TLS handshake.
    """
    ca_file, server = private_ca
    assert handshake(ca_file, server, b"push.example").completed


def test_certificates_of_an_unknown_ca_are_refused(
    private_ca: tuple[Path, ServerTLS],
) -> None:
    """
    Without the extra CA the same push service is not trusted (only the
    system's authorities are), and the connection ends.
    """
    _, server = private_ca
    result = handshake(None, server, b"push.example")
    assert not result.completed
    assert result.lost is not None


def test_the_certificate_must_name_the_push_service(
    private_ca: tuple[Path, ServerTLS],
) -> None:
    """
    A trusted certificate for another name does not do.
    """
    ca_file, server = private_ca
    result = handshake(ca_file, server, b"other.example")
    assert not result.completed


def test_a_ca_file_without_certificates_is_an_error(tmp_path: Path) -> None:
    """
    A CA file that holds no certificate stops the configuration with an
    error naming the file (rather than silently trusting only the system).
    """
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"empty\.pem"):
        tls_policy(str(empty))
    with pytest.raises(OSError):
        read_ca_file(str(tmp_path / "missing.pem"))
