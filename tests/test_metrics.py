"""
The server's Prometheus metrics: a registry per server, bounded labels,
and the hooks that move them (push latency from a commit's stamp, merged
StateChanges, method calls and their errors, deliveries, open push
connections).
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
