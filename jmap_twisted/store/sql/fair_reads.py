# -*- test-case-name: tests.store.test_fair_reads -*-
"""
Read transactions shared fairly between accounts, with a time budget, and
stopped when nobody waits for them any more.

A read that one client can make expensive (an ``Email/query`` of header
conditions over a large mailbox) must not hold every reader thread, nor keep
running once its client went away:

- :class:`FairReads` runs at most ``capacity`` reads at once, of which at
  most ``share`` for one *owner* (the account read); waiting reads are
  started owner by owner, round-robin, so an owner with hundreds queued
  delays only itself.
- Each read gets a :class:`Work`: the thread running it asks
  :meth:`Work.should_stop` (SQLite from its progress handler, PostgreSQL
  between statements) and stops once the read was cancelled or its time
  budget is spent.
- Cancelling the Deferred of a read that has not started removes it from
  the queue: it never runs.  Cancelling one that runs marks its
  :class:`Work` as cancelled (and calls its ``interrupt``, if the backend
  set one); its thread stays counted as busy until it really returns.

Owners are accounts because the stores know the account of each read; a
user reading several accounts (delegation) has a share in each.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jmap_twisted.errors import DatabaseError, QueryTimeout

_T = TypeVar("_T")

_log = Logger()

#: Seconds between interrupts of a cancelled read that still runs.
INTERRUPT_AGAIN = 0.5

#: The default time budget of a read transaction, in seconds.
DEFAULT_READ_BUDGET = 20.0


class WorkCancelled(DatabaseError):
    """
    Raised in a database thread when the read it runs was cancelled; its
    Deferred has already failed with
    :class:`~twisted.internet.defer.CancelledError`, so nobody sees it.
    """


class Work:
    """
    What the thread running one read knows of it: whether it should stop.

    :param budget: seconds the read may run, counted from :meth:`begin`;
        ``None`` for no limit.
    :param monotonic: the clock of the budget, read in the database thread.
    :ivar cancelled: set (from the reactor thread) when nobody waits for
        the result any more.
    :ivar interrupt: set by the backend while a statement runs, to stop it
        from another thread (PostgreSQL's cancel request); called at most
        once, in a thread of the pool.
    """

    __slots__ = ("_monotonic", "budget", "cancelled", "deadline", "interrupt")

    def __init__(self, budget: float | None, monotonic: Callable[[], float]) -> None:
        self.budget = budget
        self._monotonic = monotonic
        self.deadline: float | None = None
        self.cancelled = False
        self.interrupt: Callable[[], object] | None = None

    def begin(self) -> None:
        """
        Start counting the budget (in the database thread, when the read
        starts: time spent waiting for a thread does not count).
        """
        if self.budget is not None:
            self.deadline = self._monotonic() + self.budget

    def remaining(self) -> float | None:
        """
        Seconds left of the budget (``None`` without one).
        """
        return None if self.deadline is None else self.deadline - self._monotonic()

    def expired(self) -> bool:
        """
        Whether the budget is spent.
        """
        return self.deadline is not None and self._monotonic() >= self.deadline

    def should_stop(self) -> bool:
        """
        Whether the read should stop now (cancelled, or out of time); cheap
        enough for SQLite's progress handler.
        """
        return self.cancelled or self.expired()

    def check(self) -> None:
        """
        Raise if the read should stop.

        :raises WorkCancelled: it was cancelled.
        :raises QueryTimeout: its budget is spent.
        """
        if self.cancelled:
            raise WorkCancelled("the read was cancelled")
        if self.expired():
            assert self.budget is not None
            raise QueryTimeout(self.budget)


class _Job(Generic[_T]):
    __slots__ = ("_queue", "again", "deferred", "fn", "owner", "running", "work")

    def __init__(self, queue: FairReads, owner: str, fn: Callable[[Work], _T], work: Work) -> None:
        self._queue = queue
        self.owner = owner
        self.fn = fn
        self.work = work
        self.running = False
        #: The next interrupt of a cancelled read still running.
        self.again: IDelayedCall | None = None
        self.deferred: Deferred[_T] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[_T]) -> None:
        self._queue._cancel(self)


class FairReads:
    """
    Reads run in ``pool``: at most ``capacity`` at once and ``share`` per
    owner, waiting owners served round-robin.

    :param reactor: where results are delivered.
    :param pool: the threads (started and stopped by its owner).
    :param capacity: reads running at once (the pool's size).
    :param share: reads of one owner running at once.
    :param budget: each read's time budget in seconds, or ``None``.
    :param monotonic: the budget's clock, read in the pool's threads.
    :param interrupter: where a running read's ``interrupt`` is called
        (another pool than ``pool``, whose threads may all be busy).
    :param clock: schedules the interrupt again, every
        :data:`INTERRUPT_AGAIN` seconds, for as long as a cancelled read
        runs: a statement sent just before the first interrupt would
        otherwise escape it and run to its budget (or forever without one).
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        pool: ThreadPool,
        capacity: int,
        share: int,
        budget: float | None = DEFAULT_READ_BUDGET,
        monotonic: Callable[[], float] = time.monotonic,
        interrupter: ThreadPool | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if capacity < 1 or share < 1:
            raise ValueError("capacity and share must be at least 1")
        self._reactor = reactor
        self._pool = pool
        self.capacity = capacity
        self.share = min(share, capacity)
        self.budget = budget
        self._monotonic = monotonic
        self._interrupter = interrupter
        self._clock = clock
        #: Waiting jobs per owner, owners in order of arrival.
        self._waiting: OrderedDict[str, deque[_Job[Any]]] = OrderedDict()
        self._running: dict[str, int] = {}
        self._busy = 0
        #: When each owner with work waiting or running last had a read
        #: started (a counter).
        self._served: dict[str, int] = {}
        self._turn = 0

    @property
    def busy(self) -> int:
        """
        Reads running in a thread now (cancelled ones included, until their
        thread returns).
        """
        return self._busy

    @property
    def waiting(self) -> int:
        """
        Reads waiting for a thread.
        """
        return sum(len(jobs) for jobs in self._waiting.values())

    def running_for(self, owner: str) -> int:
        """
        Reads of ``owner`` running now.
        """
        return self._running.get(owner, 0)

    def submit(self, owner: str, fn: Callable[[Work], _T]) -> Deferred[_T]:
        """
        Run ``fn(work)`` in a thread when ``owner``'s turn comes.

        :return: fires with ``fn``'s result or fails with its exception;
            cancelling it keeps a waiting read from starting and asks a
            running one to stop.
        """
        job: _Job[_T] = _Job(self, owner, fn, Work(self.budget, self._monotonic))
        self._waiting.setdefault(owner, deque()).append(job)
        self._dispatch()
        return job.deferred

    def _dispatch(self) -> None:
        while self._busy < self.capacity:
            job = self._next()
            if job is None:
                return
            self._start(job)

    def _next(self) -> _Job[Any] | None:
        """
        The first waiting job of the owner below its share served least
        recently (owners never served first, in order of arrival).
        """
        chosen: str | None = None
        for owner in self._waiting:
            if self._running.get(owner, 0) >= self.share:
                continue
            if chosen is None or self._served.get(owner, -1) < self._served.get(chosen, -1):
                chosen = owner
        if chosen is None:
            return None
        jobs = self._waiting[chosen]
        job = jobs.popleft()
        if not jobs:
            del self._waiting[chosen]
        return job

    def _start(self, job: _Job[Any]) -> None:
        self._turn += 1
        self._served[job.owner] = self._turn
        job.running = True
        self._busy += 1
        self._running[job.owner] = self._running.get(job.owner, 0) + 1

        def done(success: bool, result: object) -> None:
            self._reactor.callFromThread(self._finished, job, success, result)

        self._pool.callInThreadWithCallback(done, self._run, job)

    @staticmethod
    def _run(job: _Job[_T]) -> _T:
        job.work.begin()
        job.work.check()  # cancelled while the thread was being handed over
        return job.fn(job.work)

    def _finished(self, job: _Job[Any], success: bool, result: Any) -> None:
        job.running = False
        if job.again is not None and job.again.active():
            job.again.cancel()
        job.again = None
        self._busy -= 1
        left = self._running[job.owner] - 1
        if left:
            self._running[job.owner] = left
        else:
            del self._running[job.owner]
            if job.owner not in self._waiting:
                del self._served[job.owner]  # forgotten: the table stays small
        if not job.deferred.called:
            if success:
                job.deferred.callback(result)
            else:
                job.deferred.errback(result if isinstance(result, Failure) else Failure(result))
        elif not success and not job.work.cancelled:  # pragma: no cover - defensive
            _log.failure("A read failed after its result was given", result)
        self._dispatch()

    def _cancel(self, job: _Job[Any]) -> None:
        if not job.running:
            jobs = self._waiting.get(job.owner)
            if jobs is not None and job in jobs:
                jobs.remove(job)
                if not jobs:
                    del self._waiting[job.owner]
                    if job.owner not in self._running:
                        self._served.pop(job.owner, None)
            return
        job.work.cancelled = True
        self._interrupt(job)

    def _interrupt(self, job: _Job[Any]) -> None:
        job.again = None
        if not job.running:
            return
        interrupt = job.work.interrupt
        if interrupt is not None and self._interrupter is not None:
            self._interrupter.callInThread(_quietly, interrupt)
        if self._clock is not None:
            job.again = self._clock.callLater(INTERRUPT_AGAIN, self._interrupt, job)


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        _log.failure("Could not interrupt a cancelled read")
