"""
The service object: holds the shared state (stores, portal, engine,
limiters) that protocols and resources call into, and starts and stops it
with ``twistd``.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
)
from twisted.logger import Logger
from twisted.web.server import Request

from jmap_twisted.auth.checkers import PasswordChecker, TokenChecker
from jmap_twisted.auth.passwords import PasswordHasher
from jmap_twisted.auth.realm import JMAPRealm
from jmap_twisted.bus.amqp import AMQPEventBus, new_node_id
from jmap_twisted.bus.amqp_node import AMQPConnector
from jmap_twisted.bus.changes import StorePublisher, register_change_listener
from jmap_twisted.bus.deadletters import MemoryDeadLetters, redeliver_requested
from jmap_twisted.bus.memory import InMemoryEventBus
from jmap_twisted.config import ServerConfig
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import ConcurrencyLimiter
from jmap_twisted.http.admission import ConnectionGuard
from jmap_twisted.http.auth import login
from jmap_twisted.http.eventsource import EventSourceResource
from jmap_twisted.http.resources import build_root
from jmap_twisted.http.site import JMAPSite
from jmap_twisted.interfaces import (
    IBlobStore,
    IDirectory,
    IEventDeadLetters,
    IMailDelivery,
    IMailStore,
)
from jmap_twisted.listening import ListeningService
from jmap_twisted.loops import SupervisedLoop
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.mail.service import delivery_services
from jmap_twisted.mail.smarthost import Smarthost
from jmap_twisted.mail.vacation import VacationResponder
from jmap_twisted.methods import build_registry
from jmap_twisted.push import pushstate
from jmap_twisted.push.connections import PushConnections
from jmap_twisted.push.listener import PushListener, current_states
from jmap_twisted.push.tickets import TicketChecker, Tickets
from jmap_twisted.store.backends import StoreSettings, open_stores
from jmap_twisted.ws.protocol import JMAPWebSocketFactory
from jmap_twisted.ws.resource import WebSocketUpgradeResource

log = Logger()

#: Requests of one user that may wait for a slot (over WebSocket; HTTP
#: requests over the limit are refused at once).
REQUEST_QUEUE = 256

#: Seconds between looks for dead letters an operator asked to redeliver.
REDELIVERY_INTERVAL = 5.0
#: Seconds between looks at the directory's access version.
ACCESS_POLL_INTERVAL = 0.5


class JMAPService(MultiService):
    """
    One JMAP server.

    :param directory: users, credentials and accounts.
    :param blobs: binary data.
    :param reactor: the reactor for threads and time.
    """

    def __init__(
        self,
        config: ServerConfig,
        directory: IDirectory,
        blobs: IBlobStore,
        mail: IMailStore,
        reactor: Any,
        delivery: IMailDelivery | None = None,
        smarthost: Smarthost | None = None,
        dead_letters: IEventDeadLetters | None = None,
        connector: AMQPConnector | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.directory = directory
        self.blobs = blobs
        self.mail = mail
        self.reactor = reactor
        self.delivery = delivery
        methods = build_registry(
            config.limits,
            mail,
            blobs,
            reactor,
            config.hostname,
            config.domains,
            delivery,
            smarthost,
            config.send_limits,
        )
        self.registry = methods.registry
        self.blob_resolver = methods.blob_resolver
        self.engine = Engine(self.registry, config.limits)
        self.portal = Portal(
            JMAPRealm(directory),
            [
                PasswordChecker(
                    directory,
                    PasswordHasher(n=config.password_cost),
                    reactor,
                    reactor,
                    config.login,
                ),
                TokenChecker(directory),
            ],
        )
        self.request_limiter = ConcurrencyLimiter(
            config.limits.max_concurrent_requests,
            "maxConcurrentRequests",
            queue_bound=REQUEST_QUEUE,
        )
        self.upload_limiter = ConcurrencyLimiter(
            config.limits.max_concurrent_upload, "maxConcurrentUpload"
        )
        self.tickets = Tickets(reactor, bind_client=config.websocket.bind_tickets)
        self.portal.registerChecker(TicketChecker(self.tickets))
        self.websockets = JMAPWebSocketFactory(self, config.websocket, reactor)
        root = build_root(self)
        root.children[b"jmap"].putChild(b"ws", WebSocketUpgradeResource(self, self.websockets))
        root.children[b"jmap"].putChild(b"eventsource", EventSourceResource(self))
        self.site = JMAPSite(
            root,
            self.body_limit,
            admit_body=self.admit_body,
            timeout=config.connections.idle_timeout,
        )
        #: What the HTTP ports listen with: the site behind connection
        #: admission.
        self.front = ConnectionGuard(self.site, config.connections, reactor)
        self.dead_letters = dead_letters or MemoryDeadLetters()
        self.connector = connector
        #: Store commits, for group listeners (change computation).
        self.mailbox_bus: InMemoryEventBus | AMQPEventBus
        #: StateChange events keyed by account, for connections.
        self.jmap_bus: InMemoryEventBus | AMQPEventBus
        if connector is None:
            self.mailbox_bus = InMemoryEventBus(reactor, self.dead_letters)
            self.jmap_bus = InMemoryEventBus(reactor, self.dead_letters)
        else:
            node_id = config.node_id or new_node_id()
            # Only groups listen on the mailbox bus across nodes (the change
            # listener); its key events stay on their node, saving a publish
            # per commit.
            self.mailbox_bus = AMQPEventBus(
                connector, "mailbox", reactor, self.dead_letters, node_id=node_id, remote_keys=False
            )
            self.jmap_bus = AMQPEventBus(
                connector, "jmap", reactor, self.dead_letters, node_id=node_id
            )
            connector.on_reconnect(self.catch_up_later)
        self._publisher = StorePublisher(mail, self.mailbox_bus)
        self._redelivery = SupervisedLoop(
            self._redeliver_requested, reactor, REDELIVERY_INTERVAL, "dead-letter redelivery"
        )
        #: Open push connections (WebSocket sessions, EventSource streams),
        #: told when access or credentials change.
        self.push_connections = PushConnections(config.max_push_connections)
        self._access_version: int | None = None
        self._access_watch = SupervisedLoop(
            self._watch_access, reactor, ACCESS_POLL_INTERVAL, "the access watch"
        )

    @property
    def access_version_seen(self) -> int | None:
        """
        The directory's access version as of the last poll; a connection
        compares it before and after it authenticates to catch a change
        it could otherwise miss.
        """
        return self._access_version

    async def _watch_access(self) -> None:
        try:
            version = await self.directory.access_version()
        except Exception:
            log.failure("Could not read the access version")
            return
        if self._access_version is None or version == self._access_version:
            self._access_version = version
            return
        forget = getattr(self.delivery, "forget", None)
        if forget is not None:
            forget()  # users or accounts may be gone
        try:
            changed = await self.directory.access_changes_since(self._access_version)
        except Exception:
            log.failure("Could not read the access changes")
            changed = None
        self._access_version = version
        concerned = None if changed is None else set(changed)
        for connection in list(self.push_connections):
            if concerned is not None and connection.user_id not in concerned:
                continue
            try:
                await connection.access_changed()
            except Exception:
                # Fail closed: a connection whose credentials could not be
                # re-checked is ended (its client reconnects and logs in).
                log.failure("Could not apply an access change to a connection")
                try:
                    connection.close(1011, "Could not re-check this connection's access.")
                except Exception:
                    log.failure("Could not close a connection after a failed re-check")
                    self.push_connections.discard(connection)

    def catch_up_later(self) -> None:
        """
        Run :meth:`catch_up` (after a reconnection to the broker).
        """
        Deferred.fromCoroutine(self.catch_up()).addErrback(
            lambda f: log.failure("Could not catch push connections up", f)
        )

    async def catch_up(self) -> int:
        """
        Tell every push connection of this node about what changed while
        it may have missed events (the broker was unreachable): one
        StateChange per connection with the states that moved since it
        last heard, read once per account.  Returns how many connections
        were sent one.
        """
        listeners = [
            listener
            for listener in self.jmap_bus.local_listeners()
            if isinstance(listener, PushListener)
        ]
        accounts = sorted({a for listener in listeners for a in listener.accounts})
        current = await current_states(self.mail, accounts)
        caught_up = 0
        for listener in listeners:
            mine = {a: s for a, s in current.items() if a in listener.accounts}
            moved = pushstate.catch_up(mine, listener.known)
            if moved:
                listener.merge(moved)
                caught_up += 1
        log.info("Caught {count} push connections up", count=caught_up)
        return caught_up

    def startService(self) -> None:
        super().startService()
        self._starting = Deferred.fromCoroutine(self._start_buses())
        self._starting.addErrback(lambda f: log.failure("Could not start the event buses", f))

    async def _start_buses(self) -> None:
        # Everything that must run whatever the broker does starts first:
        # publishing commits (kept in the bus's outbox until a connection),
        # the change listener (consumed once connected), the access watch.
        self._publisher.start()
        self._redelivery.start(now=False)
        self._access_watch.start(now=True)
        await register_change_listener(self.mailbox_bus, self.jmap_bus)
        await self.mailbox_bus.start()
        await self.jmap_bus.start()

    async def _redeliver_requested(self) -> None:
        for bus in (self.mailbox_bus, self.jmap_bus):
            try:
                await redeliver_requested(bus, self.dead_letters)
            except Exception:
                log.failure("Redelivering dead letters failed")

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.websockets.close_all()
        if self._redelivery.running:
            self._redelivery.stop()
        if self._access_watch.running:
            self._access_watch.stop()
        self._publisher.stop()
        await MultiService.stopService(self)
        await self.jmap_bus.stop()
        await self.mailbox_bus.stop()

    def body_limit(self, path: bytes) -> tuple[int, str]:
        """
        The largest request body accepted for a path, and the limit's name.
        """
        if path.startswith(b"/jmap/upload/"):
            return self.config.limits.max_size_upload, "maxSizeUpload"
        return self.config.limits.max_size_request, "maxSizeRequest"

    def admit_body(self, request: Request, path: bytes) -> Deferred[None]:
        """
        Log a request with a body in on its headers, before the body is
        read; an upload also takes one of the user's upload slots, held
        until the request ends.
        """
        return Deferred.fromCoroutine(self._admit_body(request, path))

    async def _admit_body(self, request: Request, path: bytes) -> None:
        principal = await login(self.portal, request)
        if path.startswith(b"/jmap/upload/"):
            release = self.upload_limiter.try_acquire(principal.user.id)
            request.notifyFinish().addBoth(lambda _: release())
            request.upload_slot = release  # type: ignore[attr-defined]
        request.admitted_principal = principal  # type: ignore[attr-defined]

    def add_listeners(self, reactor: IReactorCore) -> None:
        """
        Listen on every configured endpoint once the service starts.
        """
        for description in self.config.listen:
            endpoint = serverFromString(reactor, description)
            ListeningService(endpoint, self.front).setServiceParent(self)

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

    def __init__(self, database: Any, reactor: IReactorCore) -> None:
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
        stopped = Deferred.fromCoroutine(self._stop())
        return stopped

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
        self, store: Any, clock: Any, retention_days: float, interval: float = 3600.0
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


def make_service(config: ServerConfig, reactor: Any) -> MultiService:
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
    directory, mail = stores.directory, stores.mail
    delivery = LocalDelivery(directory, mail, config.domains, reactor)
    smarthost = None
    if config.smarthost:
        smarthost = Smarthost(
            reactor,
            config.smarthost,
            config.hostname,
            config.smarthost_credentials,
            config.smarthost_require_tls,
        )
    connector = AMQPConnector(reactor, config.bus) if config.bus is not None else None
    jmap = JMAPService(
        config,
        directory,
        stores.blobs,
        mail,
        reactor,
        delivery,
        smarthost,
        stores.dead_letters,
        connector,
    )
    jmap.add_listeners(reactor)
    for service in delivery_services(
        delivery,
        config.lmtp_listen,
        config.smtp_listen,
        config.max_message_size,
        config.hostname,
        reactor,
    ):
        service.setServiceParent(jmap)
    _Responder(
        VacationResponder(mail, reactor, config.hostname, delivery, smarthost)
    ).setServiceParent(jmap)
    ChangeLogPruner(mail, reactor, config.change_retention_days).setServiceParent(jmap)
    jmap.setServiceParent(top)
    return top
