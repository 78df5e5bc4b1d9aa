"""
The RabbitMQ event bus: several nodes, each event routed only where it is
needed.

Topology of one bus named ``N`` under the prefix ``P`` (every node declares
it again after each connection):

``P.N.keys`` (direct exchange)
    Key events, published once per registration key with the key as
    routing key.
``P.N.node.<node id>`` (exclusive queue, one per node)
    Bound to ``P.N.keys`` with one routing key per registration key that
    has a listener on this node: bound on the first local listener of a
    key, unbound on the last.  A node with no listener for an account
    receives nothing about it.  Consumed without acknowledgements (a lost
    StateChange is made good by the catch-up after a reconnection).
``P.N.groups`` (fanout exchange) and ``P.N.group.<group>`` (durable queue per group)
    Group events, persistent and published with publisher confirms.  Every
    node consumes its groups' queues, so each event is handled once per
    cluster.  A message is acknowledged only once it is handled or kept as
    a dead letter, after the same retries as the in-memory bus; if its node
    dies first, the broker gives it to another node.

Key listeners on the emitting node get the event in process, without a
broker round trip, and skip the broker's copy (by the ``app-id`` property).

Every node of a cluster registers the same groups (they run the same
service).  A node publishes group events only on a bus where it has groups
itself, so a bus without groups (the JMAP bus) costs no group traffic at
all; whichever node's consumer takes a group event, it is handled once.
Group events dispatched while the connection is down wait in a bounded
outbox and are published on reconnection; what does not fit, or what the
broker refuses, is dead-lettered, never dropped.
"""

from __future__ import annotations

import random as _random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredLock,
    fail,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.bus.amqp_client import AMQPClient, AMQPError, BrokerRefused, Channel, Delivery
from jmap_twisted.bus.amqp_node import AMQPConnector
from jmap_twisted.bus.events import (
    ASYNCHRONOUS,
    GroupAlreadyRegistered,
    UnknownEvent,
    from_json,
    to_json,
)
from jmap_twisted.bus.memory import InMemoryEventBus, Registration, deliver_to_keys
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import (
    IBusObserver,
    IEvent,
    IEventBus,
    IEventDeadLetters,
    IEventListener,
    IRegistration,
    IRegistrationKey,
)

log = Logger()

#: Group events kept while the broker is unreachable.
OUTBOX_LIMIT = 10_000
#: Group events published and not yet confirmed, beyond which new ones
#: wait in the outbox (the broker is slow or has stopped reading).
UNCONFIRMED_LIMIT = 10_000
#: Unacknowledged group messages one node takes at a time.
GROUP_PREFETCH = 64
#: Key messages a node queue holds before the oldest are dropped.
NODE_QUEUE_LIMIT = 100_000
#: Event ids remembered to deliver an event published under several keys once.
RECENT_IDS = 4096


def new_node_id() -> str:
    """
    An identifier for this process, unique in the cluster.
    """
    return uuid.uuid4().hex[:16]


@implementer(IEventBus)
class AMQPEventBus:
    """
    An :class:`~jmap_twisted.interfaces.IEventBus` across nodes through
    RabbitMQ.

    :param connector: the node's broker connection (shared by its buses).
    :param name: the bus's name in the broker (``mailbox``, ``jmap``).
    :param node_id: this process's identity, unique in the cluster.
    :param remote_keys: whether key events cross to other nodes; without,
        key listeners hear only their own node's events (and no node queue
        is bound), while groups still span the cluster.
    """

    def __init__(
        self,
        connector: AMQPConnector,
        name: str,
        clock: IReactorTime,
        dead_letters: IEventDeadLetters,
        retry: RetryPolicy | None = None,
        execution_timeout: float | None = None,
        random: Callable[[], float] = _random.random,
        node_id: str | None = None,
        remote_keys: bool = True,
    ) -> None:
        self.connector = connector
        self.remote_keys = remote_keys
        self.name = name
        self.node_id = node_id or new_node_id()
        self._local = InMemoryEventBus(clock, dead_letters, retry, execution_timeout, random)
        self.groups = self._local.groups
        prefix = f"{connector.settings.prefix}.{name}"
        self.keys_exchange = f"{prefix}.keys"
        self.groups_exchange = f"{prefix}.groups"
        self.node_queue = f"{prefix}.node.{self.node_id}"
        self._group_queue_prefix = f"{prefix}.group."
        self._group_listeners: dict[str, IEventListener] = {}
        #: group → (channel, consumer tag) on the current connection.
        self._group_consumers: dict[str, tuple[Channel, str]] = {}
        self._client: AMQPClient | None = None
        self._control: Channel | None = None
        self._publisher: Channel | None = None
        self._keys_out: Channel | None = None
        self._group_in: Channel | None = None
        self._bound: set[str] = set()
        self._binding = DeferredLock()
        self._outbox: list[IEvent] = []
        self._recent: OrderedDict[str, None] = OrderedDict()
        connector.attach(self)

    @property
    def observer(self) -> IBusObserver | None:
        """
        Told what the bus does (dispatches on this node, listener calls,
        retries, dead letters), or ``None``.
        """
        return self.groups.observer

    @observer.setter
    def observer(self, observer: IBusObserver | None) -> None:
        self.groups.observer = observer

    @property
    def outbox_size(self) -> int:
        """
        Group events waiting here for the broker to take them.
        """
        return len(self._outbox)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Deferred[None]:
        return self.connector.start()

    def stop(self) -> Deferred[None]:
        self.groups.abandon()
        for event in self._outbox:
            self._dead_letter_everywhere(event)
        self._outbox.clear()
        return self.connector.stop()

    def group_queue(self, group: str) -> str:
        """
        The broker queue of a group.
        """
        return self._group_queue_prefix + group

    async def attach(self, client: AMQPClient) -> None:
        """
        Declare the topology on a new connection, bind every live key,
        consume, and publish what waited in the outbox.
        """
        control = await client.open_channel()
        await control.declare_exchange(self.keys_exchange, "direct")
        await control.declare_exchange(self.groups_exchange, "fanout")
        await control.declare_queue(
            self.node_queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": NODE_QUEUE_LIMIT},
        )
        publisher = await client.open_channel()
        await publisher.select_confirms()
        keys_out = await client.open_channel()
        group_in = await client.open_channel()
        await group_in.prefetch(GROUP_PREFETCH)
        keys_in = await client.open_channel()
        await keys_in.consume(self.node_queue, self._key_message, no_ack=True)
        self._control, self._group_in = control, group_in
        self._bound = set()
        await self._sync_bindings()
        # Group queues exist before anything is published to their exchange
        # (a fanout exchange without queues drops what it is sent).
        for group in list(self._group_listeners):
            await self._consume_group(group)
        self._client, self._publisher, self._keys_out = client, publisher, keys_out
        for group in list(self._group_listeners):
            if group not in self._group_consumers:  # registered meanwhile
                await self._consume_group(group)
        self.flush_outbox()

    def flush_outbox(self) -> None:
        """
        Publish the group events kept while the broker could not take them.
        """
        waiting, self._outbox = self._outbox, []
        for event in waiting:
            self._publish_group_event(event)

    def detach(self) -> None:
        """
        The connection is gone: keep group events in the outbox until the
        next one.  Retries in progress are dropped: the broker gives their
        unacknowledged messages out again.
        """
        self.groups.abandon()
        self._client = self._control = self._publisher = None
        self._keys_out = self._group_in = None
        self._bound = set()
        self._group_consumers = {}

    # -- registration --------------------------------------------------------

    def register(
        self, listener: IEventListener, keys: Collection[IRegistrationKey]
    ) -> Deferred[IRegistration]:
        local: Deferred[IRegistration] = self._local.register(listener, keys)
        inner: list[IRegistration] = []
        local.addCallback(inner.append)

        def cancel() -> None:
            inner[0].cancel()
            self._sync_bindings_later()

        registration: IRegistration = Registration(cancel)
        return Deferred.fromCoroutine(self._sync_bindings()).addCallback(lambda _: registration)

    def register_group(self, listener: IEventListener, group: str) -> Deferred[IRegistration]:
        if group in self._group_listeners:
            return fail(GroupAlreadyRegistered(group))
        self._group_listeners[group] = listener

        def cancel() -> None:
            if self._group_listeners.get(group) is listener:
                del self._group_listeners[group]
                consumer = self._group_consumers.pop(group, None)
                if consumer is not None:
                    channel, tag = consumer
                    channel.cancel(tag).addErrback(lambda _: None)

        registration: IRegistration = Registration(cancel)
        consuming = (
            Deferred.fromCoroutine(self._consume_group(group))
            if self._client is not None
            else succeed(None)  # the next connection consumes it
        )
        return consuming.addCallback(lambda _: registration)

    def local_listeners(self) -> list[IEventListener]:
        """
        Every key listener on this node.
        """
        return self._local.local_listeners()

    def _sync_bindings_later(self) -> None:
        Deferred.fromCoroutine(self._sync_bindings()).addErrback(
            lambda f: log.failure("Could not update the key bindings of {bus}", f, bus=self.name)
        )

    async def _sync_bindings(self) -> None:
        """
        Bind the node queue to every key with a local listener and unbind
        the rest, one change at a time, until they agree.
        """
        if not self.remote_keys:
            return
        await self._binding.acquire()
        try:
            while True:
                control = self._control
                if control is None:
                    return
                wanted = self._local.key_names()
                add = wanted - self._bound
                remove = self._bound - wanted
                if not add and not remove:
                    return
                # Many keys (a reconnection re-binds them all) go out without
                # waiting for answers, but the last: the broker answers it
                # after every binding before it.
                names = sorted(add)
                for index, name in enumerate(names):
                    last = index == len(names) - 1
                    await control.bind(self.node_queue, self.keys_exchange, name, wait=last)
                if self._control is not control:
                    continue
                self._bound.update(names)
                for name in remove:
                    if self._control is not control:
                        break
                    await control.unbind(self.node_queue, self.keys_exchange, name)
                    self._bound.discard(name)
        except AMQPError as error:
            # The connection went; the next one binds everything again.
            log.info("Key bindings interrupted: {error}", error=error)
        finally:
            self._binding.release()

    async def _consume_group(self, group: str) -> None:
        """
        Declare the group's queue and consume it (once per connection).  A
        connection lost meanwhile is left to the next one, which consumes
        every registered group.
        """
        control, group_in = self._control, self._group_in
        if control is None or group_in is None or group in self._group_consumers:
            return
        queue = self.group_queue(group)
        try:
            await control.declare_queue(queue, durable=True)
            await control.bind(queue, self.groups_exchange, "")
            tag = await group_in.consume(
                queue, lambda delivery: self._group_message(group, group_in, delivery)
            )
        except AMQPError as error:
            log.info("Consuming group {group} interrupted: {error}", group=group, error=error)
            return
        if (
            self._group_in is not group_in
            or group not in self._group_listeners
            or group in self._group_consumers
        ):
            # Cancelled, consumed by another call, or the connection changed
            # while this one waited: one consumer per group and connection.
            group_in.cancel(tag).addErrback(lambda _: None)
            return
        self._group_consumers[group] = (group_in, tag)

    # -- dispatch ------------------------------------------------------------

    def dispatch(self, event: IEvent, keys: Collection[IRegistrationKey]) -> Deferred[None]:
        if self.groups.observer is not None:
            self.groups.observer.dispatched()
        names = [key.as_string() for key in keys]
        waits = deliver_to_keys(self.groups, self._local.listeners_named(names), event)
        client = self._client
        if (
            names
            and self.remote_keys
            and self._keys_out is not None
            and not (client is not None and client.blocked)
        ):
            # While the broker blocks publishers, key events are not queued
            # up here: the catch-up after the alarm covers them.
            self._publish_key_event(event, names)
        if self._group_listeners:
            published = self._publish_group_event(event)
            if any(
                listener.execution_mode != ASYNCHRONOUS
                for listener in self._group_listeners.values()
            ):
                waits.append(published)
        if not waits:
            return succeed(None)
        done: Deferred[None] = DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)
        return done

    def _publish_key_event(self, event: IEvent, names: list[str]) -> None:
        channel = self._keys_out
        assert channel is not None
        body = to_json(event)
        headers: dict[str, str | int] = {}
        if len(names) > 1:
            headers["keys"] = "\n".join(names)
        for name in names:
            channel.publish(
                self.keys_exchange, name, body, headers=headers, app_id=self.node_id
            ).addErrback(lambda _: None)

    def _publish_group_event(self, event: IEvent) -> Deferred[None]:
        """
        Publish to every group queue, confirmed; dead-letter on refusal.
        The result fires once the broker confirmed or the event is kept.
        """
        publisher = self._publisher
        client = self._client
        if publisher is not None and (
            (client is not None and client.blocked) or publisher.unconfirmed >= UNCONFIRMED_LIMIT
        ):
            publisher = None  # the broker takes nothing now: keep it here
        if publisher is None:
            if len(self._outbox) < OUTBOX_LIMIT:
                self._outbox.append(event)
                return succeed(None)
            log.warn("The group outbox of {bus} is full", bus=self.name)
            return self._dead_letter_everywhere(event)
        published = publisher.publish(
            self.groups_exchange, "", to_json(event), persistent=True, app_id=self.node_id
        )

        def refused(failure: Any) -> Deferred[None]:
            if not failure.check(BrokerRefused) and len(self._outbox) < OUTBOX_LIMIT:
                # The connection went before the broker confirmed: publish
                # again on the next one (groups may see it twice, never
                # not at all).
                self._outbox.append(event)
                if self._publisher is not None and self._publisher is not publisher:
                    self._publish_group_event(self._outbox.pop())
                return succeed(None)
            log.warn(
                "The broker did not take event {event_id}: {error}",
                event_id=event.event_id,
                error=failure.value,
            )
            return self._dead_letter_everywhere(event)

        published.addErrback(refused)
        return published

    def _dead_letter_everywhere(self, event: IEvent) -> Deferred[None]:
        stored = [
            self.groups.dead_letter(group, event)
            for group, listener in self._group_listeners.items()
            if listener.is_handling(event)
        ]
        done: Deferred[None] = DeferredList(stored, consumeErrors=True).addCallback(lambda _: None)
        return done

    def redeliver(self, group: str, event: IEvent) -> Deferred[None]:
        if group not in self._group_listeners:
            return fail(KeyError(f"no listener for group {group}"))
        publisher = self._publisher
        if publisher is None:
            return fail(AMQPError("not connected to the message broker"))
        return publisher.publish(
            "", self.group_queue(group), to_json(event), persistent=True, app_id=self.node_id
        )

    # -- consuming -----------------------------------------------------------

    def _key_message(self, delivery: Delivery) -> None:
        if delivery.app_id == self.node_id:
            return  # delivered in process when it was dispatched
        event = self._decode(delivery)
        if event is None:
            return
        keys = delivery.headers.get("keys")
        names = [delivery.routing_key]
        if isinstance(keys, str):
            # Published once per key: deliver on the first copy only.
            if event.event_id in self._recent:
                return
            self._recent[event.event_id] = None
            if len(self._recent) > RECENT_IDS:
                self._recent.popitem(last=False)
            names = keys.split("\n")
        deliver_to_keys(self.groups, self._local.listeners_named(names), event)

    def _group_message(self, group: str, channel: Channel, delivery: Delivery) -> None:
        tag = delivery.delivery_tag
        event = self._decode(delivery)
        if event is None:
            channel.reject(tag, requeue=False)
            return
        listener = self._group_listeners.get(group)
        if listener is None:
            channel.reject(tag, requeue=True)
            return
        if not listener.is_handling(event):
            channel.ack(tag)
            return
        self.groups.deliver(group, listener, event, settled=lambda: channel.ack(tag))

    def _decode(self, delivery: Delivery) -> IEvent | None:
        try:
            return from_json(delivery.body)
        except UnknownEvent as error:
            log.warn(
                "Dropped an unreadable message on {bus} ({routing_key}): {error}",
                bus=self.name,
                routing_key=delivery.routing_key,
                error=error,
            )
            return None
