"""
An EventSource opened with a ticket, as browsers open it: its automatic
reconnects (same URL, ``Last-Event-ID``) keep working while the ticket
opens nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from treq.testing import StubTreq

from jmap_twisted.auth.passwords import token_hash
from tests.http.test_eventsource import RawStream, _body_events, _service, deliver

BROWSER = "192.0.2.1"
ELSEWHERE = "198.51.100.7"


async def _ticket(harness: Any) -> bytes:
    response = await StubTreq(harness.service.site.resource).post(
        "http://jmap.example/jmap/ticket", headers=harness.bearer()
    )
    assert response.code == 201
    return json.loads(await response.content())["value"].encode()


def _states(stream: RawStream) -> list[dict[str, str]]:
    return [e for e in _body_events(stream.data()) if e.get("event") == "state"]


@pytest_twisted.ensureDeferred
async def test_reconnect_replays_a_mail_delivered_in_the_gap() -> None:
    """
    The stream's connection drops; a mail arrives meanwhile; the browser
    reconnects with the same ticket URL (from a new address, after the
    fresh ticket's minute) and ``Last-Event-ID``, and is told at once.
    """
    harness, service = _service()
    try:
        await deliver(harness, "before")
        query = b"?types=*&closeafter=no&ping=0&ticket=" + await _ticket(harness)
        stream = RawStream(service, query, {}, BROWSER)
        assert stream.status() == 200
        await deliver(harness, "first")
        (seen,) = _states(stream)
        stream.lose()
        await deliver(harness, "in the gap")
        harness.reactor.advance(120)
        again = RawStream(service, query, {b"Last-Event-ID": seen["id"].encode()}, ELSEWHERE)
        assert again.status() == 200
        (replayed,) = _states(again)
        assert replayed["id"] != seen["id"]
        assert "Email" in json.loads(replayed["data"])["changed"][harness.alice_account]
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_held_ticket_opens_no_second_stream_and_no_websocket() -> None:
    """
    While its stream is open, the ticket opens no stream from another
    address and no WebSocket; the well-behaved stream goes on receiving.
    """
    harness, service = _service()
    try:
        await deliver(harness, "before")
        ticket = await _ticket(harness)
        stream = RawStream(service, b"?ping=0&ticket=" + ticket, {}, BROWSER)
        assert stream.status() == 200
        thief = RawStream(service, b"?ping=0&ticket=" + ticket, {}, ELSEWHERE)
        assert thief.status() == 401
        socket = await StubTreq(service.site.resource).get(
            "http://jmap.example/jmap/ws?ticket=" + ticket.decode(),
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": "jmap",
            },
        )
        assert socket.code == 401
        await deliver(harness, "still served")
        assert len(_states(stream)) == 1
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_revoked_credentials_end_the_ticket_too() -> None:
    """
    The ticket rests on the credentials that asked for it: once they are
    revoked, the stream ends and its ticket reconnects no more.
    """
    harness, service = _service()
    try:
        query = b"?ping=0&ticket=" + await _ticket(harness)
        stream = RawStream(service, query, {}, BROWSER)
        assert stream.status() == 200
        found = await harness.directory.find_token(token_hash(harness.alice_token))
        await harness.directory.revoke_token(found[1].id)
        await service.server.access.check()
        assert len(service.server.push_connections) == 0
        again = RawStream(service, query, {}, BROWSER)
        assert again.status() == 401
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_unopened_stream_frees_its_ticket() -> None:
    """
    A stream refused after its ticket was redeemed (bad arguments) does
    not keep the ticket: the browser's corrected request opens.
    """
    harness, service = _service()
    try:
        ticket = await _ticket(harness)
        bad = RawStream(service, b"?ping=x&ticket=" + ticket, {}, BROWSER)
        assert bad.status() == 400
        good = RawStream(service, b"?ping=0&ticket=" + ticket, {}, ELSEWHERE)
        assert good.status() == 200
    finally:
        await service.stopService()
