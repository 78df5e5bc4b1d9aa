# -*- test-case-name: tests.test_service -*-
"""
The life cycle of a JMAP server under ``twistd`` or any Twisted
application: :class:`JMAPService` starts and stops what runs in the
background for a :class:`~jmap_twisted.server.JMAPServer` (the event buses,
publishing commits, the access watch, dead-letter redelivery, the
vacation responder, change-log pruning, the OpenID providers' keys) and
its listening ports, which bind in ``privilegedStartService`` (before
``twistd`` drops privileges).  The
database's own life cycle stays with whoever opened the stores.
:func:`make_service` builds a whole server from its configuration.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from jmap_twisted.bus.changes import register_change_listener
from jmap_twisted.bus.deadletters import redeliver_requested
from jmap_twisted.bus.shares import register_share_audience
from jmap_twisted.config import ServerConfig
from jmap_twisted.http.admission import ConnectionGuard
from jmap_twisted.interfaces import IChangeLogPruning, IJMAPReactor, IMailboxShares
from jmap_twisted.listening import ListeningService
from jmap_twisted.loops import SupervisedLoop
from jmap_twisted.mail.vacation import VacationResponder
from jmap_twisted.metrics import metrics_site
from jmap_twisted.server import JMAPServer
from jmap_twisted.store.backends import StoreSettings, open_stores
from jmap_twisted.web import jmap_site

log = Logger()

#: Seconds between looks for dead letters an operator asked to redeliver.
REDELIVERY_INTERVAL = 5.0
#: Seconds between looks at the directory's access version.
ACCESS_POLL_INTERVAL = 0.5
#: Seconds between looks for a rotated VAPID key and expired push
#: subscriptions.
WEBPUSH_REFRESH_INTERVAL = 5.0
#: WebSocket close code for connections ended by a shutdown.
GOING_AWAY = 1001


class JMAPService(MultiService):
    """
    Runs a server's background work while started, and its listening ports
    (children added by :meth:`listen`).  Stopping closes every push
    connection (WebSockets with 1001) and stops the buses.

    :param server: the server whose work this runs.
    :param site: what the HTTP ports serve; by default
        :func:`~jmap_twisted.web.jmap_site` of the server.
    """

    def __init__(self, server: JMAPServer, site: Site | None = None) -> None:
        super().__init__()
        self.server = server
        self._site = site
        self._front: ConnectionGuard | None = None
        reactor = server.reactor
        self._redelivery = SupervisedLoop(
            self._redeliver_requested, reactor, REDELIVERY_INTERVAL, "dead-letter redelivery"
        )
        self._access_watch = SupervisedLoop(
            server.access.check, reactor, ACCESS_POLL_INTERVAL, "the access watch"
        )
        self._webpush_refresh = SupervisedLoop(
            self._refresh_webpush, reactor, WEBPUSH_REFRESH_INTERVAL, "web push upkeep"
        )
        self._ticket_upkeep = SupervisedLoop(
            self._keep_tickets, reactor, server.tickets.hold / 3, "ticket upkeep"
        )
        _Responder(
            VacationResponder(
                server.mail, reactor, server.config.hostname, server.delivery, server.relay
            )
        ).setServiceParent(self)
        if IChangeLogPruning.providedBy(server.mail):
            ChangeLogPruner(
                server.mail, reactor, server.config.change_retention_days
            ).setServiceParent(self)

    @property
    def site(self) -> Site:
        """
        What the HTTP ports serve: by default
        :func:`~jmap_twisted.web.jmap_site` of the server.
        """
        if self._site is None:
            self._site = jmap_site(self.server)
        return self._site

    @property
    def front(self) -> ConnectionGuard:
        """
        What the HTTP ports listen with: the site behind connection
        admission.
        """
        if self._front is None:
            self._front = ConnectionGuard(
                self.site, self.server.config.connections, self.server.reactor
            )
        return self._front

    def startService(self) -> None:
        super().startService()
        self.server.running = True
        self._starting = Deferred.fromCoroutine(self._start_buses())
        self._starting.addErrback(lambda f: log.failure("Could not start the event buses", f))

    async def _start_buses(self) -> None:
        # Everything that must run whatever the broker does starts first:
        # publishing commits (kept in the bus's outbox until a connection),
        # the change listener (consumed once connected), the access watch.
        server = self.server
        server.publisher.start()
        self._redelivery.start(now=False)
        self._access_watch.start(now=True)
        if server.oidc is not None:
            server.oidc.start()  # fetches the providers' keys in the background
        self._ticket_upkeep.start(now=False)
        await register_change_listener(server.mailbox_bus, server.jmap_bus, server.reactor)
        if IMailboxShares.providedBy(server.directory):
            await register_share_audience(server.mailbox_bus, server.jmap_bus, server.directory)
        if server.webpush is not None:
            try:
                await self._start_webpush()
            except Exception:
                # Push subscriptions then get no POST; everything else runs.
                log.failure("Could not start web push")
        await server.mailbox_bus.start()
        await server.jmap_bus.start()

    async def _start_webpush(self) -> None:
        webpush = self.server.webpush
        assert webpush is not None
        await webpush.start()
        dispatcher = webpush.dispatcher
        assert dispatcher is not None
        await self.server.jmap_bus.register_group(dispatcher, dispatcher.GROUP)
        self._webpush_refresh.start(now=True)

    async def _keep_tickets(self) -> None:
        tickets = self.server.tickets
        await tickets.renew()
        await tickets.sweep()

    async def _refresh_webpush(self) -> None:
        if self.server.webpush is not None:
            await self.server.webpush.refresh()

    async def _redeliver_requested(self) -> None:
        for bus in (self.server.mailbox_bus, self.server.jmap_bus):
            try:
                await redeliver_requested(bus, self.server.dead_letters)
            except Exception:
                log.failure("Redelivering dead letters failed")

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        server = self.server
        server.running = False
        for connection in list(server.push_connections):
            try:
                connection.close(GOING_AWAY, "The server is shutting down.")
            except Exception:
                log.failure("Could not close a push connection at shutdown")
        if self._redelivery.running:
            self._redelivery.stop()
        if self._access_watch.running:
            self._access_watch.stop()
        if self._webpush_refresh.running:
            self._webpush_refresh.stop()
        if self._ticket_upkeep.running:
            self._ticket_upkeep.stop()
        # The closed streams' tickets are free to reconnect elsewhere.
        await server.tickets.settle()
        server.publisher.stop()
        if server.oidc is not None:
            server.oidc.stop()
        if server.webpush is not None:
            server.webpush.stop()
        await MultiService.stopService(self)
        await server.jmap_bus.stop()
        await server.mailbox_bus.stop()

    def listen(self, descriptions: tuple[str, ...] | list[str]) -> None:
        """
        Listen for HTTP on each endpoint description (``tcp:8080``, ...)
        while running; ports bind in ``privilegedStartService``.
        """
        for description in descriptions:
            endpoint = serverFromString(self.server.reactor, description)
            ListeningService(endpoint, self.front).setServiceParent(self)

    def listen_metrics(self, description: str) -> None:
        """
        Serve the server's Prometheus metrics at ``/metrics`` on an
        endpoint description while running (bound with the other ports).
        """
        endpoint = serverFromString(self.server.reactor, description)
        ListeningService(endpoint, metrics_site(self.server.metrics)).setServiceParent(self)

    def listening_ports(self) -> list[IListeningPort]:
        """
        The ports listened on now (to learn the port number of ``tcp:0``).
        """
        return [
            child.port
            for child in self
            if isinstance(child, ListeningService) and child.port is not None
        ]


class _DatabaseService(MultiService):
    """
    Opens the database before the children start and closes it after they
    stop.
    """

    def __init__(self, database: Any, reactor: IJMAPReactor) -> None:
        super().__init__()
        self.database = database
        self._reactor = reactor

    def startService(self) -> None:
        # Listening waits until the schema is in place.
        self._started: Deferred[None] = self.database.start()
        self._started.addCallback(lambda _: MultiService.startService(self))
        self._started.addErrback(self._failed)

    def _failed(self, failure: object) -> None:
        log.failure("Could not open the database", failure)  # type: ignore[arg-type]
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._started
        await MultiService.stopService(self)
        await self.database.stop()


class _Responder(Service):
    """
    Runs the vacation auto-responder while the server runs.
    """

    def __init__(self, responder: VacationResponder) -> None:
        self.responder = responder

    def startService(self) -> None:
        super().startService()
        self.responder.start()

    def stopService(self) -> None:
        super().stopService()
        self.responder.stop()


class ChangeLogPruner(Service):
    """
    Deletes change-log entries older than the retention period, hourly.
    """

    def __init__(
        self,
        store: IChangeLogPruning,
        clock: IReactorTime,
        retention_days: float,
        interval: float = 3600.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention = retention_days * 86400
        self._loop = SupervisedLoop(self.prune, clock, interval, "change-log pruning")

    async def prune(self) -> None:
        try:
            deleted = await self._store.prune_changes(self._clock.seconds() - self._retention)
        except Exception:
            log.failure("Pruning the change log failed")
            return
        if deleted:
            log.info("Pruned {count} change-log entries", count=deleted)

    def startService(self) -> None:
        super().startService()
        self._loop.start(now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()


def make_service(config: ServerConfig, reactor: IJMAPReactor) -> MultiService:
    """
    A whole server: its stores (SQLite in the data directory, or the shared
    PostgreSQL database), its buses (in memory, or through the broker),
    listening on every configured endpoint, delivering by LMTP (and SMTP
    when configured).
    """
    stores = open_stores(
        config.store or StoreSettings(config.data_dir), reactor, config.query_timeout
    )
    top = _DatabaseService(stores.database, reactor)
    relay = None
    if config.smarthost:
        from jmap_twisted.mail.smarthost import Smarthost

        relay = Smarthost(
            reactor,
            config.smarthost,
            config.hostname,
            config.smarthost_credentials,
            config.smarthost_require_tls,
        )
    connector = None
    if config.bus is not None:
        from jmap_twisted.extras import require

        require("amqp", "txamqp")
        from jmap_twisted.bus.amqp_node import AMQPConnector

        connector = AMQPConnector(reactor, config.bus)
    server = JMAPServer.from_stores(config, stores, reactor, relay=relay, connector=connector)
    jmap = JMAPService(server)
    jmap.listen(config.listen)
    if config.metrics_listen is not None:
        jmap.listen_metrics(config.metrics_listen)
    # Imports twisted.mail.smtp, which installs the global reactor: only
    # here, once the reactor is chosen.
    from jmap_twisted.mail.service import delivery_services

    for service in delivery_services(
        server.delivery,
        config.lmtp_listen,
        config.smtp_listen,
        config.max_message_size,
        config.hostname,
        reactor,
    ):
        service.setServiceParent(jmap)
    jmap.setServiceParent(top)
    return top
