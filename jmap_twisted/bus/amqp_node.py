"""
One node's connection to RabbitMQ, kept up for the buses that share it.

:class:`AMQPConnector` runs a :class:`~twisted.application.internet.ClientService`
(reconnect with backoff).  After every connection, before anything else
uses it, it logs in and lets each attached bus set its topology up again
(exchanges, queues, every live key binding, consumers); a bus learns of a
lost connection at once.  After each connection it calls the
``on_reconnect`` callbacks, so that push connections can send a catch-up
StateChange for whatever they may have missed meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from attrs import field, frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from jmap_twisted.bus.amqp_client import AMQPClient, AMQPClientFactory
from jmap_twisted.interfaces import IJMAPReactor

log = Logger()

#: Seconds a new connection has to log in and set the topology up.
SETUP_TIMEOUT = 15.0

#: The environment variable read for the broker password when no file is named.
PASSWORD_VARIABLE = "JMAP_AMQP_PASSWORD"  # noqa: S105 - a variable name


class ConfigurationError(ValueError):
    """
    A broker URL or setting that cannot be used.
    """


@frozen
class AMQPSettings:
    """
    Where the broker is and how to log in.

    :ivar endpoint: a Twisted client endpoint description.
    :ivar password: never shown by ``repr``.
    :ivar prefix: the start of every exchange and queue name, so that
        several clusters can share a broker.
    :ivar heartbeat: seconds; a broker silent for three is taken as gone.
    """

    endpoint: str
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    prefix: str = "jmap"
    heartbeat: int = 5

    @classmethod
    def from_url(
        cls, url: str, password: str | None = None, prefix: str = "jmap", heartbeat: int = 5
    ) -> AMQPSettings:
        """
        Settings from ``amqp://user@host:port/vhost`` (or ``amqps://`` for
        TLS).  A password in the URL is refused, since command lines are
        visible to every local user; it comes from ``password``, else the
        ``JMAP_AMQP_PASSWORD`` variable, else ``guest``.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ConfigurationError(f"not an amqp:// or amqps:// URL: {parts.scheme}://…")
        if parts.password is not None:
            raise ConfigurationError(
                "the broker URL must not carry a password: use --bus-password-file "
                f"or ${PASSWORD_VARIABLE}"
            )
        host = parts.hostname or "127.0.0.1"
        tls = parts.scheme == "amqps"
        port = parts.port or (5671 if tls else 5672)
        escaped = host.replace(":", "\\:")
        endpoint = f"tls:{escaped}:{port}" if tls else f"tcp:{escaped}:{port}"
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        if password is None:
            password = os.environ.get(PASSWORD_VARIABLE, "guest")
        return cls(
            endpoint=endpoint,
            username=unquote(parts.username) if parts.username else "guest",
            password=password,
            vhost=vhost,
            prefix=prefix,
            heartbeat=heartbeat,
        )


class AttachedBus(Protocol):
    """
    What the connector asks of a bus that uses its connection.
    """

    def attach(self, client: AMQPClient) -> Awaitable[None]:
        """
        Set the topology up on a new connection.
        """

    def detach(self) -> None:
        """
        The connection is gone.
        """

    def flush_outbox(self) -> None:
        """
        Publish what was kept while the broker could not take it.
        """


class AMQPConnector:
    """
    Keeps one connection to the broker for the buses attached to it.

    :param endpoint: overrides ``settings.endpoint`` (for tests).
    """

    def __init__(
        self,
        reactor: IJMAPReactor,
        settings: AMQPSettings,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> None:
        self.settings = settings
        self._clock: IReactorTime = reactor
        self._buses: list[AttachedBus] = []
        self._reconnect_callbacks: list[Callable[[], object]] = []
        self._connections = 0
        self.client: AMQPClient | None = None
        self._service = ClientService(
            endpoint or clientFromString(reactor, settings.endpoint),
            AMQPClientFactory(reactor, settings.vhost, settings.heartbeat),
            retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=5.0, factor=1.6),
            clock=reactor,
            prepareConnection=self._prepare_connection,
        )
        self._starts = 0
        self._running = False
        self._waiting: list[tuple[Deferred[None], IDelayedCall]] = []
        self._setting_up: AMQPClient | None = None

    def attach(self, bus: AttachedBus) -> None:
        """
        Use this connection for ``bus``; attach before :meth:`start`.
        """
        self._buses.append(bus)

    def on_reconnect(self, callback: Callable[[], object]) -> None:
        """
        Call ``callback`` after each connection made from now on (in
        practice reconnections: the server registers before it starts).
        """
        self._reconnect_callbacks.append(callback)

    @property
    def connected(self) -> bool:
        return self.client is not None

    def start(self, timeout: float = 15.0) -> Deferred[None]:
        """
        Start connecting.  Every attached bus calls this; the first call
        starts the service.  The result fires once the first connection is
        ready, or after ``timeout`` seconds (with a warning; connecting goes
        on in the background, and the buses keep group events until then).
        """
        self._starts += 1
        if not self._running:
            self._running = True
            self._service.startService()
        if self.client is not None:
            return succeed(None)
        waited: Deferred[None] = Deferred()

        def gave_up() -> None:
            if not waited.called:
                self._waiting.remove((waited, call))
                log.warn(
                    "No connection to the message broker at {endpoint} yet; still trying",
                    endpoint=self.settings.endpoint,
                )
                waited.callback(None)

        call = self._clock.callLater(timeout, gave_up)
        self._waiting.append((waited, call))
        return waited

    def stop(self) -> Deferred[None]:
        """
        Stop once every attached bus has asked to; close the connection.
        """
        self._starts -= 1
        if self._starts > 0 or not self._running:
            return succeed(None)
        self._running = False
        client, self.client = self.client, None
        closing = client.disconnect() if client is not None else succeed(None)
        stopped: Deferred[None] = DeferredList(
            [closing, self._service.stopService()], consumeErrors=True
        ).addCallback(lambda _: None)
        return stopped

    def _prepare_connection(self, client: Any) -> Deferred[None]:
        # ``client`` is ClientService's proxy of an AMQPClient.
        prepared = Deferred.fromCoroutine(self._prepare(client))

        def failed(failure: Failure) -> Failure:
            log.warn(
                "Could not set up the connection to the message broker at {endpoint}: {error}",
                endpoint=self.settings.endpoint,
                error=failure.value,
            )
            # ClientService does not close a connection it could not prepare.
            transport = getattr(client, "transport", None)
            if transport is not None:
                transport.abortConnection()
            return failure

        return prepared.addErrback(failed)

    async def _prepare(self, client: AMQPClient) -> None:
        # A broker that accepts the connection but does not answer (hung,
        # stopped) must not hold the node: heartbeats only start once
        # logged in, so setting up has a deadline of its own.
        self._setting_up = client
        client.lost.addCallback(lambda _: self._lost(client))
        setting_up = Deferred.fromCoroutine(self._set_up(client))
        setting_up.addTimeout(SETUP_TIMEOUT, self._clock, self._setup_timed_out(client))
        await setting_up

    def _setup_timed_out(self, client: AMQPClient) -> Callable[..., object]:
        def timed_out(result: object, timeout: float) -> object:
            log.warn(
                "The message broker at {endpoint} did not answer within {timeout} s",
                endpoint=self.settings.endpoint,
                timeout=timeout,
            )
            if client.transport is not None:
                client.transport.abortConnection()
            return result

        return timed_out

    async def _set_up(self, client: AMQPClient) -> None:
        client.when_unblocked(self._unblocked)  # a method: ``client`` is a proxy
        await client.login(self.settings.username, self.settings.password)
        for bus in self._buses:
            await bus.attach(client)
        self.client = client
        self._connections += 1
        log.info(
            "Connected to the message broker at {endpoint} (connection {count})",
            endpoint=self.settings.endpoint,
            count=self._connections,
        )
        waiting, self._waiting = self._waiting, []
        for waited, call in waiting:
            call.cancel()
            waited.callback(None)
        # Also after the first connection: a node that started while the
        # broker was away has push connections that missed events.
        for callback in self._reconnect_callbacks:
            try:
                callback()
            except Exception:
                log.failure("A reconnection callback failed")

    def _unblocked(self) -> None:
        """
        The broker takes publishes again after a resource alarm: publish
        what waited, and catch push connections up on the key events not
        sent meanwhile.
        """
        for bus in self._buses:
            bus.flush_outbox()
        for callback in self._reconnect_callbacks:
            try:
                callback()
            except Exception:
                log.failure("A reconnection callback failed")

    def _lost(self, client: AMQPClient) -> None:
        if client is not self.client and client is not self._setting_up:
            return  # an earlier connection, already replaced
        if self.client is client:
            self.client = None
        for bus in self._buses:
            bus.detach()
        if self._running:
            log.warn(
                "Lost the connection to the message broker: {reason}",
                reason=client.lost_reason.value if client.lost_reason else None,
            )
