"""
Tickets: single use for a WebSocket; for an EventSource, the stream's and
its reconnects', one stream at a time, across the nodes sharing a store.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.push.tickets import HOLD, MAX_PER_USER, RECONNECT_WINDOW, Tickets
from jmap_twisted.testing import MemoryTickets

BROWSER = "192.0.2.1"
ELSEWHERE = "198.51.100.7"


@pytest_twisted.ensureDeferred
async def test_ticket_is_single_use_and_expires() -> None:
    """
    A ticket opens one socket, for its user, and not after its lifetime.
    """
    clock = Clock()
    tickets = Tickets(MemoryTickets(), clock, lifetime=60)
    value, expires = await tickets.issue("u1", "10.0.0.1", ("token", "t"))
    assert expires == 60
    redeemed = await tickets.redeem(value, "10.0.0.2")
    assert redeemed is not None
    assert (redeemed[0].user_id, redeemed[0].origin, redeemed[1]) == ("u1", ("token", "t"), None)
    assert await tickets.redeem(value, "10.0.0.2") is None
    late, _ = await tickets.issue("u1", None)
    clock.advance(60)
    assert await tickets.redeem(late, None) is None
    assert await tickets.redeem("made-up", None) is None


@pytest_twisted.ensureDeferred
async def test_ticket_bound_to_address_and_revocable() -> None:
    """
    Bound tickets redeem only from the issuing address; only their owner
    can revoke them; a user holds a bounded number of live tickets.
    """
    clock = Clock()
    tickets = Tickets(MemoryTickets(), clock, bind_client=True)
    value, _ = await tickets.issue("u1", "192.0.2.1")
    assert await tickets.redeem(value, "192.0.2.9") is None
    assert await tickets.redeem(value, "192.0.2.1") is not None
    other, _ = await tickets.issue("u1", None)
    assert not await tickets.revoke(other, "u2")
    assert await tickets.revoke(other, "u1")
    assert await tickets.redeem(other, None) is None
    many = []
    for _ in range(MAX_PER_USER + 5):
        many.append((await tickets.issue("u3", None))[0])
        clock.advance(0.01)
    opened = [await tickets.redeem(v, None) is not None for v in many]
    assert opened == [False] * 5 + [True] * MAX_PER_USER


@pytest_twisted.ensureDeferred
async def test_stream_ticket_survives_reconnects() -> None:
    """
    A ticket that opened an EventSource reopens it after the stream ended
    (past the fresh ticket's minute), but opens no WebSocket and no second
    stream at the same time; the reconnect window closes it in the end.
    """
    clock = Clock()
    tickets = Tickets(MemoryTickets(), clock)
    value, _ = await tickets.issue("u1", BROWSER)
    first = await tickets.redeem(value, BROWSER, stream=True)
    assert first is not None and first[1] is not None
    tickets.attach(first[1], lambda: None)
    assert await tickets.redeem(value, BROWSER) is None  # no WebSocket
    assert await tickets.redeem(value, ELSEWHERE, stream=True) is None  # no second stream
    clock.advance(120)
    await tickets.renew()
    await tickets.release(first[1])
    clock.advance(RECONNECT_WINDOW - 1)
    again = await tickets.redeem(value, ELSEWHERE, stream=True)
    assert again is not None and again[0].user_id == "u1"
    await tickets.release(again[1])  # type: ignore[arg-type]
    clock.advance(RECONNECT_WINDOW)
    assert await tickets.redeem(value, BROWSER, stream=True) is None


@pytest_twisted.ensureDeferred
async def test_reconnect_from_same_address_ends_the_old_stream() -> None:
    """
    A browser that reconnects before the server saw its stream go takes
    the ticket over: the old stream on this node ends at once.
    """
    tickets = Tickets(MemoryTickets(), Clock())
    value, _ = await tickets.issue("u1", BROWSER)
    first = await tickets.redeem(value, BROWSER, stream=True)
    assert first is not None and first[1] is not None
    ended: list[str] = []
    tickets.attach(first[1], lambda: ended.append("first"))
    second = await tickets.redeem(value, BROWSER, stream=True)
    assert second is not None and ended == ["first"]


@pytest_twisted.ensureDeferred
async def test_takeover_on_another_node_ends_the_stream_at_renewal() -> None:
    """
    Two nodes over one store: a ticket issued on one opens a stream on the
    other; when the stream is taken over on the first node, the second
    ends its stream at its next renewal and keeps nothing held.
    """
    clock = Clock()
    store = MemoryTickets()
    one, two = Tickets(store, clock), Tickets(store, clock)
    value, _ = await one.issue("u1", BROWSER)
    opened = await two.redeem(value, BROWSER, stream=True)
    assert opened is not None and opened[1] is not None
    ended: list[bool] = []
    two.attach(opened[1], lambda: ended.append(True))
    clock.advance(HOLD / 3)
    await two.renew()
    assert ended == []
    assert await one.redeem(value, BROWSER, stream=True) is not None
    await two.renew()
    assert ended == [True]


@pytest_twisted.ensureDeferred
async def test_hold_of_a_lost_node_lapses() -> None:
    """
    A node that stops renewing (it crashed) holds the ticket only until
    its lease lapses; then the stream reconnects anywhere.
    """
    clock = Clock()
    store = MemoryTickets()
    lost, alive = Tickets(store, clock), Tickets(store, clock)
    value, _ = await alive.issue("u1", BROWSER)
    assert await lost.redeem(value, BROWSER, stream=True) is not None
    clock.advance(HOLD - 1)
    assert await alive.redeem(value, ELSEWHERE, stream=True) is None
    clock.advance(1)
    assert await alive.redeem(value, ELSEWHERE, stream=True) is not None
