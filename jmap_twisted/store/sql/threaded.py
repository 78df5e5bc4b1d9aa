"""
What every database that runs transactions in threads shares: its life
cycle (``stopped`` → ``starting`` → ``running`` → ``stopping``), the work in
flight that :meth:`ThreadedDatabase.stop` waits for, and closing at reactor
shutdown.

:class:`~jmap_twisted.store.sqlite.database.SQLiteDatabase` and
:class:`~jmap_twisted.store.postgres.database.PostgresDatabase` subclass
:class:`ThreadedDatabase`; the server's database service owns either
through the same ``start``/``stop``/``run``/``read``/``read_for`` methods.

Reads come in two kinds.  ``read_for(owner, …)`` is a read of one
account's data, which a client can make expensive: it goes through a
:class:`~jmap_twisted.store.sql.fair_reads.FairReads` queue (a share of the
reader threads per account, a time budget, cancellation).  ``read(…)`` is
the server's own short reads (the directory: password hashes, tokens,
accounts), run on threads reserved for them, so that logging in never
waits behind anybody's queries.

Whoever runs the database may set :attr:`ThreadedDatabase.observe` to be
told how long each transaction took, from its submission to its result
(waiting for a thread included): ``observe("write", seconds)`` for
``run``, ``observe("read", seconds)`` for ``read`` and ``read_for``.

Writes (``run``, and ``run_for`` for one account's data) go through
:mod:`~jmap_twisted.store.sql.group_commit`: those that arrive while a
write transaction is in flight share the next one, each in a savepoint of
its own.  :attr:`ThreadedDatabase.commits` counts the write transactions
committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jmap_twisted.errors import DatabaseError
from jmap_twisted.store.sql.group_commit import (
    DEFAULT_GROUP_LIMIT,
    GroupOutcome,
    Write,
    WriteLanes,
)

if TYPE_CHECKING:
    from jmap_twisted.store.sql.fair_reads import FairReads, Work

_T = TypeVar("_T")

_log = Logger()


class DatabaseNotRunningError(DatabaseError):
    """
    Work was submitted to a database that is not started, or is stopping.
    """


_hints = threading.local()


def frees_space() -> None:
    """
    Say, from a database thread, that the write transaction running there
    only removes data: if the disk is full, it may use the space kept in
    reserve (a database without a reserve ignores this).
    """
    _hints.frees_space = True


def clear_hints() -> bool:
    """
    Forget the current thread's :func:`frees_space`; whether it was given.
    """
    given = bool(getattr(_hints, "frees_space", False))
    _hints.frees_space = False
    return given


class SchemaVersionError(DatabaseError):
    """
    The database was written by a newer version of jmap-twisted: its schema
    has more migrations applied than this version knows.

    :ivar path: the database (a file name, or a DSN without its password).
    :ivar found: the database's schema version.
    :ivar supported: the newest schema version this version knows.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"{path} has schema version {found}, newer than version {supported} "
            f"known to this jmap-twisted; upgrade jmap-twisted to use it"
        )
        self.path = path
        self.found = found
        self.supported = supported


class ThreadedDatabase:
    """
    The life cycle of a database used from thread pools.

    Subclasses say which pools they need (:meth:`_make_pools`), how to open
    the database in the first pool's thread (:meth:`_open`, returning the
    migrations it applied) and how to close their connections
    (:meth:`_close`), and submit work with :meth:`_submit`.

    :param reactor: where results are delivered; if it also provides
        :class:`~twisted.internet.interfaces.IReactorCore`, a database still
        running when the reactor shuts down is closed then.
    :param migrations: the schema scripts, one per version.

    :ivar observe: called, in the reactor's thread, with a transaction's
        kind (``read`` or ``write``) and the seconds it took once it is
        over (failed ones too); ``None``: not timed.
    :ivar commits: write transactions committed since the database was
        made (a group of writes committed together counts once).
    :ivar group_limit: the most writes one transaction holds.
    """

    observe: Callable[[str, float], None] | None = None
    group_limit = DEFAULT_GROUP_LIMIT

    def __init__(self, reactor: IReactorFromThreads, migrations: Sequence[str]) -> None:
        self._reactor = reactor
        self._migrations = tuple(migrations)
        self._state = "stopped"
        self._pools: list[ThreadPool] = []
        self._in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._stop_waiters: list[Deferred[None]] = []
        self._shutdown_trigger: Any = None
        self._lanes: WriteLanes | None = None
        self.commits = 0

    @property
    def schema_version(self) -> int:
        """
        The schema version this code brings a database to.
        """
        return len(self._migrations)

    @property
    def description(self) -> str:
        """
        How log lines and errors name the database (never with a password).
        """
        raise NotImplementedError

    def _make_pools(self) -> list[ThreadPool]:
        """
        The thread pools to start; the first one opens the database.
        """
        raise NotImplementedError

    def _open(self) -> list[int]:
        """
        Open the database and apply pending migrations, in a thread of the
        first pool; return the versions applied.
        """
        raise NotImplementedError

    def _close(self) -> None:
        """
        Close every connection, after the pools' threads have stopped.
        """
        raise NotImplementedError

    def _write_pool(self) -> ThreadPool | None:
        """
        The pool whose threads run write transactions.
        """
        raise NotImplementedError

    def _write_lanes(self) -> int:
        """
        How many write transactions may be in flight at once.
        """
        return 1

    def _write_group(self, writes: Sequence[Write]) -> GroupOutcome:
        """
        Run ``writes`` in a thread of :meth:`_write_pool` (one transaction
        with a savepoint each when there are several; see
        :mod:`~jmap_twisted.store.sql.group_commit`).
        """
        raise NotImplementedError

    def start(self) -> Deferred[None]:
        """
        Open the database and bring its schema up to date.

        :return: fires with ``None`` when ``run`` and ``read`` may be used;
            fails with :class:`SchemaVersionError` if the database is newer
            than this code, or with the error that prevented opening it.  On
            failure every thread and connection is released again.
        """
        if self._state != "stopped":
            return fail(DatabaseError(f"cannot start {self.description}: it is {self._state}"))
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._state = "starting"
        self._pools = self._make_pools()
        self._lanes = WriteLanes(
            self._write_lanes(), self._run_group, self._count_commits, self.group_limit
        )
        for pool in self._pools:
            pool.start()
        core = IReactorCore(self._reactor, None)
        if core is not None:
            self._shutdown_trigger = core.addSystemEventTrigger(
                "during", "shutdown", self._stop_at_shutdown
            )
        try:
            applied = await deferToThreadPool(self._reactor, self._pools[0], self._open)
        except BaseException:
            self._release()
            raise
        for version in applied:
            _log.info(
                "Applied schema migration {version} to {path}",
                version=version,
                path=self.description,
            )
        self._state = "running"
        _log.info(
            "Opened {path} at schema version {version}",
            path=self.description,
            version=self.schema_version,
        )

    def stop(self) -> Deferred[None]:
        """
        Close the database once the work already submitted has finished.

        Work submitted after this call fails with
        :class:`DatabaseNotRunningError`.  Calling it again, or on a stopped
        database, is harmless.

        :return: fires with ``None`` when every thread and connection is
            released.
        """
        if self._state == "stopped":
            return succeed(None)
        if self._state == "starting":
            return fail(DatabaseError(f"cannot stop {self.description} while it is starting"))
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        if self._state == "running":
            self._state = "stopping"
            Deferred.fromCoroutine(self._stop())
        return waiter

    async def _stop(self) -> None:
        if self._in_flight:
            idle: Deferred[None] = Deferred()
            self._idle_waiters.append(idle)
            await idle
        self._release()

    def _stop_at_shutdown(self) -> None:
        """
        Release everything while the reactor shuts down, if nobody stopped
        the database before.

        This runs in the ``during`` phase, after every ``before`` trigger
        (such as ``stopService``) has finished using the database.  Joining
        the threads blocks, as Twisted's own thread pool does at shutdown:
        work already submitted still runs and commits first.
        """
        self._shutdown_trigger = None
        if self._state != "stopped":
            self._release()

    def _release(self) -> None:
        """
        Join the threads and close every connection; the state becomes
        ``stopped`` and whoever waits in :meth:`stop` is told.
        """
        pools, self._pools = self._pools, []
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            # Writes still waiting for their lane (the reactor is shutting
            # down and will not start their groups): run them all the same.
            self._flush(lanes)
        for pool in pools:
            pool.stop()  # runs what was submitted, then joins
        self._close()
        if self._shutdown_trigger is not None:
            IReactorCore(self._reactor).removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._state = "stopped"
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _submit(
        self, pool: ThreadPool | None, work: Callable[[], _T], kind: str = "read"
    ) -> Deferred[_T]:
        """
        Run ``work`` in a thread of ``pool``, counted as in flight until it
        finishes, and timed as a transaction of ``kind``.
        """
        if self._state != "running" or pool is None:
            return fail(DatabaseNotRunningError(f"{self.description} is {self._state}"))
        self._in_flight += 1
        result = deferToThreadPool(self._reactor, pool, work)
        result.addBoth(self._work_done)
        return self._timed(result, kind)

    def _submit_write(
        self, key: str | None, fn: Callable[..., _T], args: tuple[Any, ...]
    ) -> Deferred[_T]:
        """
        Queue the write ``fn(connection, *args)`` of ``key``'s data (see
        :mod:`~jmap_twisted.store.sql.group_commit`), counted as in flight
        until its commit, and timed as a ``write``.
        """
        lanes = self._lanes
        if self._state != "running" or lanes is None:
            return fail(DatabaseNotRunningError(f"{self.description} is {self._state}"))
        self._in_flight += 1
        write = Write(fn, args, key)
        result: Deferred[_T] = write.done
        result.addBoth(self._work_done)
        timed = self._timed(result, "write")
        lanes.add(write)
        return timed

    def _run_group(self, writes: Sequence[Write]) -> Deferred[GroupOutcome]:
        pool = self._write_pool()
        if pool is None:  # pragma: no cover - the pools outlive every write
            return fail(DatabaseNotRunningError(f"{self.description} is {self._state}"))
        return deferToThreadPool(self._reactor, pool, self._write_group, writes)

    def _count_commits(self, commits: int) -> None:
        self.commits += commits

    def _flush(self, lanes: WriteLanes) -> None:
        """
        Run the writes still waiting in ``lanes`` in the write threads, each
        lane's groups one after the other, before the pools stop.
        """
        pool = self._write_pool()
        if pool is None:  # pragma: no cover - the pools outlive every write
            return
        for groups in lanes.take_all():
            if groups:
                pool.callInThread(self._run_groups, groups)

    def _run_groups(self, groups: list[list[Write]]) -> None:
        for group in groups:
            outcome = self._write_group(group)
            self._reactor.callFromThread(self._count_commits, outcome.commits)
            for write, result in zip(group, outcome.results, strict=True):
                self._reactor.callFromThread(_deliver, write.done, result)

    def _submit_fair(
        self, reads: FairReads | None, owner: str, work: Callable[[Work], _T]
    ) -> Deferred[_T]:
        """
        Run ``work`` in ``owner``'s turn of ``reads``, counted as in flight
        until it finishes or is cancelled (a cancelled read still running
        is waited for when the pools are stopped).
        """
        if self._state != "running" or reads is None:
            return fail(DatabaseNotRunningError(f"{self.description} is {self._state}"))
        self._in_flight += 1
        result = reads.submit(owner, work)
        result.addBoth(self._work_done)
        return self._timed(result, "read")

    def _timed(self, result: Deferred[_T], kind: str) -> Deferred[_T]:
        """
        Tell :attr:`observe`, if set, how long ``result`` took to fire.
        """
        observe = self.observe
        if observe is None:
            return result
        started = time.monotonic()

        def done(outcome: _T) -> _T:
            observe(kind, time.monotonic() - started)
            return outcome

        return result.addBoth(done)

    def _work_done(self, result: _T) -> _T:
        self._in_flight -= 1
        if not self._in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result


def _deliver(done: Deferred[Any], result: Any) -> None:
    if isinstance(result, Failure):
        done.errback(result)
    else:
        done.callback(result)
