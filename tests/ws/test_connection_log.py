"""
One structured log event when a WebSocket opens and one when it closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.logger import eventAsJSON, globalLogPublisher
from twisted.test import iosim

from tests.ws.memory import Connection

USING = ["urn:ietf:params:jmap:core"]


@contextmanager
def captured() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def named(events: list[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("log_format", "")).startswith(start)]


def test_open_and_close_are_logged_with_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Opening logs the user, transport and client address; closing adds the
    time open, the close code, frames each way and the octets before and
    after deflate; no credential appears in either.
    """
    peer = IPv4Address("TCP", "192.0.2.7", 40000)
    monkeypatch.setattr(iosim.FakeTransport, "getPeer", lambda self: peer)
    with captured() as events:
        c = Connection()
        (opened,) = named(events, "WebSocket opened")
        c.client.send_json(
            {
                "@type": "Request",
                "id": "1",
                "using": USING,
                "methodCalls": [["Core/echo", {"text": "abc" * 2000}, "a"]],
            }
        )
        c.flush()
        c.clock.advance(7)
        c.client.sendClose(1000)
        c.flush()
        (closed,) = named(events, "WebSocket closed")

    assert opened["user_id"] == closed["user_id"] == c.user.id
    assert opened["transport"] == closed["transport"] == "websocket"
    assert opened["client"] == closed["client"] == "192.0.2.7"
    assert opened["deflate"] is True
    assert closed["duration"] == 7
    assert closed["close_code"] == 1000
    assert closed["frames_in"] == 1
    assert closed["frames_out"] == 1
    assert closed["octets_out"] > 6000
    assert closed["octets_out_deflated"] < closed["octets_out"] / 10
    assert closed["octets_in"] > closed["octets_in_deflated"]
    for event in (opened, closed):
        text = eventAsJSON(event)
        assert "YWxpY2U6cHc=" not in text  # alice:pw, as sent
        assert "Basic" not in text


def test_a_refused_upgrade_logs_no_connection() -> None:
    """
    A handshake refused before the socket opens logs neither line.
    """
    with captured() as events:
        c = Connection()
        c.connect(headers={"Authorization": "Basic bm9ib2R5Ong="})
        c.flush()
    assert len(named(events, "WebSocket opened")) == 1
    assert named(events, "WebSocket closed") == []
