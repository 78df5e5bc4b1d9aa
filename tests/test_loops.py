"""
Server-wide loops keep running through any exception.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from jmap_twisted.loops import SupervisedLoop


class _Flaky:
    def __init__(self, fail_on: set[int], exception: type[BaseException] = ValueError) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.exception = exception

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.exception("boom")


def test_a_round_that_raises_does_not_stop_the_loop() -> None:
    """
    Rounds keep coming after one that raised; the failure is counted.
    """
    clock = Clock()
    rounds = _Flaky({1, 3})
    loop = SupervisedLoop(rounds, clock, 1.0, "test loop")
    loop.start(now=True)
    clock.pump([1.0] * 5)
    assert rounds.calls == 6
    assert loop.failures == 2
    assert loop.restarts == 0
    loop.stop()
    clock.pump([1.0] * 3)
    assert rounds.calls == 6


def test_a_synchronous_round_and_a_failed_deferred_are_survived() -> None:
    """
    A round may be a plain function that raises or returns a failed
    Deferred.
    """
    clock = Clock()
    calls: list[int] = []

    def round_() -> Deferred[None] | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("sync")
        if len(calls) == 2:
            return fail(RuntimeError("async"))
        return None

    loop = SupervisedLoop(round_, clock, 2.0, "test loop")
    loop.start(now=True)
    clock.pump([2.0] * 3)
    assert len(calls) == 4
    assert loop.failures == 2


def test_a_loop_that_ends_anyway_is_started_again() -> None:
    """
    Even an exception the rounds do not catch (one that is not an
    ``Exception``) only pauses the loop for one interval.
    """
    clock = Clock()
    rounds = _Flaky({2}, exception=SystemExit)
    loop = SupervisedLoop(rounds, clock, 1.0, "test loop")
    loop.start(now=True)
    clock.pump([1.0] * 5)
    assert loop.restarts == 1
    assert rounds.calls >= 5
    loop.stop()
    assert not loop.running
    calls = rounds.calls
    clock.pump([1.0] * 3)
    assert rounds.calls == calls
