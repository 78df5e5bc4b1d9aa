"""
The server's configuration: parsed once in :mod:`jmap_twisted.tap`, frozen,
and passed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

from jmap_twisted.auth.throttle import LoginLimits
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.mail.sendlimits import SendLimits

if TYPE_CHECKING:
    from jmap_twisted.bus.amqp_node import AMQPSettings
    from jmap_twisted.store.backends import StoreSettings

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEFAULT_LMTP = "tcp:2424:interface=127.0.0.1"
DEFAULT_DATA = "jmap-data"


@frozen
class WebSocketOptions:
    """
    Settings of the WebSocket endpoint.

    :ivar ping_interval: seconds between server pings (0: none).
    :ivar ping_timeout: seconds to wait for the pong before closing.
    :ivar require_subprotocol: refuse clients that offer no subprotocol.
    :ivar deflate: accept permessage-deflate when offered.
    :ivar window_bits: the server's LZ77 window (9–15); smaller uses less
        memory per socket.
    :ivar no_context_takeover: compress each message on its own and free
        zlib state between messages (an idle socket then holds none); off,
        the compressor keeps its dictionary across messages for a better
        ratio at about 100 KiB more per socket.
    :ivar mem_level: zlib memory level (1–9).
    :ivar bind_tickets: a ticket may only be redeemed from the address that
        asked for it (off by default: mobile clients change networks).
    """

    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    require_subprotocol: bool = False
    deflate: bool = True
    window_bits: int = 11
    no_context_takeover: bool = True
    mem_level: int = 4
    bind_tickets: bool = False


@frozen
class ConnectionLimits:
    """
    How many HTTP connections are kept, and for how long.

    :ivar max_connections: connections of the HTTP ports at once; past it
        the oldest anonymous connection makes room for a new one, and when
        every connection is authenticated new ones are refused.
    :ivar max_anonymous_per_address: anonymous connections per client
        address; more are refused.
    :ivar login_timeout: seconds an anonymous connection may stay open.
    :ivar idle_timeout: seconds an HTTP connection may wait between
        requests (or between two reads of one request).
    """

    max_connections: int = 8192
    max_anonymous_per_address: int = 64
    login_timeout: float = 30.0
    idle_timeout: float = 60.0


@frozen
class WebPushOptions:
    """
    Settings of web push delivery (RFC 8620 §7.2, RFC 8030).

    :ivar ca_file: a PEM file of CA certificates trusted for push services
        beside the system's, or ``None``.
    :ivar allow_private: allow push services on loopback, private and
        link-local addresses (tests and closed networks only).
    :ivar vapid_subject: the VAPID ``sub`` claim (``mailto:`` or
        ``https:`` contact for push service operators), or ``None``.
    :ivar ttl: seconds a push service keeps an undelivered StateChange.
    """

    ca_file: str | None = None
    allow_private: bool = False
    vapid_subject: str | None = None
    ttl: int = 3600


@frozen
class OIDCOptions:
    """
    Bearer tokens from OpenID Connect providers (see ``docs/oidc.rst``):
    off while no issuer is given.

    :ivar issuers: the providers whose tokens are accepted, each its
        issuer identifier exactly as its discovery document states it
        (``https://``, or ``http://`` on a loopback host only).
    :ivar audience: what a token's ``aud`` must name for this server.
    :ivar user_claim: the claim whose value is the username.
    :ivar create_users: a username the directory does not know is created
        (without a password) on the first valid token naming it, instead
        of being refused.
    :ivar client_id: this server's client id at the providers, for
        introspecting opaque tokens (RFC 7662), or ``None`` for none.
    :ivar client_secret: the secret going with ``client_id`` (read from a
        file, never shown in a ``repr``).
    :ivar ca_file: a PEM file of CA certificates trusted for the providers
        beside the system's, or ``None``.
    """

    issuers: tuple[str, ...] = ()
    audience: str | None = None
    user_claim: str = "email"
    create_users: bool = False
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @property
    def enabled(self) -> bool:
        """
        Whether any provider's tokens are accepted.
        """
        return bool(self.issuers)

    @property
    def introspects(self) -> bool:
        """
        Whether opaque tokens unknown to the directory are introspected.
        """
        return self.client_id is not None and self.client_secret is not None


@frozen
class ServerConfig:
    """
    Everything a running server is told.

    :ivar listen: strports descriptions of the HTTP(+WebSocket) endpoints.
    :ivar data_dir: the data directory of the embedded (SQLite) store.
    :ivar public_url: scheme and authority put in the session's URLs, or
        ``None`` to follow each request's scheme and ``Host``.
    :ivar allowed_origins: browser origins besides the server's own that may
        use it with a user's credentials (CORS, WebSocket, EventSource),
        each as ``scheme://host[:port]``.
    :ivar limits: the core capability's limits.
    :ivar connections: how many HTTP connections are kept, anonymous ones
        per client address, and for how long.
    :ivar password_cost: scrypt's ``n`` for new password hashes.
    :ivar login: bounds on password checks (hashes at once, failures per
        address and username).
    :ivar hostname: this server's name, in Message-IDs and trace headers.
    :ivar domains: the mail domains whose users are local.
    :ivar lmtp_listen: endpoint of the LMTP listener, or ``None``.
    :ivar smtp_listen: endpoint of the inbound SMTP listener, or ``None``.
    :ivar max_message_size: the largest message accepted by LMTP/SMTP.
    :ivar smarthost: client endpoint of the relay for outgoing mail.
    :ivar smarthost_credentials: username and password for the relay.
    :ivar smarthost_require_tls: refuse to relay without STARTTLS.
    :ivar send_limits: recipients per submission and per user per hour.
    :ivar websocket: the WebSocket endpoint's settings.
    :ivar webpush: how push subscriptions' StateChanges are POSTed.
    :ivar oidc: which OpenID Connect providers' bearer tokens are accepted
        (none by default).
    :ivar max_push_connections: WebSockets and EventSource streams one user
        may hold open at once (more are refused with 429).
    :ivar push_stall_timeout: seconds an EventSource stream may stay unable
        to take more data (its client not reading) before it is dropped.
    :ivar change_retention_days: how long change-log entries are kept;
        ``*/changes`` from older states answers ``cannotCalculateChanges``.
    :ivar store: a shared (PostgreSQL) store, or ``None`` for SQLite in
        ``data_dir``.
    :ivar query_timeout: seconds one read of an account's data (a query)
        may run before it is stopped and answered ``serverFail``.
    :ivar bus: the RabbitMQ broker joining several nodes, or ``None`` for
        one node with in-memory buses.
    :ivar node_id: this node's name in the broker, unique in the cluster
        (``None``: a random one per process).
    :ivar demo: serve the live-inbox demo page, a browser client, at
        ``/demo/``.
    :ivar metrics_listen: endpoint of the listener serving Prometheus
        metrics at ``/metrics``, or ``None`` for none.
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    data_dir: Path = Path(DEFAULT_DATA)
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    limits: CoreLimits = field(factory=CoreLimits)
    connections: ConnectionLimits = field(factory=ConnectionLimits)
    password_cost: int = 2**15
    login: LoginLimits = field(factory=LoginLimits)
    hostname: str = "localhost"
    domains: tuple[str, ...] = ("localhost",)
    lmtp_listen: str | None = None
    smtp_listen: str | None = None
    max_message_size: int = 50_000_000
    smarthost: str | None = None
    smarthost_credentials: tuple[str, str] | None = None
    smarthost_require_tls: bool = False
    send_limits: SendLimits = field(factory=SendLimits)
    websocket: WebSocketOptions = field(factory=WebSocketOptions)
    webpush: WebPushOptions = field(factory=WebPushOptions)
    oidc: OIDCOptions = field(factory=OIDCOptions)
    max_push_connections: int = 50
    push_stall_timeout: float = 60.0
    change_retention_days: float = 30.0
    store: StoreSettings | None = None
    query_timeout: float = 20.0
    bus: AMQPSettings | None = None
    node_id: str | None = None
    demo: bool = False
    metrics_listen: str | None = None
