"""
The server's Prometheus metrics: a registry per server, bounded labels,
and the hooks that move them (push latency from a commit's stamp, merged
StateChanges, method calls and their errors, deliveries, open push
connections, WebSocket octets, authentications, database transactions,
web push, the event buses and the broker outbox).
"""

from __future__ import annotations

import json
import time
from base64 import b64encode
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import generate_latest
from treq.testing import StubTreq

from jmap_twisted import JMAPServer, ServerConfig
from jmap_twisted.bus.changes import StorePublisher
from jmap_twisted.bus.events import AccountKey, MailboxChanged, StateChange, from_json, to_json
from jmap_twisted.metrics import ServerMetrics, metrics_site
from jmap_twisted.push.listener import PushListener
from jmap_twisted.records import Account
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.testing import InMemoryEventBus, MemoryDeadLetters
from jmap_twisted.web import jmap_site
from tests.support import CHEAP_HASHER, ImmediateReactor


def value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def server() -> JMAPServer:
    reactor = ImmediateReactor()
    directory = MemoryDirectory(reactor)
    directory.create_user("alice", CHEAP_HASHER.hash("secret"))
    return JMAPServer(
        ServerConfig(password_cost=2**4, domains=("example.com",)),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
    )


def test_each_server_has_its_own_registry() -> None:
    """
    Two servers in one process count apart: neither sees the other's
    calls, and neither registers in the global default registry.
    """
    first, second = ServerMetrics(), ServerMetrics()
    first.api_call("Email/get", 0.01, None)
    assert value(first, "jmap_api_calls_total", method="other") == 1
    assert value(second, "jmap_api_calls_total", method="other") == 0
    assert b"jmap_api_calls_total" not in generate_latest()


def test_unknown_method_names_are_labelled_other() -> None:
    """
    Only method names the server knows become labels; any other name a
    client sends is counted under ``other``.
    """
    metrics = ServerMetrics(lambda name: name == "Email/get")
    metrics.api_call("Email/get", 0.01, None)
    metrics.api_call("Made/up-by-a-client", 0.01, "unknownMethod")
    assert value(metrics, "jmap_api_calls_total", method="Email/get") == 1
    assert value(metrics, "jmap_api_errors_total", method="other", type="unknownMethod") == 1
    assert b"Made/up" not in generate_latest(metrics.registry)


def test_state_change_carries_its_commit_time_across_the_wire() -> None:
    """
    ``committedAt`` survives serialisation (other nodes observe the
    latency too); an event without one stays without one.
    """
    stamped = StateChange("a1", {"Email": "2"}, committed_at=1234.5)
    again = from_json(to_json(stamped))
    assert isinstance(again, StateChange)
    assert again.committed_at == 1234.5
    bare = from_json(to_json(StateChange("a1", {"Email": "2"})))
    assert isinstance(bare, StateChange)
    assert bare.committed_at is None
    assert b"committedAt" not in to_json(StateChange("a1", {"Email": "2"}))
    changed = MailboxChanged("a1", 3, (), {"Email": "3"}, committed_at=99.0)
    back = from_json(to_json(changed))
    assert isinstance(back, MailboxChanged)
    assert back.committed_at == 99.0


@pytest_twisted.ensureDeferred
async def test_the_publisher_stamps_each_commit() -> None:
    """
    A commit goes on the mailbox bus stamped with when it was published.
    """
    reactor = ImmediateReactor()
    store = MemoryMailStore(reactor)
    bus = InMemoryEventBus(reactor, MemoryDeadLetters())
    seen: list[MailboxChanged] = []

    class Listener:
        execution_mode = "synchronous"

        def is_handling(self, event: Any) -> bool:
            return True

        def handle(self, event: Any) -> Any:
            from twisted.internet.defer import succeed

            seen.append(event)
            return succeed(None)

    await bus.register(Listener(), [AccountKey("a1")])  # type: ignore[arg-type]
    publisher = StorePublisher(store, bus, now=lambda: 42.0)
    publisher.start()
    await store.setup_account("a1")
    assert seen and all(event.committed_at == 42.0 for event in seen)


def listener(metrics: ServerMetrics, sent: list[dict[str, Any]]) -> PushListener:
    push = PushListener(sent.append, None, "u", metrics.push["websocket"])
    push.set_accounts([Account("a1", "a1", "owner")])
    push.start({"a1": {"Email": "1"}}, None)
    return push


def test_a_sent_state_change_observes_its_commit_latency() -> None:
    """
    A StateChange written for a stamped event counts as sent and observes
    one push latency on its transport; an event without a stamp is sent
    but not observed.
    """
    metrics = ServerMetrics()
    sent: list[dict[str, Any]] = []
    push = listener(metrics, sent)
    push.handle(StateChange("a1", {"Email": "2"}, committed_at=1.0))
    assert sent[-1]["changed"] == {"a1": {"Email": "2"}}
    assert value(metrics, "jmap_push_latency_seconds_count", transport="websocket") == 1
    assert value(metrics, "jmap_push_state_changes_sent_total", transport="websocket") == 1
    push.handle(StateChange("a1", {"Email": "3"}))
    assert value(metrics, "jmap_push_state_changes_sent_total", transport="websocket") == 2
    assert value(metrics, "jmap_push_latency_seconds_count", transport="websocket") == 1
    assert value(metrics, "jmap_push_latency_seconds_count", transport="eventsource") == 0


def test_changes_held_for_a_paused_reader_count_as_merged() -> None:
    """
    While a connection cannot take more, a newer state of a pending type
    replaces the older one: that is counted as merged, and once resumed one
    StateChange goes out, observing one latency: the older commit's.
    """
    metrics = ServerMetrics()
    sent: list[dict[str, Any]] = []
    push = listener(metrics, sent)
    push.pause()
    push.handle(StateChange("a1", {"Email": "2"}, committed_at=1.0))
    push.handle(StateChange("a1", {"Email": "3"}, committed_at=2.0))
    assert sent == []
    assert value(metrics, "jmap_push_state_changes_merged_total", transport="websocket") == 1
    resumed_at = time.time()
    push.resume()
    assert [s["changed"] for s in sent] == [{"a1": {"Email": "3"}}]
    assert value(metrics, "jmap_push_latency_seconds_count", transport="websocket") == 1
    # Measured from the commit at 1.0, not the later one at 2.0.
    assert value(metrics, "jmap_push_latency_seconds_sum", transport="websocket") >= (
        resumed_at - 1.0
    )


@pytest_twisted.ensureDeferred
async def test_method_calls_and_their_errors_are_counted_per_method() -> None:
    """
    Each call of a request counts under its method with its time; a call
    answered with an error counts under its error type too.
    """
    jmap = server()
    treq = StubTreq(jmap_site(jmap).resource)
    response = await treq.post(
        "http://jmap.test/jmap/api",
        json.dumps(
            {
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [
                    ["Core/echo", {"x": 1}, "0"],
                    ["Mailbox/get", {"accountId": "nobody"}, "1"],
                    ["No/such", {}, "2"],
                ],
            }
        ).encode(),
        headers={
            "Authorization": "Basic " + b64encode(b"alice:secret").decode(),
            "Content-Type": "application/json",
        },
    )
    assert response.code == 200
    metrics = jmap.metrics
    assert value(metrics, "jmap_api_calls_total", method="Core/echo") == 1
    assert value(metrics, "jmap_api_call_seconds_count", method="Mailbox/get") == 1
    assert (
        value(metrics, "jmap_api_errors_total", method="Mailbox/get", type="accountNotFound") == 1
    )
    assert value(metrics, "jmap_api_errors_total", method="other", type="unknownMethod") == 1
    assert value(metrics, "jmap_api_errors_total", method="Core/echo", type="serverFail") == 0


@pytest_twisted.ensureDeferred
async def test_deliveries_are_counted_by_outcome() -> None:
    """
    A message stored counts as delivered; an address of nobody as an
    unknown recipient.
    """
    jmap = server()
    account = await jmap.delivery.resolve("alice@example.com")
    assert account is not None
    await jmap.delivery.deliver(account, b"Subject: hi\r\n\r\nhello\r\n")
    assert await jmap.delivery.resolve("bob@example.com") is None
    assert value(jmap.metrics, "jmap_deliveries_total", outcome="delivered") == 1
    assert value(jmap.metrics, "jmap_deliveries_total", outcome="unknown_recipient") == 1


@pytest_twisted.ensureDeferred
async def test_the_metrics_site_serves_the_servers_registry() -> None:
    """
    ``/metrics`` answers Prometheus's text format with this server's
    metrics, open push connections per transport among them.
    """
    jmap = server()

    class Socket:
        __module__ = "jmap_twisted.ws.session"
        user_id = "alice"

    jmap.push_connections.add(Socket())  # type: ignore[arg-type]
    treq = StubTreq(metrics_site(jmap.metrics).resource)
    response = await treq.get("http://metrics.test/metrics")
    assert response.code == 200
    text = (await response.content()).decode()
    assert 'jmap_push_connections{transport="websocket"} 1.0' in text
    assert 'jmap_push_connections{transport="eventsource"} 0.0' in text
    assert "jmap_push_latency_seconds_bucket" in text
    assert "jmap_broker_connected" not in text  # no broker configured


def test_metrics_listener_is_off_unless_asked_for() -> None:
    """
    ``--metrics`` is off by default; given, its endpoint reaches the
    configuration; a malformed endpoint is a usage error.
    """
    from twisted.python import usage

    from jmap_twisted.tap import Options

    def parse(*args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    assert parse().config.metrics_listen is None
    given = parse("--metrics", "tcp:9464:interface=127.0.0.1").config
    assert given.metrics_listen == "tcp:9464:interface=127.0.0.1"
    with pytest.raises(usage.UsageError, match="--metrics"):
        parse("--metrics", "nonsense:1")


def test_websocket_octets_are_counted_before_and_after_deflate_at_close() -> None:
    """
    A closed WebSocket adds its message octets each way, as payload and as
    they crossed the wire after permessage-deflate; nothing is counted
    while it is open.
    """
    from tests.ws.memory import Connection

    c = Connection()
    metrics = c.service.server.metrics
    c.client.send_json(
        {
            "@type": "Request",
            "id": "1",
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {"text": "abc" * 2000}, "a"]],
        }
    )
    c.flush()
    assert value(metrics, "jmap_websocket_octets_total", direction="out", stage="payload") == 0
    c.client.sendClose(1000)
    c.flush()
    out_payload = value(metrics, "jmap_websocket_octets_total", direction="out", stage="payload")
    out_wire = value(metrics, "jmap_websocket_octets_total", direction="out", stage="wire")
    in_payload = value(metrics, "jmap_websocket_octets_total", direction="in", stage="payload")
    in_wire = value(metrics, "jmap_websocket_octets_total", direction="in", stage="wire")
    assert out_payload > 6000
    assert 0 < out_wire < out_payload / 10
    assert in_payload > in_wire > 0


def authentications(metrics: ServerMetrics, scheme: str, outcome: str) -> float:
    return value(metrics, "jmap_authentications_total", scheme=scheme, outcome=outcome)


@pytest_twisted.ensureDeferred
async def test_authentications_are_counted_by_scheme_and_outcome() -> None:
    """
    Each login checked counts under its credentials' scheme, accepted or
    failed: Basic, a directory bearer token, a JWT-shaped token (OpenID
    Connect), a push ticket.  A request without credentials is no
    authentication.
    """
    from twisted.cred.error import UnauthorizedLogin

    from jmap_twisted.auth.checkers import BearerToken
    from jmap_twisted.auth.passwords import new_token, token_hash
    from jmap_twisted.interfaces import IPrincipal
    from jmap_twisted.push.tickets import TicketCredentials

    jmap = server()
    found = await jmap.directory.get_password_hash("alice")
    assert found is not None
    token = new_token()
    await jmap.directory.add_token(found[0].id, token_hash(token), "t")
    treq = StubTreq(jmap_site(jmap).resource)

    async def session(authorization: str | None) -> int:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await treq.get("http://jmap.test/jmap/session", headers=headers)
        await response.content()
        return int(response.code)

    basic = "Basic " + b64encode(b"alice:secret").decode()
    wrong = "Basic " + b64encode(b"alice:wrong").decode()
    assert await session(basic) == 200
    assert await session(wrong) == 401
    assert await session("Bearer " + token) == 200
    assert await session("Bearer nope") == 401
    assert await session("Bearer aaa.bbb.ccc") == 401
    assert await session(None) == 401
    with pytest.raises(UnauthorizedLogin):
        await jmap.portal.login(TicketCredentials("no-such-ticket", None), None, IPrincipal)
    with pytest.raises(UnauthorizedLogin):
        await jmap.portal.login(BearerToken("nope"), None, IPrincipal)
    metrics = jmap.metrics
    assert authentications(metrics, "basic", "ok") == 1
    assert authentications(metrics, "basic", "failed") == 1
    assert authentications(metrics, "bearer", "ok") == 1
    assert authentications(metrics, "bearer", "failed") == 2
    assert authentications(metrics, "oidc", "failed") == 1
    assert authentications(metrics, "ticket", "failed") == 1
    assert authentications(metrics, "ticket", "ok") == 0


@pytest_twisted.ensureDeferred
async def test_the_servers_database_transactions_are_timed_by_kind(tmp_path: Any) -> None:
    """
    A server over opened stores times its database's transactions: a
    write counts under ``write``, a read under ``read``.
    """
    from twisted.internet import reactor

    from jmap_twisted.store.backends import StoreSettings, open_stores

    stores = open_stores(StoreSettings(tmp_path), reactor)  # type: ignore[arg-type]
    await stores.database.start()
    try:
        jmap = JMAPServer.from_stores(
            ServerConfig(password_cost=2**4, domains=("example.com",)),
            stores,
            reactor,  # type: ignore[arg-type]
        )
        metrics = jmap.metrics
        writes = value(metrics, "jmap_store_transaction_seconds_count", kind="write")
        reads = value(metrics, "jmap_store_transaction_seconds_count", kind="read")
        await stores.directory.create_user("alice", CHEAP_HASHER.hash("secret"))
        assert value(metrics, "jmap_store_transaction_seconds_count", kind="write") > writes
        assert value(metrics, "jmap_store_transaction_seconds_count", kind="read") == reads
        assert await stores.directory.get_password_hash("alice") is not None
        assert value(metrics, "jmap_store_transaction_seconds_count", kind="read") > reads
    finally:
        await stores.database.stop()


def test_web_push_observes_the_latency_of_an_accepted_post() -> None:
    """
    A StateChange a push service accepts counts as sent on the ``webpush``
    transport and observes the latency from its commit, also when it was
    accepted only on a retry; one without a commit time is counted but not
    observed.
    """
    from twisted.internet.task import Clock

    from jmap_twisted.push.webpush.dispatcher import WebPushDispatcher
    from jmap_twisted.push.webpush.sender import FAILED, OK, Outcome
    from jmap_twisted.store.memory.push import MemoryPushSubscriptions
    from tests.push.test_webpush_delivery import FakeSender, result_of, subscription

    clock = Clock()
    clock.advance(time.time())
    directory = MemoryDirectory(clock)
    user = result_of(directory.create_user("alice", None))
    account = result_of(directory.accounts_for_user(user.id))[0].id
    subscriptions = MemoryPushSubscriptions()
    result_of(subscriptions.add(subscription(id="s1", user_id=user.id)))
    metrics = ServerMetrics()
    sender = FakeSender()
    dispatcher = WebPushDispatcher(
        subscriptions, directory, sender, clock, metrics=metrics.push["webpush"]
    )

    def latencies() -> float:
        return value(metrics, "jmap_push_latency_seconds_count", transport="webpush")

    result_of(dispatcher.handle(StateChange(account, {"Email": "2"}, committed_at=1.0)))
    (first,) = sender.posts
    first.answer.callback(Outcome(FAILED, 500))
    assert latencies() == 0
    clock.advance(dispatcher.FIRST_BACKOFF)
    retried = sender.posts[-1]
    assert retried is not first and retried.changed == {account: {"Email": "2"}}
    answered_at = time.time()
    retried.answer.callback(Outcome(OK, 201))
    assert latencies() == 1
    # From the commit at 1.0, carried across the retry.
    assert value(metrics, "jmap_push_latency_seconds_sum", transport="webpush") >= (
        answered_at - 1.0
    )
    result_of(dispatcher.handle(StateChange(account, {"Email": "3"})))
    sender.posts[-1].answer.callback(Outcome(OK, 201))
    assert value(metrics, "jmap_push_state_changes_sent_total", transport="webpush") == 2
    assert latencies() == 1


def test_a_bus_reports_dispatches_listener_times_retries_and_dead_letters() -> None:
    """
    A bus with the server's observer counts each dispatch, times each key
    and group listener call on its clock (failed calls too), counts each
    retry it schedules and each dead letter it keeps, under its own bus
    label only.
    """
    from twisted.internet.task import Clock

    from jmap_twisted.bus.retry import RetryPolicy
    from jmap_twisted.testing import RecordingListener, StalledListener

    clock = Clock()
    dead = MemoryDeadLetters()
    bus = InMemoryEventBus(clock, dead, RetryPolicy(1, 1.0, 0.0), None, lambda: 0.0)
    metrics = ServerMetrics()
    bus.observer = metrics.buses["mailbox"]
    slow = StalledListener()
    bus.register(slow, [AccountKey("a1")])
    bus.register_group(RecordingListener(failures=100), "broken")
    bus.dispatch(StateChange("a1", {"Email": "2"}), [AccountKey("a1")])
    assert value(metrics, "jmap_bus_dispatched_total", bus="mailbox") == 1
    assert value(metrics, "jmap_bus_retries_total", bus="mailbox") == 1
    assert value(metrics, "jmap_bus_handle_seconds_count", bus="mailbox", kind="group") == 1
    clock.advance(2.0)  # the retry runs and fails: no retries left
    slow.pending[0].callback(None)
    assert value(metrics, "jmap_bus_handle_seconds_count", bus="mailbox", kind="key") == 1
    assert value(metrics, "jmap_bus_handle_seconds_sum", bus="mailbox", kind="key") == 2.0
    assert value(metrics, "jmap_bus_handle_seconds_count", bus="mailbox", kind="group") == 2
    assert value(metrics, "jmap_bus_retries_total", bus="mailbox") == 1
    assert value(metrics, "jmap_bus_dead_letters_total", bus="mailbox") == 1
    assert len(dead._letters["broken"]) == 1
    assert value(metrics, "jmap_bus_dispatched_total", bus="jmap") == 0


@pytest_twisted.ensureDeferred
async def test_a_servers_buses_report_under_their_own_labels() -> None:
    """
    A server observes both of its buses: a delivery's commit is dispatched
    on the mailbox bus, handled by its group listener, and passed on as a
    StateChange dispatched on the JMAP bus.
    """
    from jmap_twisted.bus.changes import register_change_listener

    jmap = server()
    await register_change_listener(jmap.mailbox_bus, jmap.jmap_bus)
    jmap.publisher.start()
    account = await jmap.delivery.resolve("alice@example.com")
    assert account is not None
    await jmap.delivery.deliver(account, b"Subject: hi\r\n\r\nhello\r\n")
    metrics = jmap.metrics
    assert value(metrics, "jmap_bus_dispatched_total", bus="mailbox") >= 1
    assert value(metrics, "jmap_bus_handle_seconds_count", bus="mailbox", kind="group") >= 1
    assert value(metrics, "jmap_bus_dispatched_total", bus="jmap") >= 1
    assert value(metrics, "jmap_bus_dead_letters_total", bus="mailbox") == 0
    assert generate_latest(metrics.registry).count(b"jmap_broker_outbox_events") == 0


def test_the_broker_outbox_depth_is_read_when_scraped() -> None:
    """
    With the broker unreachable, the group events a node dispatches wait
    in its bus's outbox, and the scrape reports how many, per bus.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from jmap_twisted.bus.amqp_node import AMQPConnector, AMQPSettings
    from jmap_twisted.bus.changes import register_change_listener

    class NeverConnects:
        def connect(self, factory: Any) -> Deferred[Any]:
            return Deferred()

    reactor = ImmediateReactor()
    unreachable = AMQPSettings.from_url("amqp://guest@127.0.0.1:1/", "guest")
    connector = AMQPConnector(Clock(), unreachable, endpoint=NeverConnects())  # type: ignore[arg-type]
    jmap = JMAPServer(
        ServerConfig(password_cost=2**4),
        MemoryDirectory(reactor),
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
        connector=connector,
    )
    register_change_listener(jmap.mailbox_bus, jmap.jmap_bus)
    metrics = jmap.metrics

    def outbox(bus: str) -> float | None:
        return metrics.registry.get_sample_value("jmap_broker_outbox_events", {"bus": bus})

    assert outbox("mailbox") == 0
    for n in range(3):
        jmap.mailbox_bus.dispatch(MailboxChanged("a1", n, (), {"Email": str(n)}), [])
    assert outbox("mailbox") == 3
    assert outbox("jmap") == 0
    assert value(metrics, "jmap_bus_dispatched_total", bus="mailbox") == 3
