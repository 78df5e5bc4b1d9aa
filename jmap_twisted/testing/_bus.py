# -*- test-case-name: tests.bus.test_bus_contract -*-
"""
The contracts of :class:`~jmap_twisted.interfaces.IEventBus` and
:class:`~jmap_twisted.interfaces.IEventDeadLetters`: base classes of pytest
tests, :class:`EventBusContract` and :class:`DeadLettersContract`.

Deliveries may be asynchronous (through a broker), so the bus tests await
outcomes with :func:`eventually` rather than assume them at once, and show
that something does *not* arrive by letting the bus :func:`settle` first.
Both run on the global reactor (pytest-twisted's), as a broker's
connections do.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.events import AccountKey, GroupAlreadyRegistered, StateChange
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import IEventBus, IEventDeadLetters
from jmap_twisted.testing._doubles import RecordingListener

ALICE, BOB = AccountKey("alice"), AccountKey("bob")


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """
    Wait until ``check()`` holds, polling every 10 ms of the global
    reactor's time, and fail when it still does not after ``seconds``.
    """
    from twisted.internet import reactor, task

    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    assert check(), "condition not reached in time"


async def settle(seconds: float = 0.2) -> None:
    """
    Give an asynchronous bus time to deliver what it would, to show that
    something does *not* arrive.
    """
    from twisted.internet import reactor, task

    await task.deferLater(reactor, seconds, lambda: None)


def change(account: str = "alice") -> StateChange:
    """
    A fresh event for an account.
    """
    return StateChange(account, {"Email": "1"})


class EventBusContract:
    """
    The tests every event bus passes, collected by pytest in each subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``event_bus`` that gives a started bus with no
    registrations, which retries failed group deliveries by the contract's
    ``retry_policy`` fixture and dead-letters into its ``bus_dead_letters``
    fixture, and which is stopped afterwards::

        from jmap_twisted.testing import EventBusContract

        class TestMyBus(EventBusContract):
            @pytest_twisted.async_yield_fixture
            async def event_bus(self, retry_policy, bus_dead_letters):
                from twisted.internet import reactor

                bus = MyBus(reactor, bus_dead_letters, retry_policy)
                await bus.start()
                yield bus
                await bus.stop()

    ``bus_dead_letters`` is a :class:`MemoryDeadLetters` unless the
    subclass overrides it too.
    """

    @pytest.fixture
    def retry_policy(self) -> RetryPolicy:
        """
        Two quick retries, so a failing group is dead-lettered soon.
        """
        return RetryPolicy(max_retries=2, first_backoff=0.01, jitter=0.5)

    @pytest.fixture
    def bus_dead_letters(self) -> IEventDeadLetters:
        """
        Where the bus under test puts group events that failed every retry.
        """
        return MemoryDeadLetters()

    @pytest.fixture
    def event_bus(self) -> IEventBus:
        """
        The bus under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'event_bus'"
        )

    def test_provides_interface(self, event_bus: IEventBus) -> None:
        """
        The bus provides IEventBus.
        """
        assert verifyObject(IEventBus, event_bus)

    @pytest_twisted.ensureDeferred
    async def test_key_listener_gets_events_of_its_keys_only(self, event_bus: IEventBus) -> None:
        """
        A listener registered under a key receives events dispatched to
        that key, and not those dispatched to other keys.
        """
        alice, bob = RecordingListener(), RecordingListener()
        await event_bus.register(alice, [ALICE])
        await event_bus.register(bob, [BOB])
        sent = change()
        await event_bus.dispatch(sent, [ALICE])
        await eventually(lambda: len(alice.received) == 1)
        await settle()
        assert [e.event_id for e in alice.received] == [sent.event_id]
        assert bob.received == []

    @pytest_twisted.ensureDeferred
    async def test_duplicate_registrations_collapse(self, event_bus: IEventBus) -> None:
        """
        One listener registered twice under a key, or matched by two keys
        of one event, receives the event once; it keeps receiving until
        every registration is cancelled; cancelling twice is harmless.
        """
        listener = RecordingListener()
        first = await event_bus.register(listener, [ALICE])
        second = await event_bus.register(listener, [ALICE, BOB])
        await event_bus.dispatch(change(), [ALICE, BOB])
        await eventually(lambda: len(listener.received) == 1)
        await settle()
        assert len(listener.received) == 1
        await first.cancel()
        await first.cancel()
        await event_bus.dispatch(change(), [ALICE])
        await eventually(lambda: len(listener.received) == 2)
        await second.cancel()
        await second.cancel()
        await event_bus.dispatch(change(), [ALICE, BOB])
        await settle()
        assert len(listener.received) == 2

    @pytest_twisted.ensureDeferred
    async def test_new_registration_sees_no_past_events(self, event_bus: IEventBus) -> None:
        """
        A listener registered after a dispatch does not receive that event.
        """
        await event_bus.dispatch(change(), [ALICE])
        await settle()
        late = RecordingListener()
        await event_bus.register(late, [ALICE])
        await settle()
        assert late.received == []

    @pytest_twisted.ensureDeferred
    async def test_failing_key_listener_is_isolated_and_not_retried(
        self, event_bus: IEventBus, bus_dead_letters: IEventDeadLetters
    ) -> None:
        """
        A key listener that fails does not stop delivery to the others, is
        not retried and leaves no dead letter.
        """
        failing, working = RecordingListener(failures=10), RecordingListener()
        await event_bus.register(failing, [ALICE])
        await event_bus.register(working, [ALICE])
        await event_bus.dispatch(change(), [ALICE])
        await eventually(lambda: len(working.received) == 1)
        await settle()
        assert failing.calls == 1
        assert await bus_dead_letters.groups() == []

    @pytest_twisted.ensureDeferred
    async def test_each_group_gets_each_event_once(self, event_bus: IEventBus) -> None:
        """
        Every registered group receives every event once, whatever its
        keys; a group name can be registered once.
        """
        one, two = RecordingListener(), RecordingListener()
        await event_bus.register_group(one, "one")
        await event_bus.register_group(two, "two")
        with pytest.raises(GroupAlreadyRegistered):
            await event_bus.register_group(RecordingListener(), "one")
        sent = [change(), change("bob")]
        for event in sent:
            await event_bus.dispatch(event, [])
        await eventually(lambda: len(one.received) == 2 and len(two.received) == 2)
        await settle()
        assert sorted(e.event_id for e in one.received) == sorted(e.event_id for e in sent)
        assert len(two.received) == 2

    @pytest_twisted.ensureDeferred
    async def test_listeners_can_decline_events(self, event_bus: IEventBus) -> None:
        """
        A listener whose is_handling says no does not receive the event.
        """
        picky = RecordingListener(accept=lambda e: getattr(e, "account_id", None) == "bob")
        await event_bus.register_group(picky, "picky")
        await event_bus.dispatch(change("alice"), [])
        await event_bus.dispatch(change("bob"), [])
        await eventually(lambda: len(picky.received) == 1)
        await settle()
        assert [getattr(e, "account_id", None) for e in picky.received] == ["bob"]

    @pytest_twisted.ensureDeferred
    async def test_failing_group_is_retried_then_dead_lettered(
        self,
        event_bus: IEventBus,
        bus_dead_letters: IEventDeadLetters,
        retry_policy: RetryPolicy,
    ) -> None:
        """
        A group listener that keeps failing is called 1 + max_retries
        times, then the event is in the dead letters; one that fails once
        succeeds on retry and leaves no dead letter.
        """
        broken, flaky = RecordingListener(failures=100), RecordingListener(failures=1)
        await event_bus.register_group(broken, "broken")
        await event_bus.register_group(flaky, "flaky")
        sent = change()
        await event_bus.dispatch(sent, [])
        await eventually(
            lambda: broken.calls == 1 + retry_policy.max_retries and len(flaky.received) == 1
        )
        for _ in range(300):
            if await bus_dead_letters.ids("broken"):
                break
            await settle(0.01)
        (insertion_id,) = await bus_dead_letters.ids("broken")
        dead = await bus_dead_letters.fetch("broken", insertion_id)
        assert dead is not None and dead.event_id == sent.event_id
        assert await bus_dead_letters.ids("flaky") == []

    @pytest_twisted.ensureDeferred
    async def test_redeliver_reaches_only_the_group(self, event_bus: IEventBus) -> None:
        """
        Redelivering an event reaches the named group only: not other
        groups, not key listeners.
        """
        target, other, keyed = RecordingListener(), RecordingListener(), RecordingListener()
        await event_bus.register_group(target, "target")
        await event_bus.register_group(other, "other")
        await event_bus.register(keyed, [ALICE])
        await event_bus.redeliver("target", change())
        await eventually(lambda: len(target.received) == 1)
        await settle()
        assert other.received == [] and keyed.received == []


class DeadLettersContract:
    """
    The tests every dead-letter store passes, collected by pytest in each
    subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``dead_letters`` that gives an empty store::

        from jmap_twisted.testing import DeadLettersContract

        class TestMyDeadLetters(DeadLettersContract):
            @pytest.fixture
            def dead_letters(self, tmp_path):
                return MyDeadLetters(tmp_path / "dead")
    """

    @pytest.fixture
    def dead_letters(self) -> IEventDeadLetters:
        """
        The store under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'dead_letters'"
        )

    @pytest_twisted.ensureDeferred
    async def test_dead_letters_contract(self, dead_letters: IEventDeadLetters) -> None:
        """
        Dead letters are stored per group, listed oldest first, fetched,
        marked for redelivery and removed idempotently.
        """
        assert verifyObject(IEventDeadLetters, dead_letters)
        first, second = change(), change("bob")
        a = await dead_letters.store("g1", first)
        b = await dead_letters.store("g1", second)
        c = await dead_letters.store("g2", first)
        assert await dead_letters.groups() == ["g1", "g2"]
        assert await dead_letters.ids("g1") == [a, b]
        fetched = await dead_letters.fetch("g1", b)
        assert fetched is not None and fetched.event_id == second.event_id
        assert getattr(fetched, "account_id", None) == "bob"
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
