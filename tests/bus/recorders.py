"""
Listeners that record what they receive, for the bus tests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS
from jmap_twisted.interfaces import IEvent, IEventListener


@implementer(IEventListener)
class Recorder:
    """
    Records events; fails the first ``failures`` calls.
    """

    def __init__(self, failures: int = 0, mode: str = SYNCHRONOUS, accept: Any = None) -> None:
        self.received: list[IEvent] = []
        self.calls = 0
        self.failures = failures
        self.execution_mode = mode
        self._accept = accept

    def is_handling(self, event: IEvent) -> bool:
        return self._accept is None or self._accept(event)

    def handle(self, event: IEvent) -> Deferred[None]:
        self.calls += 1
        if self.calls <= self.failures:
            return fail(RuntimeError("listener failure for the test"))
        self.received.append(event)
        return succeed(None)


@implementer(IEventListener)
class Stalled:
    """
    A listener whose handling never finishes.
    """

    execution_mode = SYNCHRONOUS

    def __init__(self) -> None:
        self.pending: list[Deferred[None]] = []

    def is_handling(self, event: IEvent) -> bool:
        return True

    def handle(self, event: IEvent) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d
