"""
The contract of :class:`~jmap_twisted.interfaces.IEventBus` and
:class:`~jmap_twisted.interfaces.IEventDeadLetters`, run against every
implementation.  Deliveries may be asynchronous (a broker), so outcomes are
awaited with :func:`eventually` rather than assumed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from jmap_twisted.bus.events import AccountKey, GroupAlreadyRegistered, StateChange
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import IEventBus, IEventDeadLetters
from tests.bus.recorders import Recorder

FAST = RetryPolicy(max_retries=2, first_backoff=0.01, jitter=0.5)
ALICE, BOB = AccountKey("alice"), AccountKey("bob")

#: name → async generator yielding (bus, dead letters) with FAST retries.
BUSES: dict[str, Callable[[Path], Any]] = {}
#: name → async generator yielding dead letters.
DEAD_LETTERS: dict[str, Callable[[Path], Any]] = {}


async def _memory_bus(tmp_path: Path) -> AsyncIterator[tuple[IEventBus, IEventDeadLetters]]:
    from twisted.internet import reactor

    from jmap_twisted.bus.deadletters import MemoryDeadLetters
    from jmap_twisted.bus.memory import InMemoryEventBus

    dead = MemoryDeadLetters()
    bus = InMemoryEventBus(reactor, dead, FAST)
    await bus.start()
    yield bus, dead
    await bus.stop()


async def _memory_dead_letters(tmp_path: Path) -> AsyncIterator[IEventDeadLetters]:
    from jmap_twisted.bus.deadletters import MemoryDeadLetters

    yield MemoryDeadLetters()


BUSES["memory"] = _memory_bus
DEAD_LETTERS["memory"] = _memory_dead_letters

try:
    from tests.bus.more_backends import register_backends
except ImportError:  # pragma: no cover - no further backends
    pass
else:
    register_backends(BUSES, DEAD_LETTERS)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """
    Wait until ``check()`` holds, failing after ``seconds``.
    """
    from twisted.internet import reactor, task

    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    assert check(), "condition not reached in time"


async def settle(seconds: float = 0.2) -> None:
    """
    Give an asynchronous bus time to deliver what it would (to show that
    something does *not* arrive).
    """
    from twisted.internet import reactor, task

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.async_yield_fixture(params=sorted(BUSES))
async def bus(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[IEventBus, IEventDeadLetters]]:
    factory = BUSES[request.param](tmp_path)
    yield await factory.__anext__()
    try:
        await factory.__anext__()
    except StopAsyncIteration:
        pass


@pytest_twisted.async_yield_fixture(params=sorted(DEAD_LETTERS))
async def dead_letters(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IEventDeadLetters]:
    factory = DEAD_LETTERS[request.param](tmp_path)
    yield await factory.__anext__()
    try:
        await factory.__anext__()
    except StopAsyncIteration:
        pass


def change(account: str = "alice") -> StateChange:
    return StateChange(account, {"Email": "1"})


@pytest_twisted.ensureDeferred
async def test_provides_interface(bus: Any) -> None:
    """
    The bus provides IEventBus.
    """
    verifyObject(IEventBus, bus[0])


@pytest_twisted.ensureDeferred
async def test_key_listener_gets_events_of_its_keys_only(bus: Any) -> None:
    """
    A listener registered under a key receives events dispatched to that
    key, and not those dispatched to other keys.
    """
    events, _ = bus
    alice, bob = Recorder(), Recorder()
    await events.register(alice, [ALICE])
    await events.register(bob, [BOB])
    sent = change()
    await events.dispatch(sent, [ALICE])
    await eventually(lambda: len(alice.received) == 1)
    await settle()
    assert [e.event_id for e in alice.received] == [sent.event_id]
    assert bob.received == []


@pytest_twisted.ensureDeferred
async def test_duplicate_registrations_collapse(bus: Any) -> None:
    """
    One listener registered twice under a key, or matched by two keys of
    one event, receives the event once; it keeps receiving until every
    registration is cancelled; cancelling twice is harmless.
    """
    events, _ = bus
    listener = Recorder()
    first = await events.register(listener, [ALICE])
    second = await events.register(listener, [ALICE, BOB])
    await events.dispatch(change(), [ALICE, BOB])
    await eventually(lambda: len(listener.received) == 1)
    await settle()
    assert len(listener.received) == 1
    await first.cancel()
    await first.cancel()
    await events.dispatch(change(), [ALICE])
    await eventually(lambda: len(listener.received) == 2)
    await second.cancel()
    await second.cancel()
    await events.dispatch(change(), [ALICE, BOB])
    await settle()
    assert len(listener.received) == 2


@pytest_twisted.ensureDeferred
async def test_new_registration_sees_no_past_events(bus: Any) -> None:
    """
    A listener registered after a dispatch does not receive that event.
    """
    events, _ = bus
    await events.dispatch(change(), [ALICE])
    await settle()
    late = Recorder()
    await events.register(late, [ALICE])
    await settle()
    assert late.received == []


@pytest_twisted.ensureDeferred
async def test_failing_key_listener_is_isolated_and_not_retried(bus: Any) -> None:
    """
    A key listener that fails does not stop delivery to the others, is not
    retried and leaves no dead letter.
    """
    events, dead = bus
    failing, working = Recorder(failures=10), Recorder()
    await events.register(failing, [ALICE])
    await events.register(working, [ALICE])
    await events.dispatch(change(), [ALICE])
    await eventually(lambda: len(working.received) == 1)
    await settle()
    assert failing.calls == 1
    assert await dead.groups() == []


@pytest_twisted.ensureDeferred
async def test_each_group_gets_each_event_once(bus: Any) -> None:
    """
    Every registered group receives every event once, whatever its keys;
    a group name can be registered once.
    """
    events, _ = bus
    one, two = Recorder(), Recorder()
    await events.register_group(one, "one")
    await events.register_group(two, "two")
    with pytest.raises(GroupAlreadyRegistered):
        await events.register_group(Recorder(), "one")
    sent = [change(), change("bob")]
    for event in sent:
        await events.dispatch(event, [])
    await eventually(lambda: len(one.received) == 2 and len(two.received) == 2)
    await settle()
    assert sorted(e.event_id for e in one.received) == sorted(e.event_id for e in sent)
    assert len(two.received) == 2


@pytest_twisted.ensureDeferred
async def test_listeners_can_decline_events(bus: Any) -> None:
    """
    A listener whose is_handling says no does not receive the event.
    """
    events, _ = bus
    picky = Recorder(accept=lambda e: e.account_id == "bob")
    await events.register_group(picky, "picky")
    await events.dispatch(change("alice"), [])
    await events.dispatch(change("bob"), [])
    await eventually(lambda: len(picky.received) == 1)
    await settle()
    assert [e.account_id for e in picky.received] == ["bob"]


@pytest_twisted.ensureDeferred
async def test_failing_group_is_retried_then_dead_lettered(bus: Any) -> None:
    """
    A group listener that keeps failing is called 1 + max_retries times,
    then the event is in the dead letters; one that fails once succeeds on
    retry and leaves no dead letter.
    """
    events, dead = bus
    broken, flaky = Recorder(failures=100), Recorder(failures=1)
    await events.register_group(broken, "broken")
    await events.register_group(flaky, "flaky")
    sent = change()
    await events.dispatch(sent, [])
    await eventually(lambda: broken.calls == 1 + FAST.max_retries and len(flaky.received) == 1)

    async def dead_ids() -> list[str]:
        return await dead.ids("broken")

    for _ in range(300):
        if await dead_ids():
            break
        await settle(0.01)
    (insertion_id,) = await dead.ids("broken")
    assert (await dead.fetch("broken", insertion_id)).event_id == sent.event_id
    assert await dead.ids("flaky") == []


@pytest_twisted.ensureDeferred
async def test_redeliver_reaches_only_the_group(bus: Any) -> None:
    """
    Redelivering an event reaches the named group only: not other groups,
    not key listeners.
    """
    events, _ = bus
    target, other, keyed = Recorder(), Recorder(), Recorder()
    await events.register_group(target, "target")
    await events.register_group(other, "other")
    await events.register(keyed, [ALICE])
    await events.redeliver("target", change())
    await eventually(lambda: len(target.received) == 1)
    await settle()
    assert other.received == [] and keyed.received == []


@pytest_twisted.ensureDeferred
async def test_dead_letters_contract(dead_letters: IEventDeadLetters) -> None:
    """
    Dead letters are stored per group, listed oldest first, fetched,
    marked for redelivery and removed idempotently.
    """
    verifyObject(IEventDeadLetters, dead_letters)
    first, second = change(), change("bob")
    a = await dead_letters.store("g1", first)
    b = await dead_letters.store("g1", second)
    c = await dead_letters.store("g2", first)
    assert await dead_letters.groups() == ["g1", "g2"]
    assert await dead_letters.ids("g1") == [a, b]
    fetched = await dead_letters.fetch("g1", b)
    assert fetched is not None and fetched.event_id == second.event_id
    assert fetched.account_id == "bob"
    assert await dead_letters.fetch("g1", "nope") is None
    assert await dead_letters.request_redelivery("g1", None) == 2
    assert await dead_letters.request_redelivery("g2", "nope") == 0
    assert sorted(await dead_letters.requested()) == sorted([("g1", a), ("g1", b)])
    await dead_letters.remove("g1", a)
    await dead_letters.remove("g1", a)
    assert await dead_letters.ids("g1") == [b]
    assert await dead_letters.requested() == [("g1", b)]
    await dead_letters.remove("g2", c)
    assert await dead_letters.groups() == ["g1"]
