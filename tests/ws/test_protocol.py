"""
RFC 8887 behaviour of the WebSocket endpoint, in memory.
"""

from __future__ import annotations

import json

from jmap_twisted.config import WebSocketOptions
from tests.ws.memory import Connection

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def test_handshake_with_deflate_and_echo() -> None:
    """
    The handshake negotiates the jmap subprotocol and permessage-deflate;
    a Request gets its Response with requestId and sessionState.
    """
    c = Connection()
    assert c.client.opened
    assert c.client._perMessageCompress is not None
    c.client.send_json(
        {
            "@type": "Request",
            "id": "1",
            "using": USING,
            "methodCalls": [["Core/echo", {"x": 1}, "a"]],
        }
    )
    c.flush()
    (response,) = c.client.messages
    assert response["@type"] == "Response"
    assert response["requestId"] == "1"
    assert response["methodResponses"] == [["Core/echo", {"x": 1}, "a"]]
    assert response["sessionState"]


def test_push_types_and_coalescing_while_the_client_does_not_read() -> None:
    """
    Push sends only the enabled types; while the transport is full,
    StateChanges merge per account and type, and one is sent when it
    drains.
    """
    c = Connection()
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]})
    c.flush()
    c.deliver("one")
    (first,) = c.client.messages
    assert list(first["changed"][c.account]) == ["Email"]
    producer = c.server_transport.producer
    producer.pauseProducing()
    for index in range(20):
        c.deliver(f"m{index}")
    assert len(c.client.messages) == 1
    producer.resumeProducing()
    c.flush()
    assert len(c.client.messages) == 2
    last = c.client.messages[1]
    email_state = c.mail.read(c.account, lambda r: r.state("Email")).result
    assert last["changed"] == {c.account: {"Email": email_state}}


def test_enable_disable_and_dataTypes_rules() -> None:
    """
    null and [] mean all types, unknown types are ignored, a second enable
    replaces the first, disable stops pushes (and is accepted without
    enable), enable after disable works.
    """
    c = Connection()
    c.client.send_json({"@type": "WebSocketPushDisable"})
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": []})
    c.flush()
    c.deliver()
    assert "EmailDelivery" in c.client.messages[-1]["changed"][c.account]
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox", "NotAType"]})
    c.flush()
    c.deliver()
    assert set(c.client.messages[-1]["changed"][c.account]) == {"Mailbox"}
    count = len(c.client.messages)
    c.client.send_json({"@type": "WebSocketPushDisable"})
    c.flush()
    c.deliver()
    assert len(c.client.messages) == count
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    c.flush()
    c.deliver()
    assert len(c.client.messages) == count + 1


def test_size_limits() -> None:
    """
    A message over maxSizeRequest gets the limit RequestError and the
    socket stays open; one far beyond it closes with 1009.
    """
    c = Connection(max_size_request=1000)
    c.client.sendMessage(json.dumps({"@type": "Request", "id": "big", "pad": "x" * 1500}).encode())
    c.flush()
    error = c.client.messages[-1]
    assert error["type"] == "urn:ietf:params:jmap:error:limit"
    assert error["limit"] == "maxSizeRequest"
    c.client.send_json({"@type": "Request", "id": "2", "using": USING, "methodCalls": []})
    c.flush()
    assert c.client.messages[-1]["@type"] == "Response"
    c.client.sendMessage(b"[" + b" " * 5000 + b"]")
    c.flush()
    c.clock.advance(10)
    c.flush()
    assert c.client.closed_with == 1009


def test_pings_and_dead_clients() -> None:
    """
    The server pings on its interval; a client that answers stays; one
    that stops answering is closed after the timeout.
    """
    c = Connection(WebSocketOptions(ping_interval=30, ping_timeout=10))
    c.clock.advance(30)
    c.flush()
    c.clock.advance(10)
    c.flush()
    assert c.client.closed_with is None
    c.client.transport.write = lambda data: None  # the client goes silent
    c.clock.advance(30)
    c.flush()
    c.clock.advance(11)
    c.flush()
    assert c.server_transport.disconnecting or c.server_transport.disconnected


def test_shutdown_closes_with_going_away() -> None:
    """
    Stopping the service closes open sockets with 1001.
    """
    c = Connection()
    c.service.stopService()
    c.flush()
    assert c.client.closed_with == 1001


def test_pipelined_requests_queue_up_to_a_bound() -> None:
    """
    Requests beyond maxConcurrentRequests wait in a bounded queue (the
    limit is per user, shared with HTTP); past the bound they get the
    limit RequestError with their requestId; queued ones are answered when
    slots free up, and the socket keeps serving.
    """
    from jmap_twisted.core.runner import REQUEST_QUEUE

    c = Connection(max_concurrent_requests=1)
    held = c.service.server.runner.limiter.try_acquire(c.user.id)  # e.g. an HTTP request
    total = REQUEST_QUEUE + 50
    for index in range(total):
        c.client.send_json(
            {
                "@type": "Request",
                "id": str(index),
                "using": USING,
                "methodCalls": [["Core/echo", {}, "e"]],
            }
        )
    c.flush()
    refused = [m for m in c.client.messages if m["@type"] == "RequestError"]
    assert len(refused) == 50
    assert all(m["limit"] == "maxConcurrentRequests" for m in refused)
    assert {m["requestId"] for m in refused} == {str(i) for i in range(REQUEST_QUEUE, total)}
    held()
    c.flush()
    responses = [m for m in c.client.messages if m["@type"] == "Response"]
    assert sorted(int(m["requestId"]) for m in responses) == list(range(REQUEST_QUEUE))


def test_subprotocol_negotiation() -> None:
    """
    A client offering only other subprotocols is refused; one offering
    none is accepted without an echoed protocol; a strict server refuses
    it.
    """
    c = Connection()
    other = c.connect(protocols=["mqtt"])
    assert not other.opened
    lenient = c.connect(protocols=[])
    assert lenient.opened
    strict = Connection(WebSocketOptions(require_subprotocol=True))
    assert not strict.connect(protocols=[]).opened


def test_wrong_credentials_get_no_upgrade() -> None:
    """
    Without credentials the upgrade is refused.
    """
    c = Connection()
    refused = c.connect(headers={})
    assert not refused.opened


def test_revoked_token_closes_with_policy_violation() -> None:
    """
    A socket opened with a bearer token is closed with 1008 within the
    access poll interval after the token is revoked; a socket of the same
    user opened with a password stays.
    """
    from jmap_twisted.auth.passwords import new_token, token_hash
    from jmap_twisted.service import ACCESS_POLL_INTERVAL

    c = Connection()
    token = new_token()
    info = c.directory.add_token(c.user.id, token_hash(token), "t").result
    by_token = c.connect(headers={"Authorization": "Bearer " + token})
    assert by_token.opened
    c.directory.revoke_token(info.id)
    c.clock.advance(ACCESS_POLL_INTERVAL)
    c.flush()
    assert by_token.closed_with == 1008
    assert c.client.closed_with is None


def test_password_change_closes_password_sockets() -> None:
    """
    After a password change, sockets opened with the old password close
    with 1008.
    """
    from jmap_twisted.service import ACCESS_POLL_INTERVAL
    from tests.support import CHEAP_HASHER

    c = Connection()
    c.directory.set_password_hash("alice", CHEAP_HASHER.hash("new"))
    c.clock.advance(ACCESS_POLL_INTERVAL)
    c.flush()
    assert c.client.closed_with == 1008


def test_delegation_follows_grants_and_revocations() -> None:
    """
    A delegate's socket with push enabled receives the owner's changes
    once the delegation is granted (after the access poll), and stops at
    once on revocation; requests on the revoked account get
    accountNotFound.
    """
    from base64 import b64encode

    from jmap_twisted.service import ACCESS_POLL_INTERVAL
    from tests.support import CHEAP_HASHER

    c = Connection()
    c.directory.create_user("bob", CHEAP_HASHER.hash("bpw"))
    bob = c.connect(headers={"Authorization": "Basic " + b64encode(b"bob:bpw").decode()})
    bob.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]})
    c.flush()
    c.deliver("before")
    assert bob.messages == []
    c.directory.delegate("alice", "bob")
    c.clock.advance(ACCESS_POLL_INTERVAL)
    c.flush()
    bob.messages.clear()
    c.deliver("shared")
    assert [list(m["changed"]) for m in bob.messages] == [[c.account]]
    c.directory.revoke_delegation("alice", "bob")
    c.clock.advance(ACCESS_POLL_INTERVAL)
    c.flush()
    bob.messages.clear()
    c.deliver("after")
    assert bob.messages == []
    bob.send_json(
        {
            "@type": "Request",
            "id": "r",
            "using": USING,
            "methodCalls": [["Mailbox/get", {"accountId": c.account}, "m"]],
        }
    )
    c.flush()
    assert bob.messages[-1]["methodResponses"][0][1]["type"] == "accountNotFound"


def test_fragmented_messages_are_reassembled_and_pings_answered() -> None:
    """
    A Request sent in several frames is parsed as one message; a client's
    ping gets a pong.
    """
    c = Connection(deflate=False)
    body = json.dumps(
        {
            "@type": "Request",
            "id": "f",
            "using": USING,
            "methodCalls": [["Core/echo", {"a": "b"}, "0"]],
        }
    ).encode()
    c.client.beginMessage(isBinary=False)
    for start in range(0, len(body), 10):
        c.client.sendMessageFrame(body[start : start + 10])
    c.client.endMessage()
    c.flush()
    assert c.client.messages[-1]["requestId"] == "f"
    pongs: list[bytes] = []
    c.client.onPong = pongs.append  # type: ignore[method-assign]
    c.client.sendPing(b"are you there")
    c.flush()
    assert pongs == [b"are you there"]


def test_replay_after_a_flag_change_has_no_email_delivery() -> None:
    """
    Reconnecting with a pushState from before a flag change replays the
    Email state but not EmailDelivery: nothing was delivered.
    """
    c = Connection()
    c.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    c.flush()
    c.deliver("one")
    push_state = c.client.messages[-1]["pushState"]
    email_id = c.mail.read(c.account, lambda r: r.query_emails(None, [], False)[0][0]).result
    c.mail.write(c.account, lambda w: w.update_email(email_id, keywords={"$seen"}))
    again = c.connect()
    again.send_json({"@type": "WebSocketPushEnable", "dataTypes": None, "pushState": push_state})
    c.flush()
    changed = again.messages[-1]["changed"][c.account]
    assert "Email" in changed
    assert "EmailDelivery" not in changed


def test_a_client_that_does_not_read_stops_being_read() -> None:
    """
    When the socket's send buffer is full the server stops reading it (and
    holds pushes), so requests sent without reading the responses wait in
    the client's socket, not in the server's memory; reading resumes when
    the buffer drains.
    """
    c = Connection()
    calls: list[str] = []
    transport = c.server_transport
    transport.pauseProducing = lambda: calls.append("pause")  # type: ignore[method-assign]
    transport.resumeProducing = lambda: calls.append("resume")  # type: ignore[method-assign]
    transport.producer.pauseProducing()
    transport.producer.resumeProducing()
    assert calls == ["pause", "resume"]


def test_nothing_is_processed_after_a_policy_close() -> None:
    """
    Once the server closes a socket (here for revoked credentials),
    requests still arriving during the closing handshake are ignored.
    """
    from jmap_twisted.auth.passwords import new_token, token_hash
    from jmap_twisted.service import ACCESS_POLL_INTERVAL

    c = Connection()
    token = new_token()
    info = c.directory.add_token(c.user.id, token_hash(token), "t").result
    client = c.connect(headers={"Authorization": "Bearer " + token})
    c.directory.revoke_token(info.id)
    c.clock.advance(ACCESS_POLL_INTERVAL)
    client.send_json(
        {"@type": "Request", "id": "late", "using": USING, "methodCalls": [["Core/echo", {}, "0"]]}
    )
    c.flush()
    assert client.closed_with == 1008
    assert not any(m.get("requestId") == "late" for m in client.messages)


def test_ticket_sockets_rest_on_the_credentials_that_asked_for_the_ticket() -> None:
    """
    A socket opened with a ticket closes with 1008 when the token that
    asked for the ticket is revoked, and a ticket whose token was revoked
    before use opens nothing.
    """
    import json as _json

    from treq.testing import StubTreq

    from jmap_twisted.auth.passwords import new_token, token_hash
    from jmap_twisted.service import ACCESS_POLL_INTERVAL

    c = Connection()
    token = new_token()
    info = c.directory.add_token(c.user.id, token_hash(token), "browser")
    stub = StubTreq(c.service.site.resource)

    def ticket() -> str:
        response = stub.post(
            "http://jmap.example/jmap/ticket", headers={"Authorization": "Bearer " + token}
        )
        stub.flush()
        body = response.result.content()
        stub.flush()
        return str(_json.loads(body.result)["value"])

    first, second = ticket(), ticket()
    assert not c.connect(headers={}).opened  # no credentials at all

    def connect_with(value: str) -> object:
        return c.connect(headers={}, query="?ticket=" + value)

    opened = connect_with(first)
    assert opened.opened  # type: ignore[attr-defined]
    c.directory.revoke_token(info.result.id)
    c.clock.advance(ACCESS_POLL_INTERVAL)
    c.flush()
    assert opened.closed_with == 1008  # type: ignore[attr-defined]
    assert not connect_with(second).opened  # type: ignore[attr-defined]


def test_waiting_requests_are_bounded_in_octets() -> None:
    """
    Requests waiting for a slot on one socket may hold at most four times
    maxSizeRequest; past that they get the limit RequestError at once.
    """
    c = Connection(max_size_request=1000, max_concurrent_requests=1)
    held = c.service.server.runner.limiter.try_acquire(c.user.id)
    for index in range(6):
        c.client.send_json(
            {
                "@type": "Request",
                "id": str(index),
                "using": USING,
                "methodCalls": [["Core/echo", {"pad": "x" * 800}, "e"]],
            }
        )
    c.flush()
    refused = [m["requestId"] for m in c.client.messages if m["@type"] == "RequestError"]
    assert refused == ["4", "5"]
    held()
    c.flush()
    assert sorted(m["requestId"] for m in c.client.messages if m["@type"] == "Response") == [
        "0",
        "1",
        "2",
        "3",
    ]


def test_a_connection_that_cannot_be_rechecked_is_closed() -> None:
    """
    When re-checking a connection after an access change fails, the
    connection is closed (fail closed) and other connections are still
    re-checked.
    """
    from twisted.internet.defer import Deferred

    from tests.support import CHEAP_HASHER

    c = Connection()

    class Broken:
        user_id = c.user.id
        closed_with: int | None = None

        async def access_changed(self) -> None:
            raise RuntimeError("directory unreachable (test)")

        def close(self, code: int, reason: str) -> None:
            self.closed_with = code

    broken = Broken()
    c.service.server.push_connections.add(broken)
    c.directory.set_password_hash("alice", CHEAP_HASHER.hash("changed"))
    Deferred.fromCoroutine(c.service.server.access.check())
    c.flush()
    assert broken.closed_with == 1011
    assert c.client.closed_with == 1008  # the real socket was re-checked too
