"""
One connection's subscription to StateChanges (RFC 8620 §7.1), shared by
the WebSocket and EventSource transports: registered on the JMAP bus under
its accounts' keys, replaying from a ``pushState``, following access
changes, pausing for a slow reader, cancellable at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from jmap_twisted.bus.changes import StorePublisher, register_change_listener
from jmap_twisted.bus.events import AccountKey, StateChange
from jmap_twisted.interfaces import IEventListener, IMailReader, IRegistration, IRegistrationKey
from jmap_twisted.push import pushstate
from jmap_twisted.push.listener import PUSH_TYPES, current_states
from jmap_twisted.push.subscription import PushSubscription
from jmap_twisted.records import Account
from jmap_twisted.testing import InMemoryEventBus, MemoryDeadLetters, MemoryMailStore, message
from tests.support import ImmediateReactor

T = TypeVar("T")

#: The user whose connection the subscriptions here serve.
USER = "u"


def whole(*account_ids: str) -> list[Account]:
    """
    Accounts seen whole (as their owner or a delegate sees them).
    """
    return [Account(account_id, account_id, "owner") for account_id in account_ids]


def done(fired: Deferred[T]) -> T:
    """
    The result of a Deferred that has fired (the in-memory doubles answer
    at once); its failure raised.
    """
    outcome: list[Any] = []
    fired.addBoth(outcome.append)
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[no-any-return]


class Push:
    """
    A mail store whose commits reach the JMAP bus as StateChange events
    (publisher → mailbox bus → change listener → JMAP bus), with accounts
    A1, A2, A3 and B1 set up, and what a subscription sends.
    """

    def __init__(self) -> None:
        self.clock = ImmediateReactor()
        self.mail = MemoryMailStore(self.clock)
        self.mailbox_bus = InMemoryEventBus(self.clock, MemoryDeadLetters())
        self.jmap_bus = InMemoryEventBus(self.clock, MemoryDeadLetters())
        register_change_listener(self.mailbox_bus, self.jmap_bus)
        self.publisher = StorePublisher(self.mail, self.mailbox_bus)
        self.publisher.start()
        for account in ("A1", "A2", "A3", "B1"):
            self.mail.setup_account(account)
        self.sent: list[dict[str, Any]] = []

    def subscription(self, types: Collection[str] | None = None) -> PushSubscription:
        return PushSubscription(self.jmap_bus, self.mail, self.sent.append, types, USER)

    def deliver(self, account: str, subject: str = "hi") -> None:
        def write(w: Any) -> None:
            inbox = next(m.id for m in w.mailboxes() if m.role == "inbox")
            w.add_email(message(subject=subject), [inbox], [], 0.0)

        done(self.mail.write(account, write, delivery=True))

    def flag_first_email(self, account: str) -> None:
        email_id = self.read(account, lambda r: r.query_emails(None, [], False)[0][0])
        done(self.mail.write(account, lambda w: w.update_email(email_id, keywords={"$seen"})))

    def read(self, account: str, fn: Callable[[IMailReader], T]) -> T:
        return done(self.mail.read(account, fn))

    def states(self, *accounts: str) -> pushstate.States:
        return done(Deferred.fromCoroutine(current_states(self.mail, whole(*accounts))))

    def push_listeners(self) -> list[IEventListener]:
        return [
            listener
            for listener in self.jmap_bus.local_listeners()
            if type(listener).__name__ == "PushListener"
        ]


@pytest_twisted.ensureDeferred
async def test_start_registers_each_account_and_sends_their_changes_only() -> None:
    """
    Starting registers under the key of every account given and, without
    a pushState, sends nothing at once; a commit to one of those accounts
    is sent as one StateChange with its new states and a pushState holding
    every state known; a commit to another account sends nothing.
    """
    p = Push()
    subscription = p.subscription()
    assert await subscription.start(whole("A1", "A2"), None)
    assert subscription.active
    assert p.jmap_bus.key_names() == {"account:A1", "account:A2"}
    assert p.sent == []
    p.deliver("A1")
    (change,) = p.sent
    assert change["@type"] == "StateChange"
    email = p.read("A1", lambda r: r.state("Email"))
    assert change["changed"]["A1"]["Email"] == email
    assert change["changed"]["A1"]["EmailDelivery"] == email
    assert set(change["changed"]) == {"A1"}
    known = pushstate.decode(change["pushState"])
    assert known is not None and set(known) == {"A1", "A2"}
    assert known["A2"] == p.states("A2")["A2"]
    p.deliver("B1")
    p.deliver("A3")
    assert len(p.sent) == 1


@pytest_twisted.ensureDeferred
async def test_only_wanted_types_are_sent() -> None:
    """
    With types asked for, only those are sent (unknown names ignored); a
    commit changing none of them sends nothing, yet its states still
    advance the pushState sent with the next StateChange.
    """
    p = Push()
    subscription = p.subscription(["Mailbox", "Bogus"])
    await subscription.start(whole("A1"), None)
    p.deliver("A1")
    (change,) = p.sent
    assert set(change["changed"]["A1"]) == {"Mailbox"}
    done(p.mail.write("A1", lambda w: w.put_document("Identity", "i1", {"name": "x"})))
    assert len(p.sent) == 1
    p.deliver("A1", "again")
    assert len(p.sent) == 2
    known = pushstate.decode(p.sent[-1]["pushState"]) or {}
    assert known["A1"]["Identity"] == p.read("A1", lambda r: r.state("Identity"))
    assert (
        known["A1"]["Identity"] != (pushstate.decode(change["pushState"]) or {})["A1"]["Identity"]
    )


@pytest_twisted.ensureDeferred
async def test_replaying_an_old_push_state_sends_what_changed_since() -> None:
    """
    Started with a pushState the subscription issued, it sends at once one
    StateChange with the types whose state moved since (at their current
    state), and neither unchanged types nor EmailDelivery (a flag change is
    not a delivery).
    """
    p = Push()
    first = p.subscription()
    await first.start(whole("A1"), None)
    p.deliver("A1")
    push_state = p.sent[-1]["pushState"]
    await first.cancel()
    p.flag_first_email("A1")
    p.sent.clear()
    again = p.subscription()
    await again.start(whole("A1"), push_state)
    (replay,) = p.sent
    changed = replay["changed"]["A1"]
    assert changed["Email"] == p.read("A1", lambda r: r.state("Email"))
    assert "EmailDelivery" not in changed
    assert not {"Identity", "VacationResponse", "EmailSubmission"} & set(changed)
    assert pushstate.decode(replay["pushState"]) == p.states("A1")


@pytest_twisted.ensureDeferred
async def test_a_push_state_that_does_not_decode_replays_every_state() -> None:
    """
    A pushState this server did not issue (another server's, damaged,
    hostile) replays every current state of every account, without
    EmailDelivery.
    """
    p = Push()
    for garbage in ("garbage", "1.!!!", "1." + "W" * 40):
        p.sent.clear()
        subscription = p.subscription()
        await subscription.start(whole("A1", "A2"), garbage)
        (replay,) = p.sent
        current = p.states("A1", "A2")
        for account in ("A1", "A2"):
            assert set(replay["changed"][account]) == PUSH_TYPES - {"EmailDelivery"}
            assert replay["changed"][account]["Mailbox"] == current[account]["Mailbox"]
        await subscription.cancel()


class HeldBus:
    """
    The JMAP bus, with registrations made at once but confirmed only when
    the test says (as a broker's are, after a round trip).
    """

    def __init__(self, bus: InMemoryEventBus) -> None:
        self.bus = bus
        self.held: list[tuple[Deferred[IRegistration], IRegistration]] = []

    def register(
        self, listener: IEventListener, keys: Collection[IRegistrationKey]
    ) -> Deferred[IRegistration]:
        registration = done(self.bus.register(listener, keys))
        confirmed: Deferred[IRegistration] = Deferred()
        self.held.append((confirmed, registration))
        return confirmed

    def confirm(self) -> None:
        for confirmed, registration in self.held:
            confirmed.callback(registration)
        self.held.clear()


class HeldReads:
    """
    The mail store, with reads answered only when the test says.
    """

    def __init__(self, mail: MemoryMailStore) -> None:
        self.mail = mail
        self.held: list[tuple[Deferred[Any], Any]] = []

    def read(self, account_id: str, fn: Callable[[IMailReader], Any]) -> Deferred[Any]:
        answered: Deferred[Any] = Deferred()
        self.held.append((answered, done(self.mail.read(account_id, fn))))
        return answered

    def answer(self) -> None:
        while self.held:
            answered, value = self.held.pop(0)
            answered.callback(value)


@pytest_twisted.ensureDeferred
async def test_cancel_while_registering_leaves_nothing_registered() -> None:
    """
    Cancelled before the bus confirmed its registration, the subscription
    ends unstarted once it does: nothing stays registered on the bus and
    nothing is ever sent.
    """
    p = Push()
    bus = HeldBus(p.jmap_bus)
    subscription = PushSubscription(bus, p.mail, p.sent.append, None, USER)  # type: ignore[arg-type]
    starting = Deferred.fromCoroutine(subscription.start(whole("A1"), "garbage"))
    assert p.push_listeners()  # registered, not yet confirmed
    await subscription.cancel()
    bus.confirm()
    assert await starting is False
    assert not subscription.active
    assert p.push_listeners() == [] and p.jmap_bus.key_names() == set()
    p.deliver("A1")
    assert p.sent == []


@pytest_twisted.ensureDeferred
async def test_cancel_while_reading_states_leaves_nothing_registered() -> None:
    """
    Cancelled while the current states are being read, the subscription
    unregisters at once, sends nothing (not even the replay it was asked
    for) and ends unstarted.
    """
    p = Push()
    reads = HeldReads(p.mail)
    subscription = PushSubscription(p.jmap_bus, reads, p.sent.append, None, USER)  # type: ignore[arg-type]
    starting = Deferred.fromCoroutine(subscription.start(whole("A1", "A2"), "garbage"))
    assert reads.held and p.push_listeners()
    await subscription.cancel()
    assert p.push_listeners() == []
    reads.answer()
    assert await starting is False
    p.deliver("A1")
    assert p.sent == [] and p.jmap_bus.key_names() == set()


@pytest_twisted.ensureDeferred
async def test_a_change_arriving_while_states_are_read_is_not_lost() -> None:
    """
    Registration comes before reading the current states, so a change
    committed in between is sent once the subscription starts.
    """
    p = Push()
    reads = HeldReads(p.mail)
    subscription = PushSubscription(p.jmap_bus, reads, p.sent.append, None, USER)  # type: ignore[arg-type]
    starting = Deferred.fromCoroutine(subscription.start(whole("A1"), None))
    p.deliver("A1", "in between")
    assert p.sent == []
    reads.answer()
    assert await starting is True
    (change,) = p.sent
    assert change["changed"]["A1"]["Email"] == p.read("A1", lambda r: r.state("Email"))


@pytest_twisted.ensureDeferred
async def test_follow_stops_a_revoked_account_at_once_and_starts_a_new_one() -> None:
    """
    Following a change of the visible accounts: a revoked account is
    unregistered at once (its changes are no longer sent, its states drop
    out of the pushState); a newly visible account is registered and its
    current states are sent at once.
    """
    p = Push()
    subscription = p.subscription()
    await subscription.start(whole("A1", "A2"), None)
    await subscription.follow(whole("A1"))
    assert subscription.accounts == {"A1"}
    assert p.jmap_bus.key_names() == {"account:A1"}
    p.deliver("A2")
    assert p.sent == []
    p.deliver("A1")
    (change,) = p.sent
    assert set(change["changed"]) == {"A1"}
    assert set(pushstate.decode(change["pushState"]) or {}) == {"A1"}
    p.sent.clear()
    await subscription.follow(whole("A1", "A3"))
    assert p.jmap_bus.key_names() == {"account:A1", "account:A3"}
    (added,) = p.sent
    assert set(added["changed"]) == {"A3"}
    current = p.states("A3")["A3"]
    for type_name in PUSH_TYPES - {"EmailDelivery"}:
        assert added["changed"]["A3"][type_name] == current[type_name]
    p.deliver("A3")
    assert len(p.sent) == 2 and set(p.sent[-1]["changed"]) == {"A3"}
    assert len(p.push_listeners()) == 1


@pytest_twisted.ensureDeferred
async def test_follow_after_cancel_registers_nothing() -> None:
    """
    A cancelled subscription ignores later access changes: nothing is
    registered again.
    """
    p = Push()
    subscription = p.subscription()
    await subscription.start(whole("A1"), None)
    await subscription.cancel()
    await subscription.follow(whole("A1", "A2"))
    assert p.push_listeners() == [] and p.sent == []


@pytest_twisted.ensureDeferred
async def test_paused_changes_merge_per_account_and_type_and_resume_sends_one() -> None:
    """
    While paused (the connection cannot take more), changes merge per
    account and type and nothing is sent; resuming sends exactly one
    StateChange with the latest state of each, for every account that
    changed.  Pausing before start holds the replay too.
    """
    p = Push()
    subscription = p.subscription()
    subscription.pause()
    await subscription.start(whole("A1", "A2"), "garbage")
    for index in range(5):
        p.deliver("A1", f"m{index}")
    p.deliver("A2")
    assert p.sent == []
    subscription.resume()
    (merged,) = p.sent
    current = p.states("A1", "A2")
    assert set(merged["changed"]) == {"A1", "A2"}
    assert merged["changed"]["A1"]["Email"] == current["A1"]["Email"]
    assert merged["changed"]["A1"]["EmailDelivery"] == current["A1"]["Email"]
    assert merged["changed"]["A2"]["Email"] == current["A2"]["Email"]
    assert pushstate.decode(merged["pushState"]) == current
    p.deliver("A1")
    assert len(p.sent) == 2


@pytest_twisted.ensureDeferred
async def test_state_change_events_on_the_bus_are_sent_and_older_ones_ignored() -> None:
    """
    StateChange events dispatched on the bus under an account's key are
    sent; one carrying an older state than already known (arriving late)
    is not.
    """
    p = Push()
    subscription = p.subscription()
    await subscription.start(whole("A1"), None)
    email = int(p.read("A1", lambda r: r.state("Email")))
    newer, older = str(email + 10), str(email + 5)
    await p.jmap_bus.dispatch(StateChange("A1", {"Email": newer}), [AccountKey("A1")])
    await p.jmap_bus.dispatch(StateChange("A1", {"Email": older}), [AccountKey("A1")])
    await p.jmap_bus.dispatch(StateChange("B1", {"Email": newer}), [AccountKey("B1")])
    assert [c["changed"] for c in p.sent] == [{"A1": {"Email": newer}}]


@pytest_twisted.ensureDeferred
async def test_catch_up_sends_only_what_moved() -> None:
    """
    After events may have been missed, catching up sends one StateChange
    with the types of this subscription's accounts whose state moved since
    it last heard (never EmailDelivery, never other accounts), and reports
    whether it sent anything; nothing moved, nothing is sent.
    """
    p = Push()
    subscription = p.subscription()
    await subscription.start(whole("A1", "A2"), None)
    p.publisher.stop()  # the commits below are missed
    p.deliver("A1")
    p.deliver("B1")
    assert p.sent == []
    current = p.states("A1", "A2", "B1")
    assert subscription.catch_up(current) is True
    (caught,) = p.sent
    assert set(caught["changed"]) == {"A1"}
    assert caught["changed"]["A1"]["Email"] == current["A1"]["Email"]
    assert "EmailDelivery" not in caught["changed"]["A1"]
    assert subscription.catch_up(current) is False
    assert len(p.sent) == 1
