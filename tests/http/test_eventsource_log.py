"""
One structured log event when an EventSource stream opens and one when
it closes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from twisted.logger import eventAsJSON, globalLogPublisher

from tests.http.test_eventsource import deliver
from tests.http.test_resources import BASE, Harness


def named(events: list[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("log_format", "")).startswith(start)]


@pytest_twisted.ensureDeferred
async def test_open_and_close_are_logged_without_the_ticket() -> None:
    """
    A stream's opening logs the user, transport and client address; its
    end adds the time open, why it ended and what it sent; the ticket
    that opened it appears in neither.
    """
    events: list[dict[str, Any]] = []
    harness = Harness()
    harness.service.startService()
    globalLogPublisher.addObserver(events.append)
    try:
        await deliver(harness, "setup")
        response = await harness.treq.post(BASE + "/jmap/ticket", headers=harness.bearer())
        ticket = json.loads(await response.content())["value"]
        url = BASE + "/jmap/eventsource/?types=*&closeafter=state&ping=0&ticket=" + ticket
        opened_response = await harness.treq.get(url)
        chunks: list[bytes] = []
        ended = treq.collect(opened_response, chunks.append)
        harness.treq.flush()
        (opened,) = named(events, "EventSource stream opened")
        harness.reactor.advance(3)
        await deliver(harness, "one")
        harness.treq.flush()
        assert ended.called
        (closed,) = named(events, "EventSource stream closed")
    finally:
        globalLogPublisher.removeObserver(events.append)
        await harness.service.stopService()

    assert opened["user_id"] == closed["user_id"] == harness.alice.id
    assert opened["transport"] == closed["transport"] == "eventsource"
    assert opened["client"] == closed["client"] != "-"
    assert closed["duration"] == 3
    assert closed["end"] == "server"
    assert closed["frames_out"] == 1
    assert closed["octets_out"] == len(b"".join(chunks)) - len(b": jmap push\n\n")
    for event in (opened, closed):
        assert ticket not in eventAsJSON(event)
