# -*- test-case-name: tests.test_service, tests.test_web -*-
"""
One JMAP server as a plain container: the stores it serves and everything
built once over them (methods, engine, request runner, authentication,
tickets, event buses, the registry of push connections).

It has no life cycle and runs nothing by itself: the front ends
(:func:`jmap_twisted.resource`, :func:`jmap_twisted.message_delivery`) call
into it, and :class:`jmap_twisted.service.JMAPService` starts and stops what
runs in the background (buses, pollers, pruning).  Front ends import this
module; it imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from jmap_twisted.auth.checkers import PasswordChecker, TokenChecker
from jmap_twisted.auth.passwords import PasswordHasher
from jmap_twisted.auth.portal import ObservedPortal
from jmap_twisted.auth.realm import JMAPRealm
from jmap_twisted.bus.changes import StorePublisher
from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.memory import InMemoryEventBus
from jmap_twisted.config import ServerConfig
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import ConcurrencyLimiter
from jmap_twisted.core.runner import RequestRunner
from jmap_twisted.interfaces import (
    IBlobStore,
    IDirectory,
    IEventBus,
    IEventDeadLetters,
    IJMAPReactor,
    IMailDelivery,
    IMailStore,
    IPushSubscriptions,
    IRecipientCache,
    IRelay,
    ITicketStore,
)
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.methods import build_registry
from jmap_twisted.metrics import ServerMetrics
from jmap_twisted.push.access import AccessWatch, catch_up
from jmap_twisted.push.connections import PushConnections
from jmap_twisted.push.tickets import TicketChecker, Tickets
from jmap_twisted.push.webpush.delivery import WebPush
from jmap_twisted.store.memory.tickets import MemoryTickets

if TYPE_CHECKING:
    from jmap_twisted.auth.oidc import OIDC
    from jmap_twisted.auth.oidc_http import JSONFetcher
    from jmap_twisted.store.backends import Stores

log = Logger()


class JMAPServer:
    """
    A JMAP server over given stores, ready for front ends to serve.

    :param config: what the server is told (limits, names, push settings).
    :param directory: users, credentials and the accounts they see.
    :param blobs: binary data.
    :param mail: the mail store.
    :param reactor: threads, time and connections.
    :param delivery: where ``EmailSubmission`` and the delivery front ends
        put mail for local recipients; by default the directory's users in
        ``config.domains``.
    :param relay: the outbound relay for remote recipients, or ``None``
        (remote recipients are refused).
    :param dead_letters: where events that could not be handled are kept
        (in memory by default).
    :param connector: the broker connection joining several nodes
        (:class:`~jmap_twisted.bus.amqp_node.AMQPConnector`, from the
        ``amqp`` extra), or ``None`` for in-memory buses.
    :param push_subscriptions: where push subscriptions (RFC 8620 §7.2)
        and the VAPID key are kept; ``None`` for no web push.
    :param tickets: where the tickets of ``POST /jmap/ticket`` are kept (a
        store shared by every node of a cluster); in memory by default.
    :param oidc_fetcher: how OpenID Connect providers are fetched from
        (with ``config.oidc``); over the network by default.
    """

    def __init__(
        self,
        config: ServerConfig,
        directory: IDirectory,
        blobs: IBlobStore,
        mail: IMailStore,
        reactor: IJMAPReactor,
        delivery: IMailDelivery | None = None,
        relay: IRelay | None = None,
        dead_letters: IEventDeadLetters | None = None,
        connector: object | None = None,
        push_subscriptions: IPushSubscriptions | None = None,
        tickets: ITicketStore | None = None,
        oidc_fetcher: JSONFetcher | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.blobs = blobs
        self.mail = mail
        self.reactor = reactor
        if delivery is None:
            delivery = LocalDelivery(directory, mail, config.domains, reactor)
        self.delivery = delivery
        self.relay = relay
        #: Web push (PushSubscription), or ``None`` without a store for it.
        self.webpush: WebPush | None = None
        if push_subscriptions is not None:
            self.webpush = WebPush(push_subscriptions, directory, config.webpush, reactor)
        methods = build_registry(
            config.limits,
            mail,
            blobs,
            reactor,
            config.hostname,
            config.domains,
            delivery,
            relay,
            config.send_limits,
            push_subscriptions=push_subscriptions,
            push_events=self.webpush,
            directory=directory,
        )
        self.registry = methods.registry
        #: The server's Prometheus metrics, in a registry of its own.
        self.metrics = ServerMetrics(lambda name: self.registry.capability_of(name) is not None)
        if self.webpush is not None:
            self.webpush.registry = self.registry
            self.webpush.metrics = self.metrics.push["webpush"]
        self.blob_resolver = methods.blob_resolver
        self.engine = Engine(self.registry, config.limits, self.metrics)
        #: Every transport's requests run here, within each user's slots.
        self.runner = RequestRunner(self.engine, self.registry.capabilities, config.limits)
        self.upload_limiter = ConcurrencyLimiter(
            config.limits.max_concurrent_upload, "maxConcurrentUpload"
        )
        self.tickets = Tickets(
            tickets if tickets is not None else MemoryTickets(),
            reactor,
            bind_client=config.websocket.bind_tickets,
        )
        #: OpenID Connect bearer tokens, or ``None`` when not configured.
        self.oidc: OIDC | None = None
        bearer: ICredentialsChecker = TokenChecker(directory)
        if config.oidc.enabled:
            bearer = self._oidc_checker(oidc_fetcher)
        self.portal = ObservedPortal(
            JMAPRealm(directory),
            [
                PasswordChecker(
                    directory,
                    PasswordHasher(n=config.password_cost),
                    reactor,
                    reactor,
                    config.login,
                ),
                bearer,
                TicketChecker(self.tickets),
            ],
            observe=self.metrics.authentication,
        )
        self.dead_letters: IEventDeadLetters = dead_letters or MemoryDeadLetters()
        self.connector = connector
        #: Store commits, for group listeners (change computation).
        self.mailbox_bus: IEventBus
        #: StateChange events keyed by account, for push connections.
        self.jmap_bus: IEventBus
        self.mailbox_bus, self.jmap_bus = _buses(self)
        #: Publishes the mail store's commits on the mailbox bus.
        self.publisher = StorePublisher(mail, self.mailbox_bus)
        #: The open push connections (WebSocket sockets, EventSource
        #: streams), counted per user.
        self.push_connections = PushConnections(config.max_push_connections)
        caches: tuple[IRecipientCache, ...] = tuple(
            c  # type: ignore[misc]
            for c in (delivery, self.webpush)
            if IRecipientCache.providedBy(c)
        )
        #: Tells push connections when access or credentials change.
        self.access = AccessWatch(directory, self.push_connections, caches)
        #: Whether push runs: set by the server's life cycle
        #: (:class:`~jmap_twisted.service.JMAPService`) while it runs.
        self.running = False
        self._warned = False
        self.metrics.watch(self.push_connections, connector)
        buses = {"mailbox": self.mailbox_bus, "jmap": self.jmap_bus}
        for name, bus in buses.items():
            bus.observer = self.metrics.buses[name]
        self.metrics.watch_outboxes(buses)
        if isinstance(delivery, LocalDelivery):
            delivery.metrics = self.metrics

    def _oidc_checker(self, fetcher: JSONFetcher | None) -> ICredentialsChecker:
        """
        The bearer token checker taking OpenID Connect tokens besides the
        directory's own.
        """
        from jmap_twisted.extras import require

        require("oidc", "jwt")
        from jmap_twisted.auth.oidc import BearerChecker, oidc_for

        self.oidc = oidc_for(self.config.oidc, self.directory, self.reactor, fetcher)
        return BearerChecker(self.directory, self.oidc)

    @classmethod
    def from_stores(
        cls,
        config: ServerConfig,
        stores: Stores,
        reactor: IJMAPReactor,
        **kwargs: Any,
    ) -> JMAPServer:
        """
        A server over the stores :func:`~jmap_twisted.store.backends.open_stores`
        opened (their dead letters included, and their database's transactions
        timed in :attr:`metrics`); ``kwargs`` as for the
        constructor.
        """
        server = cls(
            config,
            stores.directory,
            stores.blobs,
            stores.mail,
            reactor,
            dead_letters=stores.dead_letters,
            push_subscriptions=stores.push_subscriptions,
            tickets=stores.tickets,
            **kwargs,
        )
        # Time the database's transactions in the server's metrics.
        stores.database.observe = server.metrics.store_transaction
        return server

    def pushes(self) -> bool:
        """
        Whether StateChanges reach push connections now.  A front end asks
        before it advertises or accepts push; the first time the answer is
        no, it is logged loudly: the server's life cycle was not started.
        """
        if not self.running and not self._warned:
            self._warned = True
            log.warn(
                "JMAP is being served but the server's life cycle has not started, "
                "so push is off: start jmap_twisted.JMAPService(server) "
                "(setServiceParent on the application) to turn it on"
            )
        return self.running

    def catch_up_later(self) -> None:
        """
        Catch every push connection up (after a reconnection to the broker).
        """
        Deferred.fromCoroutine(catch_up(self.push_connections, self.mail)).addErrback(
            lambda f: log.failure("Could not catch push connections up", f)
        )


def _buses(server: JMAPServer) -> tuple[IEventBus, IEventBus]:
    config, reactor, dead_letters = server.config, server.reactor, server.dead_letters
    connector = server.connector
    if connector is None:
        return (
            InMemoryEventBus(reactor, dead_letters),
            InMemoryEventBus(reactor, dead_letters),
        )
    from jmap_twisted.extras import require

    require("amqp", "txamqp")
    from jmap_twisted.bus.amqp import AMQPEventBus, new_node_id

    node_id = config.node_id or new_node_id()

    def bus(name: str, remote_keys: bool) -> IEventBus:
        return AMQPEventBus(
            connector,  # type: ignore[arg-type]
            name,
            reactor,
            dead_letters,
            node_id=node_id,
            remote_keys=remote_keys,
        )

    # Only groups listen on the mailbox bus across nodes (the change
    # listener); its key events stay on their node, saving a publish per
    # commit.
    mailbox, jmap = bus("mailbox", remote_keys=False), bus("jmap", remote_keys=True)
    connector.on_reconnect(server.catch_up_later)  # type: ignore[attr-defined]
    return mailbox, jmap
