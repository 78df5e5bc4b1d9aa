# -*- test-case-name: tests.ws.test_liveness -*-
"""
Keeping WebSockets alive and finding dead peers (RFC 6455 §5.5.2–5.5.3):
one timer for all the sockets of a factory instead of two per socket.

The sockets are spread over the slots of a wheel that turns once per ping
interval, one slot per tick (a second), so a server holding many idle
sockets sends a steady trickle of pings rather than all of them at once;
each tick's pings go out in small batches, between which the reactor
serves everything else.  A ping is a prebuilt frame; the wheel keeps no
object of its own per socket, only three attributes on the socket
(:class:`Watched`).  A socket that has sent nothing (no pong, no other
frame) within the ping timeout after its ping is told so, and closes
itself: a peer that stops answering is gone within one interval plus the
timeout.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: The longest tick of a wheel, in seconds.  Pings sent together cost
#: less than the same pings spread thinner (the peers and the poller wake
#: once for many), so a tick is not made shorter than it needs to be.
LONGEST_TICK = 1.0
#: Pings sent before the reactor is let do anything else: what a push
#: arriving during a tick's pings may wait for (a fraction of a
#: millisecond).
PINGS_AT_ONCE = 16
#: A ping frame without payload, as a server sends it (unmasked, RFC 6455
#: §5.5.2).
PING_FRAME = b"\x89\x00"
#: The answer a client sends to it: a pong without payload, masked with
#: any key (RFC 6455 §5.5.3, §5.3).
PONG_FRAME_LENGTH = 6
PONG_FRAME_START = b"\x8a\x80"


class Watched(Protocol):
    """
    A socket a :class:`LivenessWheel` watches: what the wheel keeps on it
    (class attributes with these defaults), and what it calls.

    The socket sets :attr:`liveness_heard` whenever anything arrives from
    its peer.
    """

    #: Whether anything came from the peer since the last ping.
    liveness_heard: bool = True
    #: Whether a ping awaits its answer (its check is due).
    liveness_awaiting: bool = False
    #: The slot of the wheel the socket is in, ``-1`` while not watched.
    liveness_slot: int = -1

    def send_ping(self) -> None:
        """
        Send a ping to the peer (:data:`PING_FRAME`).
        """

    def ping_unanswered(self) -> None:
        """
        Nothing came from the peer within the timeout after a ping: close.
        """


class LivenessWheel:
    """
    Pings every watched socket once per ``interval`` and tells those that
    send nothing back within ``timeout`` (:meth:`Watched.ping_unanswered`).

    The wheel runs while it watches a socket and stops when the last one
    is forgotten, so it leaves no timer behind.  What one socket raises is
    logged and the others are still served.

    :param clock: schedules the ticks.
    :param interval: seconds between two pings of a socket; ``0`` watches
        nothing.
    :param timeout: seconds a socket has to answer a ping.  With a tick
        that does not divide it, the wait is rounded down to whole ticks
        (at least one), never up.
    :param longest_tick: the longest tick; the interval is cut into as
        few slots as make ticks no longer.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float,
        timeout: float,
        longest_tick: float = LONGEST_TICK,
    ) -> None:
        self._clock = clock
        self.interval = interval
        self.timeout = timeout
        slots = max(1, -int(-interval // longest_tick)) if interval > 0 else 1
        #: Seconds between two ticks.
        self.tick = interval / slots if interval > 0 else longest_tick
        self._slots: list[set[Watched]] = [set() for _ in range(slots)]
        #: Ticks between a ping and its check.
        self._wait = max(1, int(timeout / self.tick + 1e-9))
        #: Sockets whose check is due at tick ``t``, at ``t % len(_due)``.
        self._due: list[list[Watched]] = [[] for _ in range(self._wait + 1)]
        self._next_slot = 0
        self._now = 0
        self._loop: LoopingCall | None = None
        #: Sockets to ping, each list with the list of those whose check
        #: is due at the same tick.
        self._to_ping: deque[tuple[list[Watched], list[Watched]]] = deque()
        #: The next batch of pings, while some are left.
        self._batch: IDelayedCall | None = None
        #: How many sockets are watched.
        self.watched = 0

    @property
    def running(self) -> bool:
        """
        Whether the wheel turns (it watches at least one socket).
        """
        return self._loop is not None

    def watch(self, socket: Watched) -> None:
        """
        Ping ``socket`` from now on, first within one interval.
        """
        if self.interval <= 0 or socket.liveness_slot >= 0:
            return
        slot = self._next_slot
        self._next_slot = (slot + 1) % len(self._slots)
        socket.liveness_slot = slot
        socket.liveness_heard = True
        socket.liveness_awaiting = False
        self._slots[slot].add(socket)
        self.watched += 1
        if self._loop is None:
            self._start()

    def forget(self, socket: Watched) -> None:
        """
        Stop watching ``socket`` (it closed).
        """
        slot = socket.liveness_slot
        if slot < 0:
            return
        socket.liveness_slot = -1
        self._slots[slot].discard(socket)
        self.watched -= 1
        if not self.watched:
            self._stop()

    def _start(self) -> None:
        loop = LoopingCall.withCount(self._advance)
        loop.clock = self._clock
        self._loop = loop
        loop.start(self.tick, now=False).addErrback(self._ended, loop)

    def _stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        batch, self._batch = self._batch, None
        if batch is not None and batch.active():
            batch.cancel()
        self._to_ping.clear()
        for index in range(len(self._due)):
            self._due[index] = []

    def _ended(self, failure: Failure, loop: LoopingCall) -> None:
        # _advance catches everything; should the loop end anyway, start
        # another so the sockets stay watched.
        log.failure("The WebSocket liveness wheel stopped; starting it again", failure)
        if loop is self._loop:
            self._loop = None
            if self.watched:
                self._start()

    def _advance(self, ticks: int) -> None:
        """
        Turn the wheel by ``ticks`` (more than one when the reactor was
        busy): check the sockets whose wait is over, then ping the slots
        passed, each at most once, in batches.
        """
        try:
            start, self._now = self._now, self._now + ticks
            due = self._due
            for moment in range(max(start + 1, self._now - len(due) + 1), self._now + 1):
                index = moment % len(due)
                waited, due[index] = due[index], []
                self._check(waited)
            slots = self._slots
            sockets: list[Watched] = []
            for moment in range(max(start + 1, self._now - len(slots) + 1), self._now + 1):
                sockets.extend(slots[moment % len(slots)])
            if sockets:
                self._to_ping.append((sockets, due[(self._now + self._wait) % len(due)]))
                if self._batch is None:
                    self._ping_batch()
        except Exception:
            log.failure("A tick of the WebSocket liveness wheel failed")

    def _ping_batch(self) -> None:
        """
        Send :data:`PINGS_AT_ONCE` of the pings left, and the next batch
        once the reactor has served what else waits.
        """
        self._batch = None
        left = PINGS_AT_ONCE
        try:
            while left and self._to_ping:
                sockets, awaiting = self._to_ping[0]
                batch = sockets[-left:]
                del sockets[-left:]
                if not sockets:
                    self._to_ping.popleft()
                left -= len(batch)
                for socket in batch:
                    try:
                        if not socket.liveness_awaiting:
                            socket.liveness_heard = False
                            socket.liveness_awaiting = True
                            awaiting.append(socket)
                        socket.send_ping()
                    except Exception:
                        log.failure("Pinging a WebSocket failed")
        finally:
            if self._to_ping and self._loop is not None:
                self._batch = self._clock.callLater(0, self._ping_batch)

    def _check(self, waited: list[Watched]) -> None:
        for socket in waited:
            try:
                socket.liveness_awaiting = False
                if socket.liveness_slot >= 0 and not socket.liveness_heard:
                    self.forget(socket)
                    socket.ping_unanswered()
            except Exception:
                log.failure("Closing an unanswering WebSocket failed")
