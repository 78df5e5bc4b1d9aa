"""
Pacing of an account's StateChanges when its fan-out is expensive: one
account receiving mail faster than its sockets can be written to takes
at most about half of the reactor's time, every other account is pushed
at once, and no state is lost.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from jmap_twisted.bus.changes import MAX_PACE, MailboxChangeListener
from jmap_twisted.bus.events import MailboxChanged, StateChange
from jmap_twisted.interfaces import IEvent, IRegistrationKey


class CostlyBus:
    """
    A JMAP bus whose dispatches take ``cost[account]`` seconds of the
    clock (the time its sockets take to be written to).
    """

    def __init__(self, clock: Clock, cost: dict[str, float]) -> None:
        self.clock = clock
        self.cost = cost
        self.sent: list[tuple[float, StateChange]] = []

    def dispatch(self, event: IEvent, keys: Collection[IRegistrationKey]) -> Deferred[None]:
        assert isinstance(event, StateChange)
        self.sent.append((self.clock.seconds(), event))
        self.clock.advance(self.cost.get(event.account_id, 0.0))
        return succeed(None)


def change(account: str, email: str, delivery: bool = True) -> MailboxChanged:
    return MailboxChanged(
        account, int(email), (), {"Email": email, "Mailbox": email}, delivery, committed_at=1.0
    )


def setup(cost: dict[str, float]) -> tuple[Clock, CostlyBus, MailboxChangeListener]:
    clock = Clock()
    clock.advance(100)
    bus = CostlyBus(clock, cost)
    listener = MailboxChangeListener(bus, clock)  # type: ignore[arg-type]
    return clock, bus, listener


def states(bus: CostlyBus, account: str) -> list[dict[str, Any]]:
    return [dict(e.states) for _, e in bus.sent if e.account_id == account]


def test_a_cheap_account_is_always_pushed_at_once() -> None:
    clock, bus, listener = setup({"a": 0.0005})
    for n in range(1, 6):
        listener.handle(change("a", str(n)))
    assert [s["Email"] for s in states(bus, "a")] == ["1", "2", "3", "4", "5"]
    assert not clock.getDelayedCalls()


def test_an_expensive_accounts_changes_merge_until_its_turn() -> None:
    """
    After a fan-out taking 20 ms, the account's changes in the next 20 ms
    merge into one StateChange with the latest states (EmailDelivery
    kept), sent when the 20 ms are over; meanwhile another account is
    pushed at once.
    """
    clock, bus, listener = setup({"big": 0.02})
    listener.handle(change("big", "1"))
    assert len(bus.sent) == 1
    clock.advance(0.005)
    listener.handle(change("big", "2"))
    listener.handle(change("big", "3", delivery=False))
    listener.handle(change("small", "7"))
    assert [e.account_id for _, e in bus.sent] == ["big", "small"]
    clock.advance(0.015)
    merged = states(bus, "big")
    assert merged[1] == {"Email": "3", "Mailbox": "3", "EmailDelivery": "2"}
    assert bus.sent[-1][0] >= 100 + 0.04 - 1e-9  # 20 ms of fan-out, then as long again
    assert len(merged) == 2


def test_a_lone_change_after_a_quiet_spell_goes_at_once() -> None:
    clock, bus, listener = setup({"big": 0.02})
    listener.handle(change("big", "1"))
    clock.advance(1.0)
    listener.handle(change("big", "2"))
    assert len(states(bus, "big")) == 2
    assert bus.sent[-1][0] == 101.02


def test_the_wait_is_bounded() -> None:
    """
    However long a fan-out took, the next StateChange of the account waits
    at most MAX_PACE.
    """
    clock, bus, listener = setup({"huge": 5.0})
    listener.handle(change("huge", "1"))
    listener.handle(change("huge", "2"))
    clock.advance(MAX_PACE)
    assert [s["Email"] for s in states(bus, "huge")] == ["1", "2"]


def test_without_a_clock_nothing_is_paced() -> None:
    clock = Clock()
    bus = CostlyBus(clock, {"a": 1.0})
    listener = MailboxChangeListener(bus)  # type: ignore[arg-type]
    listener.handle(change("a", "1"))
    listener.handle(change("a", "2"))
    assert len(bus.sent) == 2


def test_paced_accounts_are_forgotten_once_their_pace_is_over(monkeypatch: Any) -> None:
    """
    However many accounts have been paced once, what is remembered of
    them stays bounded.
    """
    from jmap_twisted.bus import changes

    monkeypatch.setattr(changes, "MAX_PACED_ACCOUNTS", 10)
    cost = {f"a{n}": 0.02 for n in range(50)}
    clock, bus, listener = setup(cost)
    for n in range(50):
        listener.handle(change(f"a{n}", "1"))
        clock.advance(1.0)
    assert len(listener._next) <= 10
    assert len(bus.sent) == 50
