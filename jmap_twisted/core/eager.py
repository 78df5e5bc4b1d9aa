"""
Running a coroutine eagerly: up to its first real wait, on the spot.

:func:`Deferred.fromCoroutine` always builds Twisted's coroutine driver
(a Deferred, a status object, a context copy, callbacks), even for a
coroutine that never waits: most JMAP requests over a WebSocket
(``Core/echo``, anything answered from memory) finish in their first step.
:func:`start` runs that first step directly; only a coroutine that waits on
a Deferred is handed to Twisted's driver, which then resumes it exactly as
if it had driven it from the start.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

T = TypeVar("T")


def start(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    """
    Run ``coroutine`` until it finishes or waits; its outcome as a
    Deferred (already fired when it finished at once).
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as stop:
        return succeed(stop.value)
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(_rest(coroutine, waiting_on))


def detach(coroutine: Coroutine[Any, Any, object]) -> Deferred[Any] | None:
    """
    Run ``coroutine``, whose result nobody needs, as :func:`start` does;
    ``None`` when it finished at once without an error (no Deferred is
    made for it), else the Deferred of its outcome.
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(_rest(coroutine, waiting_on))


async def _rest(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    return await _Resume(coroutine, waiting_on)


class _Resume:
    """
    Hands what a started coroutine waits on to the driver, and everything
    the driver sends or throws back to the coroutine (the delegation
    ``await`` itself performs).
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:
                try:
                    waiting_on = coroutine.throw(error)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                waiting_on = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value
