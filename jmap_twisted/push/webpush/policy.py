# -*- test-case-name: tests.push.test_webpush_policy -*-
"""
Which push services the server may reach, and the HTTP agent that reaches
only those (RFC 8620 §8.6, "Connection to Unknown Push Server").

A push subscription's URL is chosen by the client, so without a policy
the server would POST wherever a user asks: to its own loopback, to the
local network, to a cloud provider's metadata service.  The address is
checked when connecting, on every address the name resolves to at that
moment, and the connection is made to the checked address itself, so a
name that resolves first to a public address and then to a private one
(DNS rebinding) gains nothing.  Redirects are not followed, and only
``https`` is spoken, verified against the system's certificate
authorities plus those of an optional PEM file.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from twisted.internet import address as taddress

# IOpenSSLTrustRoot is not re-exported by twisted.internet.ssl, yet it is
# the only way to hand optionsForClientTLS more than one source of trust.
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from jmap_twisted.outbound import tls_policy

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocol, IProtocolFactory

    from jmap_twisted.interfaces import IJMAPReactor

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Never reached, whatever the configuration: no host has these addresses.
_NEVER = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"; 0.0.0.0 reaches the local host
    ipaddress.ip_network("255.255.255.255/32"),  # limited broadcast
)

#: Reached only when private addresses are allowed, besides those Python
#: classifies as loopback, private, link-local or reserved (its lists
#: have moved between versions, so the ones that matter are named here).
_PRIVATE = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (RFC 6598)
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, cloud metadata services
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("192.0.2.0/24"),  # documentation
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("240.0.0.0/4"),  # reserved
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.ip_network("100::/64"),  # discard-only
    ipaddress.ip_network("2001::/23"),  # IETF protocol assignments (Teredo among them)
    ipaddress.ip_network("2001:db8::/32"),  # documentation
    ipaddress.ip_network("fc00::/7"),  # unique local
    ipaddress.ip_network("fe80::/10"),  # link-local
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated)
)

#: IPv6 prefixes that carry an IPv4 address in their last 32 bits, which
#: is then what the connection really reaches: the well-known NAT64
#: prefix (RFC 6052).  IPv4-mapped and 6to4 addresses are unwrapped by
#: :mod:`ipaddress`.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """
    The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64,
    6to4), or ``None``.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def allowed_address(ip: IPAddress, allow_private: bool) -> bool:
    """
    Whether the server may connect to a push service at ``ip``.

    Refused: loopback, private (RFC 1918, unique local ``fc00::/7``),
    link-local (so also ``169.254.169.254``, the metadata service of cloud
    providers), carrier-grade NAT ``100.64.0.0/10``, reserved and
    documentation ranges, and IPv6 addresses that embed one of these
    (IPv4-mapped, NAT64, 6to4).  Unspecified, multicast and broadcast
    addresses are refused even with ``allow_private``.

    :param ip: an address the push service's name resolved to.
    :param allow_private: let the server reach private addresses (a push
        service on the local network, or tests).
    """
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return allowed_address(embedded, allow_private)
    if ip.is_unspecified or ip.is_multicast or any(ip in net for net in _NEVER):
        return False
    if allow_private:
        return True
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return not any(ip in net for net in _PRIVATE)


class RefusedPushService(ConnectError):
    """
    The push service's name resolves only to addresses the server may not
    reach.
    """


@implementer(IResolutionReceiver)
class _Addresses:
    """
    Collects the addresses of one name resolution.
    """

    def __init__(self) -> None:
        self.addresses: list[IAddress] = []
        self.done: Deferred[list[IAddress]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


def _checked(address: IAddress, allow_private: bool) -> bool:
    if not isinstance(address, taddress.IPv4Address | taddress.IPv6Address):
        return False
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return False
    return allowed_address(ip, allow_private)


@implementer(IStreamClientEndpoint)
class CheckedHostEndpoint:
    """
    Connects over TCP to a host name, only ever to the addresses the
    policy allows.

    The name is resolved by the reactor's resolver when connecting; each
    address is checked with :func:`allowed_address` and the permitted ones
    are tried in the resolver's order, at most :attr:`MAX_ADDRESSES` of
    them, each for at most ``timeout`` seconds.

    :param reactor: resolves names and connects.
    :param host: the push service's host name or address literal.
    :param port: its TCP port.
    :param allow_private: see :func:`allowed_address`.
    :param timeout: seconds each connection attempt may take.
    """

    #: Addresses tried before giving up.
    MAX_ADDRESSES = 4

    def __init__(
        self, reactor: IJMAPReactor, host: str, port: int, allow_private: bool, timeout: float
    ) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._allow_private = allow_private
        self._timeout = timeout

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Resolve, check and connect; fails with :class:`RefusedPushService`
        when no address may be reached.
        """
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        receiver = _Addresses()
        self._reactor.nameResolver.resolveHostName(
            receiver, self._host, portNumber=self._port, transportSemantics="TCP"
        )
        addresses = await receiver.done
        if not addresses:
            raise DNSLookupError(f"push service host {self._host} does not resolve")
        allowed = [a for a in addresses if _checked(a, self._allow_private)]
        if not allowed:
            raise RefusedPushService(
                string=f"push service host {self._host} resolves only to refused addresses"
            )
        last: ConnectError | None = None
        for each in allowed[: self.MAX_ADDRESSES]:
            endpoint: IStreamClientEndpoint
            if isinstance(each, taddress.IPv6Address):
                endpoint = TCP6ClientEndpoint(self._reactor, each.host, self._port, self._timeout)
            else:
                assert isinstance(each, taddress.IPv4Address)
                endpoint = TCP4ClientEndpoint(self._reactor, each.host, self._port, self._timeout)
            try:
                return await endpoint.connect(factory)
            except ConnectError as e:
                last = e
        assert last is not None
        raise last


@implementer(IAgentEndpointFactory)
class PushServiceEndpoints:
    """
    The endpoints of an :class:`~twisted.web.client.Agent` that reaches
    push services: ``https`` only, through :class:`CheckedHostEndpoint`.

    :param reactor: resolves names and connects.
    :param tls: verifies the push service's certificate.
    :param allow_private: see :func:`allowed_address`.
    :param connect_timeout: seconds each connection attempt may take.
    """

    def __init__(
        self,
        reactor: IJMAPReactor,
        tls: IPolicyForHTTPS,
        allow_private: bool,
        connect_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._tls = tls
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """
        :raises twisted.web.error.SchemeNotSupported: for anything but
            ``https``.
        """
        if uri.scheme != b"https":
            raise SchemeNotSupported("push services are reached over https only")
        tcp = CheckedHostEndpoint(
            self._reactor,
            uri.host.decode("ascii"),
            uri.port,
            self._allow_private,
            self._connect_timeout,
        )
        return wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), tcp)


def push_agent(
    reactor: IJMAPReactor,
    *,
    allow_private: bool = False,
    ca_file: str | None = None,
    connect_timeout: float = 10.0,
    persistent_per_host: int = 2,
    idle_timeout: int = 120,
    pool: HTTPConnectionPool | None = None,
) -> IAgent:
    """
    The HTTP agent that POSTs to push services: ``https`` only, to allowed
    addresses only (:func:`allowed_address`, checked when connecting), no
    redirects, and connections kept open between messages to the same
    push service.

    :param reactor: resolves names, connects and times out.
    :param allow_private: let the server reach private addresses.
    :param ca_file: a PEM file of certificate authorities trusted besides
        the system's.
    :param connect_timeout: seconds each connection attempt may take.
    :param persistent_per_host: connections kept open per push service.
    :param idle_timeout: seconds an unused connection stays open.
    :param pool: the pool of kept-open connections, for the caller to close
        them (``closeCachedConnections``) at shutdown; a new one by default.
    :raises OSError: ``ca_file`` cannot be read.
    :raises ValueError: ``ca_file`` holds no PEM certificate.
    """
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = persistent_per_host
    pool.cachedConnectionTimeout = idle_timeout
    endpoints = PushServiceEndpoints(reactor, tls_policy(ca_file), allow_private, connect_timeout)
    agent: IAgent = Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
    return agent
