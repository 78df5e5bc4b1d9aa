"""
RFC 8620 §7.3 EventSource, in memory.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq

from tests.http.test_resources import BASE, Harness
from tests.mailfactory import message
from tests.support import jmap_service


async def open_stream(
    harness: Harness, query: str, headers: dict[str, str] | None = None
) -> tuple[Any, list[bytes]]:
    response = await harness.treq.get(
        BASE + "/jmap/eventsource/" + query, headers={**harness.bearer(), **(headers or {})}
    )
    chunks: list[bytes] = []
    treq.collect(response, chunks.append)
    harness.treq.flush()
    return response, chunks


def events(chunks: list[bytes]) -> list[dict[str, str]]:
    parsed = []
    for block in b"".join(chunks).decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.split("\n")
            if ": " in line and not line.startswith(":")
        )
        if fields:
            parsed.append(fields)
    return parsed


async def deliver(harness: Harness, subject: str = "hello") -> None:
    await harness.mail.setup_account(harness.alice_account)

    def write(w: Any) -> None:
        inbox = next(m.id for m in w.mailboxes() if m.role == "inbox")
        w.add_email(message(subject=subject), [inbox], [], 0.0)

    await harness.mail.write(harness.alice_account, write, delivery=True)


@pytest_twisted.ensureDeferred
async def test_state_events_types_and_pings() -> None:
    """
    The stream is text/event-stream with proxy-friendly headers; a
    delivery produces a state event with only the requested types and an
    id encoding the pushState; pings carry the clamped interval.
    """
    harness = Harness()
    harness.service.startService()
    try:
        await deliver(harness, "setup")
        response, chunks = await open_stream(harness, "?types=Email,Bogus&closeafter=no&ping=1")
        assert response.code == 200
        assert response.headers.getRawHeaders("content-type")[0].startswith("text/event-stream")
        assert response.headers.getRawHeaders("x-accel-buffering") == ["no"]
        await deliver(harness)
        harness.treq.flush()
        (state,) = [e for e in events(chunks) if e.get("event") == "state"]
        data = json.loads(state["data"])
        assert data["@type"] == "StateChange"
        assert set(data["changed"][harness.alice_account]) == {"Email"}
        assert state["id"] == data["pushState"]
        harness.reactor.advance(30)
        harness.treq.flush()
        pings = [e for e in events(chunks) if e.get("event") == "ping"]
        assert [json.loads(p["data"]) for p in pings] == [{"interval": 30}]
    finally:
        await harness.service.stopService()


@pytest_twisted.ensureDeferred
async def test_closeafter_state_and_last_event_id_replay() -> None:
    """
    With closeAfter=state (James spelling) the response ends after one
    state event; reconnecting with Last-Event-ID replays at once what
    changed since (without EmailDelivery, which states cannot tell).
    """
    harness = Harness()
    harness.service.startService()
    try:
        await deliver(harness, "setup")
        _, chunks = await open_stream(harness, "?types=*&closeAfter=state&ping=0")
        await deliver(harness, "one")
        harness.treq.flush()
        (first,) = [e for e in events(chunks) if e.get("event") == "state"]
        await deliver(harness, "two")
        harness.treq.flush()
        assert len([e for e in events(chunks) if e.get("event") == "state"]) == 1
        _, replayed = await open_stream(
            harness, "?types=*&closeafter=state&ping=0", {"Last-Event-ID": first["id"]}
        )
        harness.treq.flush()
        (again,) = [e for e in events(replayed) if e.get("event") == "state"]
        changed = json.loads(again["data"])["changed"][harness.alice_account]
        assert "Email" in changed and "EmailDelivery" not in changed
    finally:
        await harness.service.stopService()


@pytest_twisted.ensureDeferred
async def test_eventsource_needs_credentials_and_valid_arguments() -> None:
    """
    Without credentials: 401; bad closeafter or ping: 400.
    """
    harness = Harness()
    harness.service.startService()  # push runs
    response = await harness.treq.get(BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=0")
    assert response.code == 401
    response = await harness.treq.get(
        BASE + "/jmap/eventsource/?types=*&closeafter=maybe&ping=0", headers=harness.bearer()
    )
    assert response.code == 400


@pytest_twisted.ensureDeferred
async def test_eventsource_with_a_ticket() -> None:
    """
    Browsers authenticate the EventSource with a ticket from the ticket
    endpoint; the same URL again (a reconnect from the same client) takes
    the ticket over and ends the first stream; a revoked ticket opens
    nothing.
    """
    harness = Harness()
    harness.service.startService()
    try:
        response = await harness.treq.post(BASE + "/jmap/ticket", headers=harness.bearer())
        ticket = json.loads(await response.content())["value"]
        url = BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket=" + ticket
        opened = await harness.treq.get(url)
        assert opened.code == 200
        first: list[bytes] = []
        ended = treq.collect(opened, first.append)
        again = await harness.treq.get(url)
        assert again.code == 200
        harness.treq.flush()
        assert ended.called  # one stream per ticket at a time
        assert len(harness.service.server.push_connections) == 1
        revoke_me = json.loads(
            await (
                await harness.treq.post(BASE + "/jmap/ticket", headers=harness.bearer())
            ).content()
        )["value"]
        deleted = await harness.treq.delete(
            BASE + "/jmap/ticket/" + revoke_me, headers=harness.bearer()
        )
        assert deleted.code == 204
        refused = await harness.treq.get(BASE + "/jmap/eventsource/?ticket=" + revoke_me)
        assert refused.code == 401
    finally:
        await harness.service.stopService()


class RawStream:
    """
    An EventSource request on the real site over a StringTransport, so
    that a test can fill the transport's buffer (pause the producer) and
    lose the connection.
    """

    def __init__(
        self,
        service: Any,
        query: bytes,
        headers: dict[bytes, bytes],
        client: str = "127.0.0.1",
    ) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        address = IPv4Address("TCP", client, 40000)
        self.transport = StringTransport(peerAddress=address)
        self.channel = service.site.buildProtocol(address)
        self.channel.makeConnection(self.transport)
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers.items())
        self.channel.dataReceived(
            b"GET /jmap/eventsource/"
            + query
            + b" HTTP/1.1\r\nHost: jmap.example\r\n"
            + head
            + b"\r\n"
        )

    def data(self) -> bytes:
        return bytes(self.transport.value())

    def status(self) -> int:
        return int(self.data().split(b" ", 2)[1])

    def pause(self) -> None:
        """
        The transport's buffer is full (the client does not read).
        """
        self.transport.producer.pauseProducing()

    def resume(self) -> None:
        self.transport.producer.resumeProducing()

    def lose(self) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.channel.connectionLost(Failure(ConnectionLost()))


def _service(**config: Any) -> tuple[Harness, Any]:
    from jmap_twisted.config import ServerConfig

    harness = Harness()
    harness.service = jmap_service(
        ServerConfig(password_cost=2**4, **config),
        harness.directory,
        harness.blobs,
        harness.mail,
        harness.reactor,
    )
    harness.service.startService()
    return harness, harness.service


def _bearer(harness: Harness) -> dict[bytes, bytes]:
    return {b"Authorization": b"Bearer " + harness.alice_token.encode()}


def _body_events(data: bytes) -> list[dict[str, str]]:
    body = data.split(b"\r\n\r\n", 1)[1]
    # Undo the chunked transfer coding.
    text = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        text += rest[:size]
        body = rest[size + 2 :]
    return events([text])


@pytest_twisted.ensureDeferred
async def test_a_stream_whose_client_does_not_read_merges_then_is_dropped() -> None:
    """
    While the transport's buffer is full nothing more is written: the
    StateChanges merge per account and type and go out as one when it
    drains; a stream that stays full past the stall timeout is dropped
    (its connection aborted, its listener and count gone).
    """
    harness, service = _service(push_stall_timeout=60.0)
    try:
        await deliver(harness, "setup")
        stream = RawStream(service, b"?types=Email&closeafter=no&ping=0", _bearer(harness))
        assert stream.status() == 200
        stream.pause()
        written = len(stream.data())
        for index in range(20):
            await deliver(harness, f"m{index}")
        assert len(stream.data()) == written
        stream.resume()
        states = [e for e in _body_events(stream.data()) if e.get("event") == "state"]
        assert len(states) == 1
        email_state = await harness.mail.read(harness.alice_account, lambda r: r.state("Email"))
        assert json.loads(states[0]["data"])["changed"] == {
            harness.alice_account: {"Email": email_state}
        }
        stream.pause()
        harness.reactor.advance(59)
        assert not stream.transport.disconnecting
        assert len(service.server.push_connections) == 1
        harness.reactor.advance(1)
        assert stream.transport.disconnecting
        assert len(service.server.push_connections) == 0
        assert not [
            listener
            for listener in service.server.jmap_bus.local_listeners()
            if type(listener).__name__ == "PushListener"
        ]
        stream.lose()
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stream_without_pings_keeps_alive_and_notices_a_gone_peer() -> None:
    """
    With ping=0 the stream still writes a comment every few minutes (the
    only way to notice a peer that vanished); when the connection is lost
    the stream is forgotten and stops listening.
    """
    from jmap_twisted.http.eventsource import KEEP_ALIVE

    harness, service = _service()
    try:
        stream = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        assert stream.status() == 200
        harness.reactor.advance(KEEP_ALIVE)
        assert b": keep-alive" in stream.data()
        assert not [e for e in _body_events(stream.data()) if e.get("event") == "ping"]
        stream.lose()  # the keep-alive's write failed: the peer is gone
        assert len(service.server.push_connections) == 0
        assert not [c for c in harness.reactor.getDelayedCalls() if "EventStream" in repr(c)]
        await deliver(harness)  # nothing to send to, nothing raised
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_ping_must_be_a_few_ascii_digits() -> None:
    """
    A ping of non-ASCII digits or of thousands of digits gets a 400
    problem document, not a 500.
    """
    harness = Harness()
    harness.service.startService()  # push runs
    for ping in ("%C2%B2", "1" * 5000, "-1", "3.5"):
        response = await harness.treq.get(
            BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=" + ping,
            headers=harness.bearer(),
        )
        assert response.code == 400, ping
        problem = json.loads(await response.content())
        assert problem["status"] == 400


@pytest_twisted.ensureDeferred
async def test_a_hostile_last_event_id_gets_the_full_state_and_only_events() -> None:
    """
    A Last-Event-ID nested ten thousand levels deep (or otherwise not
    one of ours) is treated as unknown: the stream sends the full current
    state as an event, and nothing but events is written.
    """
    import base64

    harness, service = _service()
    try:
        await deliver(harness, "setup")
        nested = "1." + base64.urlsafe_b64encode(b"[" * 10_000).decode()
        for last in (nested, "1." + "W" * 9_000, "garbage"):
            headers = {**_bearer(harness), b"Last-Event-ID": last.encode()}
            stream = RawStream(service, b"?types=*&closeafter=state&ping=0", headers)
            assert stream.status() == 200
            found = _body_events(stream.data())
            assert [e["event"] for e in found] == ["state"]
            changed = json.loads(found[0]["data"])["changed"][harness.alice_account]
            assert "Email" in changed and "Mailbox" in changed
            assert b"problem" not in stream.data() and b"Traceback" not in stream.data()
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_failure_after_the_stream_began_ends_it_without_a_problem_document() -> None:
    """
    Once the 200 event stream has begun, a failure ends it (and is
    logged); no problem document is written into it.
    """
    harness, service = _service()

    async def broken(*args: Any) -> Any:
        raise RuntimeError("store unreachable (test)")

    import jmap_twisted.push.subscription as subscription_module

    original = subscription_module.current_states
    subscription_module.current_states = broken  # type: ignore[assignment]
    try:
        stream = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        assert stream.status() == 200
        body = stream.data().split(b"\r\n\r\n", 1)[1]
        assert b"about:blank" not in body and b"status" not in body
        assert body.endswith(b"0\r\n\r\n")  # the chunked body ended
        assert len(service.server.push_connections) == 0
    finally:
        subscription_module.current_states = original  # type: ignore[assignment]
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_streams_per_user_are_bounded() -> None:
    """
    Past max_push_connections streams (and sockets) of one user, another
    is refused with 429 and a problem document; another user is not
    affected, and closing one frees a place.
    """
    harness, service = _service(max_push_connections=2)
    try:
        first = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        second = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        third = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        assert [first.status(), second.status(), third.status()] == [200, 200, 429]
        assert b"application/problem+json" in third.data()
        bob = RawStream(
            service,
            b"?types=*&closeafter=no&ping=0",
            {b"Authorization": harness.basic("bob", "hunter2")["Authorization"].encode()},
        )
        assert bob.status() == 200
        first.lose()
        again = RawStream(service, b"?types=*&closeafter=no&ping=0", _bearer(harness))
        assert again.status() == 200
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_sharee_stream_ends_when_their_view_changes() -> None:
    """
    A stream of bob's, alice's inbox shared with him, is sent a delivery
    there with his view's states of her account; re-checking its access
    while nothing changed keeps it open, but once his view changed (he
    unsubscribed from the shared inbox: another Mailbox state) it ends, and
    the browser reconnects under the new view.
    """
    harness, service = _service()
    try:
        await harness.mail.setup_account(harness.alice_account)
        inbox = await harness.mail.read(
            harness.alice_account, lambda r: next(m.id for m in r.mailboxes() if m.role == "inbox")
        )
        await harness.directory.set_rights(harness.alice_account, inbox, harness.bob.id, "lr", None)
        basic = {b"Authorization": harness.basic("bob", "hunter2")["Authorization"].encode()}
        stream = RawStream(service, b"?types=*&closeafter=no&ping=0", basic)
        assert stream.status() == 200
        await deliver(harness, "shared")
        (state,) = [e for e in _body_events(stream.data()) if e.get("event") == "state"]
        changed = json.loads(state["data"])["changed"]
        assert set(changed) == {harness.alice_account}
        assert changed[harness.alice_account]["Email"].startswith("s")
        (connection,) = service.server.push_connections
        await connection.access_changed()
        assert len(service.server.push_connections) == 1
        assert await harness.directory.set_subscribed(
            harness.alice_account, inbox, harness.bob.id, False
        )
        await connection.access_changed()
        assert len(service.server.push_connections) == 0
        assert stream.data().endswith(b"0\r\n\r\n")  # the response finished
    finally:
        await service.stopService()
