"""
What one user's sockets may hold: unfinished messages, requests waiting
for a slot, and how many sockets are open (RFC 8887 leaves these bounds
to the server).
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from jmap_twisted.ws.protocol import UNFINISHED_BYTES_FACTOR
from tests.ws.memory import Connection

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def _server_protocols(c: Connection) -> list[Any]:
    return list(c.service.site.jmap.websockets.connections)


def test_an_unfinished_message_holds_at_most_max_size_request() -> None:
    """
    A message sent in frames holds at most maxSizeRequest on the server
    however many frames follow; once it ends it gets the limit
    RequestError and the socket keeps serving.
    """
    c = Connection(deflate=False, max_size_request=1000)
    (server,) = _server_protocols(c)
    c.client.beginMessage(isBinary=False)
    held = []
    for _ in range(6):
        c.client.sendMessageFrame(b" " * 300)
        c.flush()
        buffered = sum(map(len, server.message_data or [])) + sum(map(len, server.frame_data or []))
        held.append((server._held, buffered))
    assert max(h for h, _ in held) <= 1000
    assert max(b for _, b in held) <= 1000
    assert held[-1] == (0, 0)  # past the limit: nothing kept
    c.client.endMessage()
    c.flush()
    error = c.client.messages[-1]
    assert error["type"] == "urn:ietf:params:jmap:error:limit"
    assert error["limit"] == "maxSizeRequest"
    assert c.service.site.jmap.websockets.unfinished.held(c.user.id) == 0
    c.client.send_json({"@type": "Request", "id": "2", "using": USING, "methodCalls": []})
    c.flush()
    assert c.client.messages[-1]["@type"] == "Response"
    assert c.client.closed_with is None


def test_the_sockets_of_one_user_hold_a_bounded_sum_of_unfinished_messages() -> None:
    """
    Each socket may hold an unfinished message up to maxSizeRequest, but
    together a user's sockets hold at most a few times that: the socket
    that would go past it is closed with 1008; what a closed socket held
    is given back.
    """
    c = Connection(deflate=False, max_size_request=1000)
    clients = [c.client] + [c.connect(deflate=False) for _ in range(UNFINISHED_BYTES_FACTOR)]
    for client in clients:
        client.beginMessage(isBinary=False)
        client.sendMessageFrame(b" " * 950)
        c.flush()
    budget = c.service.site.jmap.websockets.unfinished
    assert budget.held(c.user.id) <= budget.limit
    assert [client.closed_with for client in clients[:-1]] == [None] * UNFINISHED_BYTES_FACTOR
    c.clock.advance(10)
    c.flush()
    assert clients[-1].closed_with == 1008
    clients[0].sendClose()
    c.flush()
    assert budget.held(c.user.id) == 950 * (UNFINISHED_BYTES_FACTOR - 1)


def test_sockets_per_user_are_bounded_with_429() -> None:
    """
    Past max_push_connections open sockets (and EventSource streams) of
    one user, the upgrade is refused with 429 and a problem document,
    before any handshake; closing one frees a place.
    """
    c = Connection(max_push_connections=2)
    second = c.connect()
    third = c.connect()
    assert second.opened and not third.opened
    assert third.handshake.startswith(b"HTTP/1.1 429")
    assert b"application/problem+json" in third.handshake
    assert c.service.server.push_connections.count(c.user.id) == 2
    second.sendClose()
    c.flush()
    c.clock.advance(10)
    c.flush()
    assert c.service.server.push_connections.count(c.user.id) == 1
    assert c.connect().opened


def _padded(index: int, octets: int) -> dict[str, Any]:
    return {
        "@type": "Request",
        "id": str(index),
        "using": USING,
        "methodCalls": [["Core/echo", {"pad": [{}] * (octets // 4)}, "e"]],
    }


def test_waiting_requests_are_held_as_the_octets_they_arrived_as() -> None:
    """
    Requests waiting for a slot hold their octets, not their parsed form
    (an empty object is four octets on the wire and dozens parsed): the
    memory they hold stays near their size; they run, in order, when the
    slot frees.
    """
    c = Connection(deflate=False, max_size_request=100_000, max_concurrent_requests=1)
    held = c.service.server.runner.limiter.try_acquire(c.user.id)
    payloads = [json.dumps(_padded(i, 90_000)).encode() for i in range(4)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for payload in payloads:
            c.client.sendMessage(payload)
            c.flush()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    octets = sum(map(len, payloads))
    assert c.service.server.runner.queued.held(c.user.id) == octets
    assert grown < 3 * octets, (grown, octets)
    held()
    c.flush()
    assert [m["requestId"] for m in c.client.messages] == ["0", "1", "2", "3"]
    assert c.service.server.runner.queued.held(c.user.id) == 0


def test_waiting_requests_are_bounded_for_all_the_sockets_of_a_user() -> None:
    """
    The octets of waiting requests are bounded for the user, not per
    socket: a second socket cannot add its own share.
    """
    c = Connection(deflate=False, max_size_request=1000, max_concurrent_requests=1)
    other = c.connect(deflate=False)
    held = c.service.server.runner.limiter.try_acquire(c.user.id)
    for index in range(6):
        client = c.client if index % 2 == 0 else other
        client.send_json(
            {
                "@type": "Request",
                "id": str(index),
                "using": USING,
                "methodCalls": [["Core/echo", {"pad": "x" * 800}, "e"]],
            }
        )
        c.flush()
    refused = [
        m["requestId"] for m in c.client.messages + other.messages if m["@type"] == "RequestError"
    ]
    assert sorted(refused) == ["4", "5"]
    held()
    c.flush()
    answered = [m for m in c.client.messages + other.messages if m["@type"] == "Response"]
    assert sorted(m["requestId"] for m in answered) == ["0", "1", "2", "3"]


def test_a_hostile_push_state_starts_push_with_the_full_state() -> None:
    """
    A pushState nested ten thousand levels deep is not one of ours: push
    starts anyway (the listener registered and started) and the first
    StateChange holds the full current state; nothing fails.
    """
    import base64

    c = Connection()
    c.deliver("setup")
    nested = "1." + base64.urlsafe_b64encode(b"[" * 10_000).decode()
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None, "pushState": nested})
    c.flush()
    (change,) = c.client.messages
    assert change["@type"] == "StateChange"
    assert {"Email", "Mailbox", "Thread"} <= set(change["changed"][c.account])
    c.deliver("after")
    assert c.client.messages[-1]["@type"] == "StateChange"
    assert len(c.client.messages) == 2
