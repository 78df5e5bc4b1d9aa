"""
The RabbitMQ bus beyond the shared contract, against real brokers: the
client's wire handling, routing only to nodes with listeners, bindings
following registrations, unreadable messages, a node dying mid-event, and
a broker restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.bus import amqp as amqp_module
from jmap_twisted.bus.amqp import AMQPEventBus
from jmap_twisted.bus.amqp_client import AMQPClientFactory, Delivery
from jmap_twisted.bus.amqp_node import AMQPSettings, ConfigurationError
from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.events import AccountKey, StateChange
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.testing import eventually, settle
from tests.bus.amqp_backends import amqp_bus
from tests.bus.recorders import Recorder, Stalled
from tests.services.rabbitmq import Broker

ALICE, BOB = AccountKey("alice"), AccountKey("bob")


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def change(account: str = "alice") -> StateChange:
    return StateChange(account, {"Email": "1"})


class Buses:
    """
    Starts buses for a test and stops them after it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = prefix()
        self.started: list[AMQPEventBus] = []

    async def node(self, dead: Any = None, name: str = "test", **kw: Any) -> AMQPEventBus:
        from twisted.internet import reactor

        bus = amqp_bus(reactor, self.url, self.prefix, dead or MemoryDeadLetters(), name, **kw)
        await bus.start()
        self.started.append(bus)
        return bus

    async def stop(self) -> None:
        for bus in self.started:
            await bus.stop()


@pytest_twisted.async_yield_fixture
async def buses(rabbitmq: Broker) -> Any:
    made = Buses(rabbitmq.url)
    yield made
    await made.stop()


# -- the client ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_bodies_are_bytes_through_a_real_broker(rabbitmq: Broker) -> None:
    """
    Non-ASCII UTF-8 bodies, bodies larger than a frame (split by the
    broker, also inside a multi-byte character) and bodies that are not
    UTF-8 at all arrive exactly as published.
    """
    from twisted.internet import endpoints, reactor

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", rabbitmq.port)
    client = await endpoint.connect(AMQPClientFactory(reactor))
    await client.login("guest", "guest")
    channel = await client.open_channel()
    queue = f"bodies-{uuid.uuid4().hex[:8]}"
    await channel.declare_queue(queue, exclusive=True)
    received: list[Delivery] = []
    await channel.consume(queue, received.append, no_ack=True)
    bodies = [
        "Grüße, 世界 ✉".encode(),
        ("é" * 200_001).encode(),  # 400,002 octets: several frames, split mid-character
        b"\xff\xfe\x00" * 70_000,
        b"",
    ]
    for body in bodies:
        await channel.publish("", queue, body, headers={"h": "ü", "n": 7}, app_id="node")
    await eventually(lambda: len(received) == len(bodies))
    assert [d.body for d in received] == bodies
    assert all(isinstance(d.body, bytes) for d in received)
    assert received[0].headers == {"h": "ü", "n": 7} and received[0].app_id == "node"
    await client.disconnect()


@pytest_twisted.ensureDeferred
async def test_confirmed_publish_and_refusal(rabbitmq: Broker) -> None:
    """
    On a confirming channel a publish fires once the broker has the
    message; publishing after the connection closed fails instead of
    vanishing.
    """
    from twisted.internet import endpoints, reactor

    from jmap_twisted.bus.amqp_client import AMQPError

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", rabbitmq.port)
    client = await endpoint.connect(AMQPClientFactory(reactor))
    await client.login("guest", "guest")
    channel = await client.open_channel()
    await channel.select_confirms()
    await channel.publish("", "no-such-queue", b"x")  # unroutable yet confirmed
    await client.disconnect()
    with pytest.raises(AMQPError):
        await channel.publish("", "no-such-queue", b"x")


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused(rabbitmq: Broker) -> None:
    """
    A broker refusing the login fails the login with a clear error.
    """
    from twisted.internet import endpoints, reactor

    from jmap_twisted.bus.amqp_client import AMQPError

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", rabbitmq.port)
    client = await endpoint.connect(AMQPClientFactory(reactor))
    with pytest.raises(AMQPError, match="could not log in"):
        await client.login("guest", "wrong")


def test_settings_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Broker URLs give endpoints, users and virtual hosts; a password in the
    URL is refused; the password comes from the caller or the environment
    and is never shown.
    """
    monkeypatch.setenv("JMAP_AMQP_PASSWORD", "from-env")
    settings = AMQPSettings.from_url("amqp://jmap@broker.example:5673/mail")
    assert settings.endpoint == "tcp:broker.example:5673"
    assert (settings.username, settings.vhost, settings.password) == ("jmap", "mail", "from-env")
    assert "from-env" not in repr(settings)
    assert AMQPSettings.from_url("amqps://h/", "pw").endpoint == "tls:h:5671"
    assert AMQPSettings.from_url("amqp://h/%2f", "pw").vhost == "/"
    with pytest.raises(ConfigurationError, match="password"):
        AMQPSettings.from_url("amqp://u:secret@h/")
    with pytest.raises(ConfigurationError):
        AMQPSettings.from_url("http://h/")


# -- routing ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_only_nodes_with_listeners_receive_key_messages(
    buses: Buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A node with no listener for an account receives no message for it; the
    node with one gets exactly one; the emitting node's own listener gets
    the event in process and not a second time from the broker.
    """
    a, b, c = await buses.node(), await buses.node(), await buses.node()
    seen: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for name, bus in (("a", a), ("b", b), ("c", c)):
        original = bus._key_message

        def spy(delivery: Delivery, name: str = name, original: Callable[..., Any] = original):
            seen[name].append(delivery.routing_key)
            original(delivery)

        monkeypatch.setattr(bus, "_key_message", spy)
        # The consumer holds the bound method: re-route through the spy.
        client = bus.connector.client
        assert client is not None
        for tag, consumer in list(client._consumers.items()):
            if getattr(consumer, "__self__", None) is bus:
                client._consumers[tag] = spy
    on_a, on_b, on_c = Recorder(), Recorder(), Recorder()
    await a.register(on_a, [ALICE])
    await b.register(on_b, [ALICE])
    await c.register(on_c, [BOB])
    for _ in range(5):
        await a.dispatch(change("alice"), [ALICE])
    await eventually(lambda: len(on_b.received) == 5)
    await settle()
    assert len(on_a.received) == 5
    assert on_c.received == []
    assert seen["c"] == []
    assert seen["b"] == [ALICE.as_string()] * 5


@pytest_twisted.ensureDeferred
async def test_bindings_follow_the_first_and_last_listener(buses: Buses, rabbitmq: Broker) -> None:
    """
    The node queue is bound to a key while, and only while, some local
    listener has it.
    """
    bus = await buses.node()

    async def bound() -> set[str]:
        rows = await rabbitmq.ctl_in_thread(
            "list_bindings", "source_name", "destination_name", "routing_key"
        )
        return {
            line.split("\t")[2]
            for line in rows.splitlines()
            if line.startswith(bus.keys_exchange + "\t") and bus.node_queue in line
        }

    first = await bus.register(Recorder(), [ALICE])
    second = await bus.register(Recorder(), [ALICE, BOB])
    assert await bound() == {ALICE.as_string(), BOB.as_string()}
    await first.cancel()
    await settle()
    assert await bound() == {ALICE.as_string(), BOB.as_string()}
    await second.cancel()
    for _ in range(100):
        if not await bound():
            break
        await settle(0.05)
    assert await bound() == set()


@pytest_twisted.ensureDeferred
async def test_unreadable_messages_are_dropped_and_others_still_flow(
    buses: Buses,
) -> None:
    """
    A message that is not an event (another program publishing on the
    exchange) is dropped with a warning; later events still arrive; an
    unreadable group message is not retried forever.
    """
    a, b = await buses.node(), await buses.node()
    keyed, grouped = Recorder(), Recorder()
    await b.register(keyed, [ALICE])
    await a.register_group(grouped, "g")  # every node registers the groups
    await b.register_group(grouped, "g")
    publisher = a._publisher
    assert publisher is not None
    await publisher.publish(a.keys_exchange, ALICE.as_string(), b"\xff not json", app_id="x")
    await publisher.publish(a.groups_exchange, "", b'{"type":"Nope"}', app_id="x")
    await a.dispatch(change(), [ALICE])
    await eventually(lambda: len(keyed.received) == 1 and len(grouped.received) == 1)
    await settle()
    assert len(keyed.received) == 1 and len(grouped.received) == 1


@pytest_twisted.ensureDeferred
async def test_group_event_of_a_dying_node_goes_to_another(buses: Buses) -> None:
    """
    A group event whose node dies while handling it (never acknowledged)
    is handled by another node: no accepted event is lost.
    """
    a, b = await buses.node(), await buses.node()
    stalled, working = Stalled(), Recorder()
    await a.register_group(stalled, "g")
    sent = change()
    await a.dispatch(sent, [])
    await eventually(lambda: len(stalled.pending) == 1)
    await b.register_group(working, "g")
    client = a.connector.client
    assert client is not None
    client.transport.abortConnection()  # the node dies without acknowledging
    await eventually(lambda: [e.event_id for e in working.received] == [sent.event_id])


@pytest_twisted.ensureDeferred
async def test_outbox_overflow_is_dead_lettered(
    buses: Buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Group events dispatched while the broker is unreachable wait in the
    outbox; beyond its bound they are dead-lettered, never dropped.
    """
    dead = MemoryDeadLetters()
    bus = await buses.node(dead)
    await bus.register_group(Recorder(), "g")
    monkeypatch.setattr(amqp_module, "OUTBOX_LIMIT", 2)
    bus.detach()  # as if the connection had just dropped
    events = [change() for _ in range(3)]
    for event in events:
        await bus.dispatch(event, [])
    assert len(bus._outbox) == 2
    (insertion,) = await dead.ids("g")
    fetched = await dead.fetch("g", insertion)
    assert fetched is not None and fetched.event_id == events[2].event_id


# -- broker restart --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_broker_restart_restores_bindings_and_delivers_the_outbox(
    private_broker: Broker,
) -> None:
    """
    After the broker restarts, each node reconnects, declares its queue and
    re-binds every live key (remote pushes resume), publishes the group
    events dispatched during the outage, and calls its reconnection
    callbacks (for push catch-up).
    """
    from twisted.internet import reactor, threads

    made = Buses(private_broker.url)
    slow = RetryPolicy(max_retries=2, first_backoff=0.05)
    try:
        a, b = await made.node(retry=slow), await made.node(retry=slow)
        keyed, grouped = Recorder(), Recorder()
        await b.register(keyed, [ALICE])
        await a.register_group(grouped, "g")  # every node registers the groups
        await b.register_group(grouped, "g")
        reconnected: list[str] = []
        a.connector.on_reconnect(lambda: reconnected.append("a"))
        b.connector.on_reconnect(lambda: reconnected.append("b"))
        await a.dispatch(change(), [ALICE])
        await eventually(lambda: len(keyed.received) == 1 and len(grouped.received) == 1)

        await threads.deferToThread(private_broker.stop)
        await eventually(lambda: not a.connector.connected and not b.connector.connected)
        during = change()
        await a.dispatch(during, [])  # kept in the outbox
        assert a._outbox == [during]
        await threads.deferToThread(private_broker.start)

        await eventually(lambda: sorted(reconnected) == ["a", "b"], seconds=30)
        after = change()
        await a.dispatch(after, [ALICE])
        await eventually(lambda: len(keyed.received) == 2, seconds=10)
        assert keyed.received[-1].event_id == after.event_id
        await eventually(lambda: len(grouped.received) == 3, seconds=10)
        assert {e.event_id for e in grouped.received} >= {during.event_id, after.event_id}
        assert reactor.running
    finally:
        await made.stop()


@pytest_twisted.ensureDeferred
async def test_a_bus_without_remote_keys_keeps_key_events_local(
    buses: Buses, rabbitmq: Broker
) -> None:
    """
    With ``remote_keys=False`` (the mailbox bus: only its groups span the
    cluster) key listeners hear their own node's events, nothing crosses
    the broker for keys and no binding is made; groups still work.
    """
    a = await buses.node(remote_keys=False)
    b = await buses.node(remote_keys=False)
    here, there, grouped = Recorder(), Recorder(), Recorder()
    await a.register(here, [ALICE])
    await b.register(there, [ALICE])
    await a.register_group(grouped, "g")
    await b.register_group(grouped, "g")
    await a.dispatch(change(), [ALICE])
    await eventually(lambda: len(here.received) == 1 and len(grouped.received) == 1)
    await settle()
    assert there.received == []
    rows = await rabbitmq.ctl_in_thread("list_bindings", "source_name", "destination_name")
    assert not any(line.startswith(a.keys_exchange + "\t") for line in rows.splitlines())


@pytest_twisted.ensureDeferred
async def test_a_hung_broker_is_noticed_and_left(private_broker: Broker) -> None:
    """
    A broker that stops answering without closing its sockets (here:
    SIGSTOP) is noticed by missed heartbeats; the nodes drop the connection,
    and once it answers again they reconnect and events flow.
    """
    made = Buses(private_broker.url)
    try:
        a, b = await made.node(heartbeat=1), await made.node(heartbeat=1)
        keyed = Recorder()
        await b.register(keyed, [ALICE])
        private_broker.pause()
        try:
            await eventually(
                lambda: not a.connector.connected and not b.connector.connected, seconds=10
            )
        finally:
            private_broker.resume()
        await eventually(lambda: a.connector.connected and b.connector.connected, seconds=40)
        await a.dispatch(change(), [ALICE])
        await eventually(lambda: len(keyed.received) == 1, seconds=10)
    finally:
        await made.stop()


@pytest_twisted.ensureDeferred
async def test_a_cancelled_group_stops_consuming(buses: Buses) -> None:
    """
    When a node cancels its group registration, its consumer goes: the
    group's events go to the nodes still registered, none to it.
    """
    a, b = await buses.node(), await buses.node()
    on_a, on_b = Recorder(), Recorder()
    registration = await a.register_group(on_a, "g")
    await b.register_group(on_b, "g")
    await registration.cancel()
    await settle()
    for _ in range(6):
        await b.dispatch(change(), [])
    await eventually(lambda: len(on_b.received) == 6)
    await settle()
    assert on_a.received == []


@pytest_twisted.ensureDeferred
async def test_many_keys_are_bound_at_once(buses: Buses, rabbitmq: Broker) -> None:
    """
    Registering a listener under many keys binds them all (sent without
    waiting for each answer) before the registration completes, and a key
    event for any of them crosses nodes.
    """
    a, b = await buses.node(), await buses.node()
    keys = [AccountKey(f"user{n}") for n in range(300)]
    listener = Recorder()
    await b.register(listener, keys)
    rows = await rabbitmq.ctl_in_thread(
        "list_bindings", "source_name", "destination_name", "routing_key"
    )
    bound = [
        line
        for line in rows.splitlines()
        if line.startswith(f"{b.keys_exchange}\t{b.node_queue}\t")
    ]
    assert len(bound) == 300
    await a.dispatch(StateChange("user299", {"Email": "1"}), [keys[-1]])
    await eventually(lambda: len(listener.received) == 1)


@pytest_twisted.ensureDeferred
async def test_unconfirmed_events_of_a_lost_connection_are_published_again(
    buses: Buses,
) -> None:
    """
    A group event whose confirmation is lost with the connection goes back
    to the outbox (published again on the next connection), not to the
    dead letters; an event the broker refuses (nack) is dead-lettered.
    """
    from twisted.internet.defer import fail as failed

    from jmap_twisted.bus.amqp_client import AMQPError, BrokerRefused

    dead = MemoryDeadLetters()
    bus = await buses.node(dead)
    await bus.register_group(Recorder(), "g")
    publisher = bus._publisher
    assert publisher is not None
    lost, refused = change(), change()
    outcomes = iter([AMQPError("connection lost before confirmation"), BrokerRefused("nack")])
    original = publisher.publish
    publisher.publish = lambda *a, **k: failed(next(outcomes))  # type: ignore[method-assign]
    await bus.dispatch(lost, [])
    await bus.dispatch(refused, [])
    publisher.publish = original  # type: ignore[method-assign]
    assert [e.event_id for e in bus._outbox] == [lost.event_id]
    (insertion,) = await dead.ids("g")
    kept = await dead.fetch("g", insertion)
    assert kept is not None and kept.event_id == refused.event_id


def test_a_node_starts_its_publisher_and_access_watch_without_a_broker() -> None:
    """
    With the broker unreachable, the server still publishes commits (into
    the bus's outbox) and watches access changes: nothing waits for the
    first connection.
    """
    from twisted.internet.task import Clock

    from jmap_twisted.bus.amqp_node import AMQPConnector, AMQPSettings
    from jmap_twisted.config import ServerConfig
    from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
    from jmap_twisted.store.memory.mail import MemoryMailStore
    from tests.support import ImmediateReactor, jmap_service

    reactor = ImmediateReactor()
    clock = Clock()
    unreachable = AMQPSettings.from_url("amqp://guest@127.0.0.1:1/", "guest")
    connector = AMQPConnector(clock, unreachable, endpoint=_NeverConnects())
    service = jmap_service(
        ServerConfig(password_cost=2**4),
        MemoryDirectory(reactor),
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
        connector=connector,
    )
    service.startService()
    assert service.server.publisher._unsubscribe is not None
    assert service._access_watch.running
    assert (
        service.server.mailbox_bus._group_listeners
    )  # the change listener, consumed once connected
    service.stopService()


class _NeverConnects:
    """
    A client endpoint whose connection attempts never finish.
    """

    def connect(self, factory: Any) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred()


@pytest_twisted.ensureDeferred
async def test_a_broker_alarm_holds_group_events_here_until_it_clears(
    private_broker: Broker,
) -> None:
    """
    When the broker blocks publishers (a memory alarm), the node learns it
    (``connection.blocked``), keeps further group events in its bounded
    outbox instead of its connection's buffers, and publishes them when the
    broker unblocks; nothing is lost.
    """
    from twisted.internet import threads

    made = Buses(private_broker.url)
    try:
        a, b = await made.node(), await made.node()
        seen = Recorder()
        await a.register_group(seen, "g")
        await b.register_group(seen, "g")
        await threads.deferToThread(private_broker.ctl, "set_vm_memory_high_watermark", "0.0000001")
        try:
            first = change()
            held = a.dispatch(first, [])  # held by the broker, which tells the node
            client = a.connector.client
            assert client is not None
            await eventually(lambda: client.blocked, seconds=10)
            later = [change() for _ in range(3)]
            for event in later:
                await a.dispatch(event, [])
            assert [e.event_id for e in a._outbox] == [e.event_id for e in later]
        finally:
            await threads.deferToThread(private_broker.ctl, "set_vm_memory_high_watermark", "0.4")
        await eventually(lambda: not client.blocked, seconds=10)
        await held
        await eventually(lambda: len(seen.received) == 4, seconds=10)
        assert {e.event_id for e in seen.received} == {first.event_id} | {e.event_id for e in later}
        assert a._outbox == []
    finally:
        await made.stop()
