# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of one server, in a registry of its own (several
servers in one process do not collide), served by :func:`metrics_site`
on the listener ``--metrics`` names.

Labels stay bounded: transports, outcomes and JMAP error types are small
fixed sets, and method names are those the server's method registry knows
(anything else is ``other``); no account or user ids.  The hooks are
plain method calls on :class:`ServerMetrics`, cheap enough for hot paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from jmap_twisted.interfaces import IBusObserver

#: The push transports, as labelled.
TRANSPORTS = ("websocket", "eventsource", "webpush")

#: The credentials schemes of authentications, as labelled.
SCHEMES = ("basic", "bearer", "ticket", "oidc")

#: The event buses of a server, as labelled.
BUSES = ("mailbox", "jmap")

#: Latency buckets (seconds) of pushes and calls: from a millisecond to a
#: minute.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


def transport_of(connection: object) -> str:
    """
    The transport label of a push connection: ``websocket`` for the
    WebSocket sessions, ``eventsource`` for the rest.
    """
    websocket = type(connection).__module__.startswith("jmap_twisted.ws")
    return "websocket" if websocket else "eventsource"


class PushMetrics:
    """
    What one push transport's connections report: StateChanges sent and
    merged, and the latency from a commit to its StateChange's frame.
    """

    def __init__(self, metrics: ServerMetrics, transport: str) -> None:
        self._latency = metrics.push_latency.labels(transport)
        self._sent = metrics.state_changes_sent.labels(transport)
        self._merged = metrics.state_changes_merged.labels(transport)

    def merged(self, count: int = 1) -> None:
        """
        Count pending changes folded into one not yet sent.
        """
        self._merged.inc(count)

    def sent(self, committed_at: float | None) -> None:
        """
        Count one StateChange written, observing how long after the oldest
        commit it carries (seconds since the epoch; ``None``: unknown, not
        observed) it went out.
        """
        self._sent.inc()
        if committed_at is not None:
            self._latency.observe(max(0.0, time.time() - committed_at))


@implementer(IBusObserver)
class BusMetrics:
    """
    What one event bus reports: dispatches, listener calls by kind,
    retries and dead letters (the bus's
    :attr:`~jmap_twisted.interfaces.IEventBus.observer`).
    """

    def __init__(self, metrics: ServerMetrics, bus: str) -> None:
        self._dispatched = metrics.bus_dispatched.labels(bus)
        self._handle = {
            kind: metrics.bus_handle_seconds.labels(bus, kind) for kind in ("key", "group")
        }
        self._retries = metrics.bus_retries.labels(bus)
        self._dead_letters = metrics.bus_dead_letters.labels(bus)

    def dispatched(self) -> None:
        self._dispatched.inc()

    def handled(self, kind: str, seconds: float) -> None:
        self._handle[kind].observe(max(0.0, seconds))

    def retry_scheduled(self) -> None:
        self._retries.inc()

    def dead_lettered(self) -> None:
        self._dead_letters.inc()


class ServerMetrics:
    """
    The metrics of one :class:`~jmap_twisted.server.JMAPServer`, in
    :attr:`registry`.

    :param known: whether the server knows a method name (known names
        label the API metrics; others count as ``other``).
    """

    def __init__(self, known: Callable[[str], bool] = lambda name: False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._known = known
        #: The counter and histogram of each known method (``labels`` looks
        #: them up under a lock, at every call otherwise).
        self._method_children: dict[str, tuple[Any, Any]] = {}
        registry = self.registry
        self.push_latency = Histogram(
            "jmap_push_latency_seconds",
            "Time from a store commit to the StateChange frame written, per transport.",
            ["transport"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.state_changes_sent = Counter(
            "jmap_push_state_changes_sent",
            "StateChange objects written to push connections, per transport.",
            ["transport"],
            registry=registry,
        )
        self.state_changes_merged = Counter(
            "jmap_push_state_changes_merged",
            "Changes merged into a pending StateChange (a slow or paused reader).",
            ["transport"],
            registry=registry,
        )
        self.api_calls = Counter(
            "jmap_api_calls",
            "JMAP method calls, per method.",
            ["method"],
            registry=registry,
        )
        self.api_call_seconds = Histogram(
            "jmap_api_call_seconds",
            "Time one JMAP method call took, per method.",
            ["method"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.api_errors = Counter(
            "jmap_api_errors",
            "JMAP method calls answered with an error, per method and error type.",
            ["method", "type"],
            registry=registry,
        )
        self.deliveries = Counter(
            "jmap_deliveries",
            "Messages offered to local recipients (LMTP, SMTP, EmailSubmission), per outcome.",
            ["outcome"],
            registry=registry,
        )
        self.websocket_octets = Counter(
            "jmap_websocket_octets",
            "Octets of WebSocket messages, per direction, on the wire (after"
            " permessage-deflate, frame headers excluded) or as payload (uncompressed);"
            " counted when a socket closes.",
            ["direction", "stage"],
            registry=registry,
        )
        self.authentications = Counter(
            "jmap_authentications",
            "HTTP authentications, per credentials scheme and outcome.",
            ["scheme", "outcome"],
            registry=registry,
        )
        self.store_transaction_seconds = Histogram(
            "jmap_store_transaction_seconds",
            "Time from submitting a database transaction to its result, per kind.",
            ["kind"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.bus_dispatched = Counter(
            "jmap_bus_dispatched",
            "Events dispatched on this node, per bus.",
            ["bus"],
            registry=registry,
        )
        self.bus_handle_seconds = Histogram(
            "jmap_bus_handle_seconds",
            "Time one event listener call took (to success, failure or timeout),"
            " per bus and kind of listener (key or group); the key listeners of one"
            " dispatch that finish at once are one observation together.",
            ["bus", "kind"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.bus_retries = Counter(
            "jmap_bus_retries",
            "Failed group deliveries scheduled for another attempt, per bus.",
            ["bus"],
            registry=registry,
        )
        self.bus_dead_letters = Counter(
            "jmap_bus_dead_letters",
            "Events given up on for a group and kept as dead letters, per bus.",
            ["bus"],
            registry=registry,
        )
        for direction in ("in", "out"):
            for stage in ("wire", "payload"):
                self.websocket_octets.labels(direction, stage)
        for scheme in SCHEMES:
            for outcome in ("ok", "failed"):
                self.authentications.labels(scheme, outcome)
        # The children observed on every transaction and delivery, looked
        # up once (``labels`` takes a lock and builds a key each call).
        self._store_transaction = {
            kind: self.store_transaction_seconds.labels(kind) for kind in ("read", "write")
        }
        for transport in TRANSPORTS:
            self.push_latency.labels(transport)
            self.state_changes_sent.labels(transport)
            self.state_changes_merged.labels(transport)
        self._deliveries = {
            outcome: self.deliveries.labels(outcome)
            for outcome in ("delivered", "over_quota", "unknown_recipient", "failed")
        }
        self.push = {transport: PushMetrics(self, transport) for transport in TRANSPORTS}
        #: The observers of the server's buses, by bus.
        self.buses = {bus: BusMetrics(self, bus) for bus in BUSES}

    def method_label(self, name: str) -> str:
        """
        The label of a method name: itself when the server knows it,
        ``other`` otherwise.
        """
        return name if self._known(name) else "other"

    def api_call(self, name: str, seconds: float, error: str | None) -> None:
        """
        Count one method call that took ``seconds``; ``error`` is the JMAP
        error type it was answered with, if any.
        """
        children = self._method_children.get(name)
        if children is None:
            label = self.method_label(name)
            children = (self.api_calls.labels(label), self.api_call_seconds.labels(label))
            if label != "other":  # a client's made-up names are not kept
                self._method_children[name] = children
        else:
            label = name
        calls, call_seconds = children
        calls.inc()
        call_seconds.observe(seconds)
        if error is not None:
            self.api_errors.labels(label, error).inc()

    def delivery(self, outcome: str) -> None:
        """
        Count one message offered to a local recipient: ``delivered``,
        ``over_quota``, ``unknown_recipient`` or ``failed``.
        """
        self._deliveries[outcome].inc()

    def websocket_closed(self, stats: Any) -> None:
        """
        Count the octets of a closed WebSocket, from Autobahn's
        ``trafficStats``: message payloads each way, as they crossed the
        wire (compressed) and uncompressed.
        """
        octets = self.websocket_octets
        octets.labels("in", "wire").inc(stats.incomingOctetsWebSocketLevel)
        octets.labels("in", "payload").inc(stats.incomingOctetsAppLevel)
        octets.labels("out", "wire").inc(stats.outgoingOctetsWebSocketLevel)
        octets.labels("out", "payload").inc(stats.outgoingOctetsAppLevel)

    def authentication(self, scheme: str, ok: bool) -> None:
        """
        Count one authentication with credentials of ``scheme`` (one of
        :data:`SCHEMES`), succeeded or failed.
        """
        self.authentications.labels(scheme, "ok" if ok else "failed").inc()

    def store_transaction(self, kind: str, seconds: float) -> None:
        """
        Observe one database transaction of ``kind`` (``read`` or
        ``write``) that took ``seconds``: the databases'
        ``observe`` hook.
        """
        self._store_transaction[kind].observe(seconds)

    def watch(self, connections: Iterable[object], connector: object | None) -> None:
        """
        Report state read when scraped: the open push connections per
        transport, and whether the broker connector (if any) is connected.
        """
        self.registry.register(_ServerState(connections, connector))

    def watch_outboxes(self, buses: Mapping[str, object]) -> None:
        """
        Report when scraped how many group events wait in each bus's
        outbox for the broker (buses with an ``outbox_size``: the AMQP
        ones; nothing is reported without any).
        """
        self.registry.register(_Outboxes(buses))


class _ServerState(Collector):
    """
    Gauges read from a server's state when scraped.
    """

    def __init__(self, connections: Iterable[object], connector: object | None) -> None:
        self._connections = connections
        self._connector = connector

    def collect(self) -> Iterable[Metric]:
        counts = dict.fromkeys(TRANSPORTS[:2], 0)
        for connection in self._connections:
            counts[transport_of(connection)] += 1
        connections = GaugeMetricFamily(
            "jmap_push_connections",
            "Open push connections, per transport.",
            labels=["transport"],
        )
        for transport, count in counts.items():
            connections.add_metric([transport], count)
        yield connections
        connector = self._connector
        if connector is not None:
            yield GaugeMetricFamily(
                "jmap_broker_connected",
                "1 while the node is connected to the message broker.",
                value=1 if getattr(connector, "connected", False) else 0,
            )


class _Outboxes(Collector):
    """
    The broker outbox depth of a server's buses, read when scraped.
    """

    def __init__(self, buses: Mapping[str, object]) -> None:
        self._buses = buses

    def collect(self) -> Iterable[Metric]:
        sizes = {
            name: size
            for name, bus in self._buses.items()
            if isinstance(size := getattr(bus, "outbox_size", None), int)
        }
        if not sizes:
            return
        outbox = GaugeMetricFamily(
            "jmap_broker_outbox_events",
            "Group events waiting on this node for the message broker to take them, per bus.",
            labels=["bus"],
        )
        for name, size in sizes.items():
            outbox.add_metric([name], size)
        yield outbox


class MetricsPage(Resource):
    """
    A registry's metrics in Prometheus's text format.

    Rendered in the reactor's thread: collecting this server's few dozen
    series costs less than a hop to a thread.  (``prometheus_client``'s
    own ``MetricsResource`` would run on the global reactor's thread pool,
    which this project keeps out of everything but ``tap.py``.)
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


def metrics_site(metrics: ServerMetrics) -> Site:
    """
    The site of the metrics listener: ``/metrics`` in Prometheus's text
    format, nothing else.
    """
    root = Resource()
    root.putChild(b"metrics", MetricsPage(metrics.registry))
    site = Site(root)
    site.displayTracebacks = False
    return site


def timed(clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """
    A stopwatch: the returned function gives the seconds since the call.
    """
    start = clock()
    return lambda: clock() - start
