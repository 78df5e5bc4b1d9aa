"""
Several ``twistd jmap`` nodes sharing a throwaway PostgreSQL database and a
throwaway RabbitMQ broker, driven as real clients drive them: LMTP into one
node, WebSockets on another.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from tests.integration.test_twistd import Twistd, command, free_port
from tests.integration.test_websocket import USING, basic
from tests.mailfactory import message
from tests.services.postgres import TEST_ROLE, shared_cluster
from tests.services.rabbitmq import Broker

pytestmark = pytest.mark.integration


class Cluster:
    """
    The shared services and the nodes started on them.
    """

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp = tmp
        self.broker = broker
        postgres = shared_cluster()
        name = postgres.create_database().split("dbname=")[1].split()[0]
        self.store = f"postgresql://{TEST_ROLE}@127.0.0.1:{postgres.port}/{name}"
        self.password_file = tmp / "db-password"
        self.password_file.write_text(postgres.password + "\n")
        self.prefix = f"c{int(time.time() * 1000) % 10**8}"
        self.nodes: list[Node] = []

    def admin(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [
                command("jmap-admin"),
                "--store",
                self.store,
                "--store-password-file",
                str(self.password_file),
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def node(self, name: str, *extra: str) -> Node:
        node = Node(self, name, *extra)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Node(Twistd):
    """
    One ``twistd jmap`` process of the cluster; ``extra`` options are
    appended to its command line.
    """

    def __init__(self, cluster: Cluster, name: str, *extra: str) -> None:
        self.name = name
        self.port = free_port()
        self.lmtp_port = free_port()
        directory = cluster.tmp / name
        directory.mkdir()
        super().__init__(
            directory,
            f"tcp:{self.port}:interface=127.0.0.1",
            self.port,
            self.lmtp_port,
            extra=[
                "--store",
                cluster.store,
                "--store-password-file",
                str(cluster.password_file),
                "--bus",
                cluster.broker.url,
                "--bus-prefix",
                cluster.prefix,
                "--bus-heartbeat",
                "2",
                "--node-id",
                name,
                *extra,
            ],
            env={"JMAP_AMQP_PASSWORD": "guest", "PATH": "/usr/bin:/bin"},
        )
        self.wait_for_log("Connected to the message broker")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_log(self, text: str, count: int = 1, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.log.exists() and self.log.read_text().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not log {text!r}: {self.log.read_text()[-3000:]}")

    def deliver(self, subject: str) -> None:
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as client:
            client.sendmail(
                "s@elsewhere.test",
                ["alice@example.com"],
                message(subject=subject, to="alice@example.com"),
            )

    def socket(self, user: str = "alice") -> ClientConnection:
        return connect(
            f"ws://127.0.0.1:{self.port}/jmap/ws",
            subprotocols=["jmap"],
            additional_headers=basic(user, "pw"),
            compression="deflate",
        )

    def stop(self) -> bool:
        try:
            return super().stop()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def request(ws: ClientConnection, *calls: list[Any]) -> list[list[Any]]:
    """
    One JMAP request over the socket; its method responses.
    """
    ws.send(json.dumps({"@type": "Request", "id": "r", "using": USING, "methodCalls": calls}))
    while True:
        value = json.loads(ws.recv(timeout=10))
        if value.get("@type") == "Response":
            responses: list[list[Any]] = value["methodResponses"]
            return responses


def next_change(ws: ClientConnection, timeout: float = 10) -> dict[str, Any] | None:
    """
    The next StateChange, or ``None`` if none comes within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            value = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            return None
        if value.get("@type") == "StateChange":
            return value  # type: ignore[no-any-return]
    return None


def account_id(node: Node, user: str = "alice") -> str:
    session = requests.get(node.http + "/.well-known/jmap", auth=(user, "pw"), timeout=10).json()
    return str(session["primaryAccounts"]["urn:ietf:params:jmap:mail"])


@pytest.fixture
def cluster(tmp_path: Path, private_broker: Broker) -> Iterator[Cluster]:
    made = Cluster(tmp_path, private_broker)
    made.admin("user", "add", "alice", "--password-stdin", stdin="pw\n")
    made.admin("user", "add", "bob", "--password-stdin", stdin="pw\n")
    try:
        yield made
    finally:
        made.stop()


def bindings(cluster: Cluster, node: str) -> set[str]:
    """
    The routing keys binding the JMAP bus's key exchange to a node's queue.
    """
    rows = cluster.broker.ctl("list_bindings", "source_name", "destination_name", "routing_key")
    wanted = (f"{cluster.prefix}.jmap.keys", f"{cluster.prefix}.jmap.node.{node}")
    return {
        fields[2]
        for fields in (line.split("\t") for line in rows.splitlines())
        if len(fields) == 3 and (fields[0], fields[1]) == wanted
    }


def test_push_crosses_nodes_and_only_to_nodes_with_listeners(cluster: Cluster) -> None:
    """
    A socket on node B receives the StateChange for an LMTP delivery
    accepted by node A and resyncs on the same socket; node C, with a
    listener for bob only, is bound (and so sent) nothing about alice; the
    change listener (a group) runs once per delivery across the nodes.
    """
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    account, bob = account_id(b), account_id(c, "bob")
    with b.socket() as ws, c.socket("bob") as bob_ws:
        get, boxes = request(
            ws,
            ["Email/get", {"accountId": account, "ids": []}, "0"],
            ["Mailbox/get", {"accountId": account, "ids": []}, "1"],
        )
        since = get[1]["state"]
        before = {"Email": since, "EmailDelivery": since, "Mailbox": boxes[1]["state"]}
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        bob_ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        time.sleep(0.5)
        assert bindings(cluster, "c") == {f"account:{bob}"}
        assert bindings(cluster, "b") == {f"account:{account}"}
        assert bindings(cluster, "a") == set()

        started = time.monotonic()
        a.deliver("Across nodes")
        change = next_change(ws)
        while change is not None and all(
            before.get(kind) == state for kind, state in change["changed"][account].items()
        ):
            # A change from before the delivery (the account's set-up),
            # arriving late on a busy machine.
            change = next_change(ws)
        assert change is not None, "no StateChange reached node B"
        elapsed = time.monotonic() - started
        assert "EmailDelivery" in change["changed"][account]
        assert next_change(ws, timeout=1.0) is None  # once per delivery: one group run
        assert next_change(bob_ws, timeout=0.2) is None
        changes, got = request(
            ws,
            ["Email/changes", {"accountId": account, "sinceState": since}, "c"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "c", "name": "Email/changes", "path": "/created"},
                    "properties": ["subject"],
                },
                "g",
            ],
        )
        assert len(changes[1]["created"]) == 1
        assert [e["subject"] for e in got[1]["list"]] == ["Across nodes"]
        assert elapsed < 5


def test_killing_a_node_mid_stream_loses_no_accepted_mail(cluster: Cluster) -> None:
    """
    Node A is killed (SIGKILL) while LMTP deliveries stream into it: every
    mail it answered 250 for is in the shared store, as node B shows.
    """
    a, b = cluster.node("a"), cluster.node("b")
    accepted: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        try:
            with smtplib.LMTP("127.0.0.1", a.lmtp_port) as client:
                for n in range(10_000):
                    if stop.is_set():
                        return
                    subject = f"Stream {n}"
                    client.sendmail(
                        "s@elsewhere.test",
                        ["alice@example.com"],
                        message(subject=subject, to="alice@example.com"),
                    )
                    accepted.append(subject)
        except (OSError, smtplib.SMTPException):
            return  # the node died mid-way

    sender = threading.Thread(target=stream)
    sender.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    a.kill()
    stop.set()
    sender.join(timeout=30)
    assert len(accepted) >= 20
    account = account_id(b)
    with b.socket() as ws:
        _query, got = request(
            ws,
            ["Email/query", {"accountId": account, "limit": 10_000}, "q"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject"],
                },
                "g",
            ],
        )
    stored = {e["subject"] for e in got[1]["list"]}
    assert set(accepted) <= stored


def test_broker_restart_resumes_push_and_replay_shows_every_change(cluster: Cluster) -> None:
    """
    With sockets open on node B, the broker restarts while mail arrives on
    node A: B's socket gets a catch-up StateChange once the nodes are back,
    pushes resume within seconds, and a client reconnecting with its old
    pushState is told of every change, which Email/changes lists.
    """
    a, b = cluster.node("a"), cluster.node("b")
    account = account_id(b)
    with b.socket() as ws:
        get, boxes = request(
            ws,
            ["Email/get", {"accountId": account, "ids": []}, "0"],
            ["Mailbox/get", {"accountId": account, "ids": []}, "1"],
        )
        since = get[1]["state"]
        before = {"Email": since, "EmailDelivery": since, "Mailbox": boxes[1]["state"]}
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
        time.sleep(0.3)
        a.deliver("Before the restart")
        before = next_change(ws)
        assert before is not None
        old_push_state = before["pushState"]

        cluster.broker.stop()
        a.deliver("During the outage")  # committed; its events cannot cross
        cluster.broker.start()
        for node in (a, b):
            node.wait_for_log("Connected to the message broker", count=2, seconds=60)
        caught_up = next_change(ws, timeout=15)
        assert caught_up is not None, "no catch-up StateChange after the broker came back"

        started = time.monotonic()
        a.deliver("After the restart")
        after = next_change(ws, timeout=10)
        assert after is not None, "pushes did not resume"
        resumed = time.monotonic() - started
        assert resumed < 10

    with b.socket() as ws:
        ws.send(
            json.dumps(
                {
                    "@type": "WebSocketPushEnable",
                    "dataTypes": ["Email"],
                    "pushState": old_push_state,
                }
            )
        )
        replay = next_change(ws)
        assert replay is not None and "Email" in replay["changed"][account]
        (changes,) = request(
            ws, ["Email/changes", {"accountId": account, "sinceState": since}, "c"]
        )
        assert len(changes[1]["created"]) == 3


def ticket(node: Node) -> str:
    response = requests.post(node.http + "/jmap/ticket", auth=("alice", "pw"), timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["value"])


def state_events(response: requests.Response, wanted: int) -> list[dict[str, str]]:
    """
    The first ``wanted`` ``state`` events of an open EventSource response.
    """
    found: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines(decode_unicode=True):
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if fields.get("event") == "state":
            found.append(fields)
            if len(found) == wanted:
                return found
        fields = {}
    raise AssertionError(f"the stream ended after {found}")


def test_tickets_are_redeemed_on_any_node(cluster: Cluster) -> None:
    """
    A ticket issued by one node opens a WebSocket on another, once; a
    ticket-opened EventSource on one node, dropped, reconnects on another
    node with the same URL and ``Last-Event-ID`` and hears of the mail
    delivered in the gap.
    """
    a, b = cluster.node("a"), cluster.node("b")
    issued = ticket(a)
    with connect(f"ws://127.0.0.1:{b.port}/jmap/ws?ticket={issued}", subprotocols=["jmap"]) as ws:
        assert request(ws, ["Core/echo", {"hello": True}, "0"])[0][1] == {"hello": True}
    reused = requests.get(
        f"{a.http}/jmap/ws?ticket={issued}",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "jmap",
        },
        timeout=10,
    )
    assert reused.status_code == 401

    query = f"/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket={ticket(b)}"
    with requests.get(b.http + query, stream=True, timeout=30) as stream:
        assert stream.status_code == 200
        a.deliver("Seen on b")
        (seen,) = state_events(stream, 1)
    a.deliver("In the gap")
    with requests.get(
        a.http + query, headers={"Last-Event-ID": seen["id"]}, stream=True, timeout=30
    ) as again:
        assert again.status_code == 200, again.text
        (replayed,) = state_events(again, 1)
    assert replayed["id"] != seen["id"]
    account = account_id(a)
    assert "Email" in json.loads(replayed["data"])["changed"][account]


def api(node: Node, user: str, *calls: list[Any]) -> list[list[Any]]:
    """
    One JMAP request over HTTP as a user; its method responses.
    """
    response = requests.post(
        node.http + "/jmap/api/",
        json={"using": USING, "methodCalls": list(calls)},
        auth=(user, "pw"),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    responses: list[list[Any]] = response.json()["methodResponses"]
    return responses


def next_change_of(ws: ClientConnection, account: str, timeout: float) -> dict[str, str] | None:
    """
    The states of the next StateChange naming ``account`` within
    ``timeout`` (others, such as the sharee's own share notifications,
    are skipped), or ``None``.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        change = next_change(ws, timeout=left)
        if change is None:
            return None
        if account in change["changed"]:
            states: dict[str, str] = change["changed"][account]
            return states
    return None


def test_a_shared_inbox_pushes_to_the_sharee_on_another_node(cluster: Cluster) -> None:
    """
    Alice shares her inbox with bob (``jmap-admin share``): mail delivered
    over LMTP to node A reaches bob's WebSocket on node B as a StateChange
    for alice's account, with his own view's states and EmailDelivery;
    mail filed into her archive, which he does not see, reaches nothing;
    once she unshares the inbox (``jmap-admin unshare``) with his socket
    open, node B drops his view's binding and a delivery pushes him
    nothing about her account.
    """
    a, b = cluster.node("a"), cluster.node("b")
    alice = account_id(a)
    (boxes,) = api(a, "alice", ["Mailbox/get", {"accountId": alice, "ids": None}, "m"])
    archive = next(m["id"] for m in boxes[1]["list"] if m["role"] == "archive")
    cluster.admin("share", "alice", "Inbox", "bob", "read")
    with b.socket("bob") as ws:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        view = f"view:{alice}:"
        deadline = time.monotonic() + 10
        while not any(k.startswith(view) for k in bindings(cluster, "b")):
            assert time.monotonic() < deadline, bindings(cluster, "b")
            time.sleep(0.1)

        a.deliver("Into the shared inbox")
        states = next_change_of(ws, alice, timeout=10)
        assert states is not None, "no StateChange for alice's account reached bob on node B"
        assert states["Email"].startswith("s") and states["EmailDelivery"] == states["Email"]

        api(
            a,
            "alice",
            [
                "Email/set",
                {
                    "accountId": alice,
                    "create": {"e": {"mailboxIds": {archive: True}, "subject": "Not shared"}},
                },
                "s",
            ],
        )
        assert next_change_of(ws, alice, timeout=2) is None

        cluster.admin("unshare", "alice", "Inbox", "bob")
        deadline = time.monotonic() + 10
        while any(k.startswith(view) for k in bindings(cluster, "b")):
            assert time.monotonic() < deadline, "node B kept bob's view after the unshare"
            time.sleep(0.1)
        a.deliver("After the unshare")
        assert next_change_of(ws, alice, timeout=2) is None
