"""
Behaviour specific to the in-memory bus, on a fake clock.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from jmap_twisted.bus.deadletters import MemoryDeadLetters, redeliver_requested
from jmap_twisted.bus.events import ASYNCHRONOUS, AccountKey, StateChange
from jmap_twisted.bus.memory import InMemoryEventBus
from jmap_twisted.bus.retry import RetryPolicy
from tests.bus.recorders import Recorder, Stalled


def make(
    retry: RetryPolicy | None = None, timeout: float | None = None, random: float = 0.0
) -> tuple[InMemoryEventBus, MemoryDeadLetters, Clock]:
    clock = Clock()
    dead = MemoryDeadLetters()
    bus = InMemoryEventBus(clock, dead, retry or RetryPolicy(3, 1.0, 0.5), timeout, lambda: random)
    return bus, dead, clock


def test_backoff_doubles_with_jitter() -> None:
    """
    Retries wait first_backoff, then twice, then four times as long, each
    lengthened by the jitter fraction of the random draw; then the event
    is dead-lettered.
    """
    bus, dead, clock = make(random=0.5)
    broken = Recorder(failures=100)
    bus.register_group(broken, "g")
    bus.dispatch(StateChange("a", {}), [])
    assert broken.calls == 1
    for expected_calls, wait in ((2, 1.25), (3, 2.5), (4, 5.0)):
        clock.advance(wait - 0.01)
        assert broken.calls == expected_calls - 1
        clock.advance(0.01)
        assert broken.calls == expected_calls
    assert dead.ids("g").result != []
    clock.advance(100)
    assert broken.calls == 4


def test_dispatch_waits_for_synchronous_listeners_only() -> None:
    """
    The dispatch Deferred fires when synchronous listeners are done, and
    does not wait for asynchronous ones.
    """
    bus, _, _ = make()
    stalled = Stalled()
    bus.register(stalled, [AccountKey("a")])
    asynchronous = Stalled()
    asynchronous.execution_mode = ASYNCHRONOUS  # type: ignore[misc]
    bus.register(asynchronous, [AccountKey("a")])
    dispatched = bus.dispatch(StateChange("a", {}), [AccountKey("a")])
    assert not dispatched.called
    stalled.pending[0].callback(None)
    assert dispatched.called


def test_only_asynchronous_listeners_means_immediate() -> None:
    """
    With only asynchronous listeners, dispatch fires at once.
    """
    bus, _, _ = make()
    asynchronous = Stalled()
    asynchronous.execution_mode = ASYNCHRONOUS  # type: ignore[misc]
    bus.register_group(asynchronous, "g")
    assert bus.dispatch(StateChange("a", {}), []).called


def test_execution_timeout_counts_as_failure() -> None:
    """
    A group listener that takes longer than the execution timeout is
    treated as failed and retried.
    """
    bus, dead, clock = make(RetryPolicy(1, 1.0, 0.0), timeout=5.0)
    stalled = Stalled()
    bus.register_group(stalled, "g")
    bus.dispatch(StateChange("a", {}), [])
    clock.advance(5.0)
    assert stalled.pending[0].called
    clock.advance(1.0)
    assert len(stalled.pending) == 2
    clock.advance(5.0)
    assert len(dead.ids("g").result) == 1


def test_stop_dead_letters_pending_retries() -> None:
    """
    Stopping the bus abandons scheduled retries to the dead letters.
    """
    bus, dead, clock = make()
    bus.register_group(Recorder(failures=100), "g")
    bus.dispatch(StateChange("a", {}), [])
    bus.stop()
    assert len(dead.ids("g").result) == 1
    assert clock.getDelayedCalls() == []


def test_redelivery_of_requested_dead_letters() -> None:
    """
    Dead letters an operator marked are redelivered to their group and
    removed; a group with no listener on the bus keeps its letters, still
    marked.
    """
    bus, dead, _ = make(RetryPolicy(0, 1.0, 0.0))
    flaky = Recorder(failures=1)
    bus.register_group(flaky, "g")
    bus.dispatch(StateChange("a", {}), [])
    (letter,) = dead.ids("g").result
    dead.store("orphan", StateChange("b", {}))
    dead.request_redelivery("g", None)
    dead.request_redelivery("orphan", None)
    done: Deferred[int] = Deferred.fromCoroutine(redeliver_requested(bus, dead))
    assert done.result == 1
    assert len(flaky.received) == 1
    assert dead.ids("g").result == []
    assert len(dead.ids("orphan").result) == 1
    assert [g for g, _ in dead.requested().result] == ["orphan"]
    assert letter not in dead.ids("g").result


def test_one_listener_among_many_is_a_lookup() -> None:
    """
    With 10,000 other keys registered, an event reaches exactly the one
    listener of its key.
    """
    bus, _, _ = make()
    others = [Recorder() for _ in range(10_000)]
    for index, listener in enumerate(others):
        bus.register(listener, [AccountKey(f"user{index}")])
    target = Recorder()
    bus.register(target, [AccountKey("target")])
    bus.dispatch(StateChange("target", {}), [AccountKey("target")])
    assert len(target.received) == 1
    assert not any(listener.received for listener in others)


@pytest.mark.parametrize("text", ["account:x", "account:with:colons"])
def test_keys_round_trip(text: str) -> None:
    """
    A key's string form parses back to an equal key.
    """
    from jmap_twisted.bus.events import parse_key

    assert parse_key(text).as_string() == text


@pytest.mark.parametrize("text", ["", "account:", "nokind", "other:x"])
def test_bad_keys(text: str) -> None:
    """
    Strings that are not keys are refused.
    """
    from jmap_twisted.bus.events import parse_key

    with pytest.raises(ValueError):
        parse_key(text)
