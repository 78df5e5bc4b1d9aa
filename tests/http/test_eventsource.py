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
    endpoint, once.
    """
    harness = Harness()
    harness.service.startService()
    try:
        response = await harness.treq.post(BASE + "/jmap/ticket", headers=harness.bearer())
        ticket = json.loads(await response.content())["value"]
        url = BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket=" + ticket
        opened = await harness.treq.get(url)
        assert opened.code == 200
        again = await harness.treq.get(url)
        assert again.code == 401
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
