"""
Eager coroutines: the first step on the spot, the rest as Twisted would.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred

from jmap_twisted.core.eager import detach, start


def outcome(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    return results[0]


def test_a_coroutine_that_never_waits_is_done_at_once() -> None:
    ran: list[str] = []

    async def quick() -> int:
        ran.append("ran")
        return 7

    d = start(quick())
    assert ran == ["ran"]  # before anything else happens
    assert outcome(d) == 7


def test_an_exception_in_the_first_step_fails_the_deferred() -> None:
    async def broken() -> None:
        raise ValueError("no")

    failure = outcome(start(broken()))
    assert failure.check(ValueError)


def test_waits_resume_with_results_and_failures() -> None:
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()
    seen: list[Any] = []

    async def waits() -> str:
        seen.append(await first)
        try:
            await second
        except KeyError as error:
            seen.append(repr(error))
        already: Deferred[int] = Deferred()
        already.callback(3)
        seen.append(await already)
        return "done"

    d = start(waits())
    assert not d.called
    first.callback(1)
    assert seen == [1] and not d.called
    second.errback(KeyError("k"))
    assert seen == [1, "KeyError('k')", 3]
    assert outcome(d) == "done"


def test_cancelling_reaches_the_coroutine() -> None:
    waited: Deferred[int] = Deferred()
    cleaned: list[str] = []

    async def long() -> None:
        try:
            await waited
        except CancelledError:
            cleaned.append("cancelled")
            raise

    d = start(long())
    d.cancel()
    assert cleaned == ["cancelled"]
    assert outcome(d).check(CancelledError)


def test_a_failure_after_a_wait_fails_the_deferred() -> None:
    waited: Deferred[int] = Deferred()

    async def fails_later() -> None:
        await waited
        raise RuntimeError("later")

    d = start(fails_later())
    waited.callback(0)
    assert outcome(d).check(RuntimeError)


@pytest.mark.parametrize("value", [None, 0, "x"])
def test_results_pass_through(value: Any) -> None:
    async def gives() -> Any:
        return value

    assert outcome(start(gives())) == value


def test_detach_runs_to_the_end_at_once_or_hands_over_the_rest() -> None:
    """
    A detached coroutine that never waits has run when ``detach`` returns
    (and no Deferred is made); one that fails at once, or waits, gives its
    outcome as a Deferred.
    """
    ran: list[str] = []
    waiting: Deferred[str] = Deferred()

    async def quick() -> None:
        ran.append("quick")

    async def broken() -> None:
        raise ValueError("no")

    async def slow() -> str:
        ran.append(await waiting)
        return "done"

    assert detach(quick()) is None
    assert ran == ["quick"]
    failed = detach(broken())
    assert failed is not None and outcome(failed).check(ValueError)
    later = detach(slow())
    assert later is not None and not later.called
    waiting.callback("slow")
    assert ran == ["quick", "slow"]
    assert outcome(later) == "done"
