"""
Push connections cannot be made to hold memory without bound: unfinished
WebSocket messages are bounded per socket and per user, queued requests
are held as the octets they arrived as, sockets and EventSource streams
are bounded per user, and EventSource streams whose client does not read
merge their StateChanges instead of buffering them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import smtplib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.adversarial.harness import CORE, MAIL, MIB, Server, well_behaved
from tests.integration.test_twistd import admin


def _read_head(connection: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _raw_websocket(server: Server, name: str) -> tuple[socket.socket, int]:
    """
    A WebSocket opened by hand (to send frames no client library sends),
    and the status of the upgrade.
    """
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    connection.sendall(
        (
            "GET /jmap/ws HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: jmap\r\n"
            f"Authorization: {server.basic(name)}\r\n\r\n"
        ).encode()
    )
    head = _read_head(connection)
    status = int(head.split(b" ", 2)[1]) if head else 0
    return connection, status


def _frame(payload: bytes, final: bool, opcode: int = 1) -> bytes:
    """
    A client frame (masked with the all-zero key, so the payload is sent
    as is).
    """
    first = (0x80 if final else 0) | opcode
    return struct.pack("!BBQ", first, 0x80 | 127, len(payload)) + b"\0\0\0\0" + payload


@contextmanager
def _closing(connections: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield connections
    finally:
        for connection in connections:
            connection.close()


def _alice_websocket_echo(server: Server) -> None:
    with server.websocket("alice", timeout=30) as ws:
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "a",
                    "using": [CORE],
                    "methodCalls": [["Core/echo", {"ok": 1}, "e"]],
                }
            )
        )
        answer = json.loads(ws.recv(timeout=30))
        assert answer["methodResponses"] == [["Core/echo", {"ok": 1}, "e"]]


@pytest.mark.parametrize("server", [("--max-size-request", "1000000")], indirect=True)
def test_unfinished_messages_on_many_sockets_are_bounded(server: Server) -> None:
    """
    mallory opens 150 sockets and starts a 1.9 MB message on each without
    finishing it: the server holds at most maxSizeRequest of one socket's
    message, a few of them per user, and refuses sockets past the per-user
    bound with 429; alice is served and opens her own socket meanwhile.
    """
    before = server.rss()
    statuses: list[int] = []
    unfinished = _frame(b" " * 1_900_000, final=False)
    with _closing([]) as connections:
        for _ in range(150):
            connection, status = _raw_websocket(server, "mallory")
            connections.append(connection)
            statuses.append(status)
            if status == 101:
                try:
                    connection.sendall(unfinished)
                except OSError:
                    pass  # closed by the server for holding too much
        time.sleep(1)
        grown = server.rss() - before
        latency = well_behaved(server, "alice")
        _alice_websocket_echo(server)
    assert grown < 150 * MIB, grown / MIB
    assert latency < 10, latency
    assert statuses.count(101) <= 50, statuses.count(101)
    assert set(statuses) <= {101, 429}, set(statuses)


#: Slow calls in each of mallory's requests.
SLOW_CALLS = 4


def _padded_request(index: int, account: str, octets: int) -> bytes:
    # Empty objects: three octets each on the wire, about seventy once
    # parsed.
    pad = ",".join(["{}"] * (octets // 3))
    # Each call reads every message of the account (a header condition
    # no index answers; the messages are large), so the requests holding
    # the user's slots run for a while and the next ones wait.
    calls = [
        ["Email/query", {"accountId": account, "filter": {"header": ["X-Zq", "zq"]}}, f"q{n}"]
        for n in range(SLOW_CALLS)
    ]
    padded = f'["Mailbox/get",{{"accountId":"{account}","ids":[],"pad":[{pad}]}},"p"]'
    using = json.dumps([CORE, MAIL])
    listed = json.dumps(calls)[1:-1]
    return (
        f'{{"@type":"Request","id":"{index}","using":{using},"methodCalls":[{listed},{padded}]}}'
    ).encode()


@pytest.mark.parametrize("server", [("--max-size-request", "1000000")], indirect=True)
def test_queued_requests_are_held_as_octets(server: Server) -> None:
    """
    mallory keeps four sockets full of requests waiting for a slot (the
    slots held by slow queries), each nearly maxSizeRequest of empty
    objects, many times larger once parsed: what waits is bounded by its
    octets, for all of mallory's sockets together; alice is served
    meanwhile.
    """
    account = server.account("mallory")
    line = "All work and no play makes a dull mailbox. " * 2 + "\r\n"
    _lmtp_deliver(server, "mallory", count=4, body=line * 40_000)
    messages = [_frame(_padded_request(i, account, 900_000), final=True) for i in range(8)]
    before = server.rss()
    stopping = threading.Event()
    connections: list[socket.socket] = []

    def drain(connection: socket.socket) -> None:
        try:
            while connection.recv(1 << 20):
                pass
        except OSError:
            pass

    def flood() -> None:
        connection, status = _raw_websocket(server, "mallory")
        assert status == 101
        connections.append(connection)
        threading.Thread(target=drain, args=(connection,), daemon=True).start()
        try:
            while not stopping.is_set():
                for message in messages:
                    connection.sendall(message)
        except OSError:
            pass  # closed at the end

    floods = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for thread in floods:
        thread.start()
    peaks = [0]

    def watch() -> None:
        while not stopping.is_set():
            peaks.append(server.rss() - before)
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    latencies = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(1)
            latencies.append(well_behaved(server, "alice"))
    finally:
        stopping.set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in floods:
            thread.join(timeout=30)
    # Undefended, the waiting requests grow the server by about 40 MiB a
    # second up to several hundred MiB.  What remains is the requests
    # running in mallory's four slots, held parsed while they run.
    assert max(peaks) < 300 * MIB, max(peaks) / MIB
    assert max(latencies) < 10, latencies


def _lmtp_deliver(
    server: Server, recipient: str, count: int = 1, subject: str = "hi", body: str = "Hello.\r\n"
) -> None:
    with smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=60) as lmtp:
        for index in range(count):
            lmtp.sendmail(
                "someone@example.org",
                [f"{recipient}@example.com"],
                f"From: someone@example.org\r\nTo: {recipient}@example.com\r\n"
                f"Subject: {subject} {index}\r\n\r\n{body}",
            )


def _silent_stream(server: Server, name: str) -> socket.socket:
    """
    An EventSource request from a client that never reads a byte of the
    answer (with a small receive window, so the server's writes back up).
    """
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.connect(("127.0.0.1", server.port))
    connection.sendall(
        (
            "GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Authorization: {server.basic(name)}\r\n\r\n"
        ).encode()
    )
    return connection


def test_eventsource_streams_that_never_read_are_paused_and_merged(server: Server) -> None:
    """
    mallory, who sees five delegated accounts besides his own (so every
    StateChange carries a long pushState), opens 40 EventSource streams
    that never read while thousands of changes happen in his account (and
    mail arrives over LMTP): the server merges what each stream has not
    taken instead of buffering it; alice is served and gets her push at
    once.
    """
    for index in range(5):
        owner = f"owner{index}"
        assert admin(server.twistd.data, "user", "add", owner, "--no-password").returncode == 0
        assert admin(server.twistd.data, "delegate", owner, "mallory").returncode == 0
    account = server.account("mallory")
    created = server.api(
        "mallory",
        ["Mailbox/set", {"accountId": account, "create": {"m": {"name": "churn"}}}, "c"],
    )
    mailbox = created[0][1]["created"]["m"]["id"]
    with _closing([_silent_stream(server, "mallory") for _ in range(40)]):
        time.sleep(1)
        before = server.rss()
        _lmtp_deliver(server, "mallory", count=20)
        with requests.Session() as http:
            http.auth = server.auth("mallory")
            for round_ in range(250):
                calls = [
                    [
                        "Mailbox/set",
                        {"accountId": account, "update": {mailbox: {"name": f"c{round_}-{n}"}}},
                        f"u{n}",
                    ]
                    for n in range(16)
                ]
                answer = http.post(
                    server.base + "/jmap/api/",
                    json={"using": [CORE, MAIL], "methodCalls": calls},
                    timeout=60,
                )
                assert answer.status_code == 200, answer.text
        grown = server.rss() - before
        latency = well_behaved(server, "alice")
        pushed = _alice_push_after_delivery(server)
    assert grown < 150 * MIB, grown / MIB
    assert latency < 10, latency
    assert pushed < 10, pushed


def _alice_push_after_delivery(server: Server) -> float:
    """
    Seconds from a delivery to alice until her EventSource stream has the
    state event.
    """
    with requests.get(
        server.base + "/jmap/eventsource/?types=Email&closeafter=state&ping=0",
        auth=server.auth("alice"),
        stream=True,
        timeout=60,
    ) as stream:
        assert stream.status_code == 200
        started = time.monotonic()
        _lmtp_deliver(server, "alice", subject="for alice")
        body = b""
        for chunk in stream.iter_content(chunk_size=None):
            body += chunk
            if b"event: state" in body:
                break
        assert b"event: state" in body, body
        return time.monotonic() - started
