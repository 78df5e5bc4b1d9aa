# -*- test-case-name: tests.test_loops -*-
"""
Server-wide loops that run for as long as the server does, whatever one
round of them raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class SupervisedLoop:
    """
    Calls ``function`` every ``interval`` seconds until stopped.

    A round that raises (or whose Deferred fails) is logged and the loop
    goes on with the next round: one bad connection, one failed query or
    one exception in logging never stops a loop that the whole server
    relies on (the access watch that closes revoked sockets, dead-letter
    redelivery, change-log pruning).  Should the underlying
    :class:`~twisted.internet.task.LoopingCall` end anyway, the loop is
    started again after ``interval``.

    :param function: one round; may return an awaitable.
    :param clock: schedules the rounds.
    :param name: what the loop does, for the log.
    """

    def __init__(
        self,
        function: Callable[[], Awaitable[object] | object],
        clock: IReactorTime,
        interval: float,
        name: str,
    ) -> None:
        self._function = function
        self._clock = clock
        self._interval = interval
        self.name = name
        self._loop: LoopingCall | None = None
        self._running = False
        self._restart: IDelayedCall | None = None
        #: Rounds that raised, since the loop was made.
        self.failures = 0
        #: Times the loop had to be started again.
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._running

    async def _round(self) -> None:
        try:
            result = self._function()
            if isinstance(result, Awaitable):
                await ensureDeferred(result)  # type: ignore[arg-type]
        except Exception:
            self.failures += 1
            log.failure("One round of {loop} failed; the loop goes on", loop=self.name)

    def _call(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._round())

    def start(self, now: bool = True) -> None:
        """
        Begin; the first round runs at once when ``now``.
        """
        self._running = True
        self._begin(now)

    def _begin(self, now: bool) -> None:
        self._restart = None
        loop = LoopingCall(self._call)
        loop.clock = self._clock
        self._loop = loop
        loop.start(self._interval, now=now).addErrback(self._ended, loop)

    def _ended(self, failure: Failure, loop: LoopingCall) -> None:
        if not self._running or loop is not self._loop:
            return
        self.restarts += 1
        log.failure("{loop} stopped; starting it again", failure, loop=self.name)
        self._restart = self._clock.callLater(self._interval, self._begin, True)

    def stop(self) -> None:
        """
        Stop; a round in progress finishes on its own.
        """
        self._running = False
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
