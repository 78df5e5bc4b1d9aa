"""
The RabbitMQ bus in the bus contract suite
(:class:`jmap_twisted.testing.EventBusContract`), against a real broker.

Two backends:

``amqp``
    one node: dispatch and listeners on the same bus (key events are
    delivered in process, group events through the broker);
``amqp-two-nodes``
    two nodes sharing a broker: events are dispatched on node A and every
    key listener is registered on node B, so each key event crosses the
    broker through B's node queue and its bindings; groups are registered
    on both nodes, as a cluster does, and either node may handle an event.

Each test gets its own name prefix, so durable group queues left by one
test are not seen by the next.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted.bus.amqp import AMQPEventBus
from jmap_twisted.bus.amqp_node import AMQPConnector, AMQPSettings
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import (
    IEvent,
    IEventBus,
    IEventDeadLetters,
    IEventListener,
    IRegistration,
    IRegistrationKey,
)
from tests.services.rabbitmq import shared_broker

FAST = RetryPolicy(max_retries=2, first_backoff=0.01, jitter=0.5)


def amqp_bus(
    reactor: Any,
    url: str,
    prefix: str,
    dead: IEventDeadLetters,
    name: str = "test",
    retry: RetryPolicy = FAST,
    remote_keys: bool = True,
    heartbeat: int = 5,
) -> AMQPEventBus:
    """
    A bus on its own connection (one node).
    """
    connector = AMQPConnector(
        reactor, AMQPSettings.from_url(url, "guest", prefix=prefix, heartbeat=heartbeat)
    )
    return AMQPEventBus(connector, name, reactor, dead, retry, remote_keys=remote_keys)


async def one_node(dead: IEventDeadLetters, retry: RetryPolicy) -> AsyncIterator[IEventBus]:
    """
    A started bus on one node of the session's broker, stopped afterwards.
    """
    from twisted.internet import reactor

    broker = shared_broker()
    bus = amqp_bus(reactor, broker.url, f"t{uuid.uuid4().hex[:8]}", dead, retry=retry)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@implementer(IRegistration)
class _Both:
    def __init__(self, *registrations: IRegistration) -> None:
        self.registrations = registrations

    def cancel(self) -> Deferred[None]:
        for registration in self.registrations:
            registration.cancel()
        return Deferred.fromCoroutine(_none())


async def _none() -> None:
    return None


@implementer(IEventBus)
class TwoNodes:
    """
    Dispatches on one node's bus, registers on the other's.
    """

    def __init__(self, sender: AMQPEventBus, receiver: AMQPEventBus) -> None:
        self.sender = sender
        self.receiver = receiver
        self.observer = None

    def register(
        self, listener: IEventListener, keys: Collection[IRegistrationKey]
    ) -> Deferred[IRegistration]:
        return self.receiver.register(listener, keys)

    def register_group(self, listener: IEventListener, group: str) -> Deferred[IRegistration]:
        # Nodes register the same groups; either may handle an event.
        return self.sender.register_group(listener, group).addCallback(
            lambda first: self.receiver.register_group(listener, group).addCallback(
                lambda second: _Both(first, second)
            )
        )

    def dispatch(self, event: IEvent, keys: Collection[IRegistrationKey]) -> Deferred[None]:
        return self.sender.dispatch(event, keys)

    def redeliver(self, group: str, event: IEvent) -> Deferred[None]:
        return self.receiver.redeliver(group, event)

    def start(self) -> Deferred[None]:
        raise NotImplementedError

    def stop(self) -> Deferred[None]:
        raise NotImplementedError


async def two_nodes(dead: IEventDeadLetters, retry: RetryPolicy) -> AsyncIterator[IEventBus]:
    """
    Two started nodes of the session's broker as one :class:`TwoNodes`
    bus, stopped afterwards.
    """
    from twisted.internet import reactor

    broker = shared_broker()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = amqp_bus(reactor, broker.url, prefix, dead, retry=retry)
    b = amqp_bus(reactor, broker.url, prefix, dead, retry=retry)
    await a.start()
    await b.start()
    try:
        yield TwoNodes(a, b)
    finally:
        await a.stop()
        await b.stop()
