"""
SQLite connections used off the reactor thread.

:class:`SQLiteDatabase` owns one database file and the threads that use it:

- one *writer* thread with one connection: every :meth:`SQLiteDatabase.run`
  runs in a ``BEGIN IMMEDIATE … COMMIT`` transaction there, so writes from
  this process are serialised and never fail with ``SQLITE_BUSY`` against
  each other.  Writes that arrive while a transaction is in flight share
  the next one, a savepoint each (group commit, see
  :mod:`~jmap_twisted.store.sql.group_commit`);
- a small pool of *reader* threads, one read-only connection each: every
  :meth:`SQLiteDatabase.read_for` sees one consistent snapshot (WAL readers
  do not block the writer, nor the writer them), so reads do not queue
  behind writes.  One account holds at most a share of them (half, by
  default), waiting accounts take turns, and each read has a time budget
  (see :mod:`~jmap_twisted.store.sql.fair_reads`): the progress handler of the
  connection stops a statement once the budget is spent or the read was
  cancelled;
- one *directory* reader thread for :meth:`SQLiteDatabase.read`, the
  server's own short reads (password hashes, tokens, accounts), which no
  account's queries can occupy.

Settings (WAL is recorded in the file, the others are set on each connection):

``journal_mode=WAL``
    readers and one writer proceed concurrently, also across processes (the
    ``jmap-admin`` command and a running server share the file).
``synchronous=FULL``
    the WAL is fsynced at every commit, so a transaction that has committed
    survives a power failure.  With ``NORMAL``, the last commits before a
    power loss may roll back (the database stays consistent): not acceptable
    once a mail server has answered ``250 OK`` for a message.  The price is
    one fsync per write transaction, paid by the writer thread, off the
    reactor thread: measured at 0.26 ms per small transaction against
    0.02 ms with ``NORMAL`` on a 2-core development VM (far more on a busy
    disk), and shared by the writes of a group.
``foreign_keys=ON``
    the schema relies on ``ON DELETE CASCADE``.
busy timeout (default 5 s)
    how long a transaction waits for another process's write lock.

A full disk: SQLite needs room in the WAL to commit anything, deletions
included, so a server whose disk filled up could not even destroy mail to
make room.  The database therefore keeps a *reserve* file beside it
(``jmap.sqlite3-reserve``, 8 MiB by default).  When a write fails with
``SQLITE_FULL`` and it only removes data (the mail store says so with
:func:`~jmap_twisted.store.sql.threaded.frees_space`), the reserve is
deleted, the WAL checkpointed into the database (the writer checkpoints
every 4 MiB at most, half the reserve, so what the WAL holds fits in the
room released) and the write tried once more; after each removal the WAL
is checkpointed again and restarted, so later removals reuse its room.
Any other write fails with
:class:`~jmap_twisted.store.sql.threaded.DiskFull`, which JMAP clients see
as ``serverUnavailable``.  The reserve is made again, after a write, once
the disk has room for it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, TypeVarTuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jmap_twisted.errors import DatabaseError, DiskFull
from jmap_twisted.store.sql.fair_reads import DEFAULT_READ_BUDGET, FairReads, Work
from jmap_twisted.store.sql.group_commit import GroupOutcome, Write
from jmap_twisted.store.sql.threaded import (
    DatabaseNotRunningError,
    SchemaVersionError,
    ThreadedDatabase,
    clear_hints,
)
from jmap_twisted.store.sqlite.schema import MIGRATIONS

__all__ = [
    "DATABASE_FILENAME",
    "DatabaseError",
    "DatabaseNotRunningError",
    "DiskFull",
    "SQLiteDatabase",
    "SchemaVersionError",
    "database_path",
    "split_statements",
]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

#: SQLite virtual machine steps between two looks at a read's budget and
#: cancellation (a header condition runs Python for each row, so a look
#: comes at least every few milliseconds).
PROGRESS_STEPS = 1000

#: Octets kept free for removals beside the database.
DEFAULT_RESERVE = 8 * 1024 * 1024

#: Seconds between two attempts to make the reserve again.
RESERVE_RETRY = 60.0

_SQLITE_FULL = 13
_PAGE_SIZE = 4096

_log = Logger()

DATABASE_FILENAME = "jmap.sqlite3"
"""
Name of the database file inside the data directory.
"""


def database_path(data_dir: str) -> str:
    """
    The database file of a data directory; the server and ``jmap-admin`` both
    use it, so they share one database.

    :param data_dir: the ``--data`` directory.
    """
    return os.path.join(data_dir, DATABASE_FILENAME)


def split_statements(script: str) -> list[str]:
    """
    Split an SQL script into its statements, so that they can run inside a
    transaction (:meth:`sqlite3.Connection.executescript` would commit).

    Semicolons inside literals, comments and ``CREATE TRIGGER`` bodies do
    not split, because a statement ends only where
    :func:`sqlite3.complete_statement` says it does.

    :param script: one or more SQL statements.
    :return: the statements; trailing text without a final ``;`` is kept as
        a last statement (SQLite ignores it if it is only a comment, and
        rejects it if it is incomplete).
    """
    statements: list[str] = []
    current = ""
    pieces = script.split(";")
    for piece in pieces[:-1]:
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip() != ";":
                statements.append(current.strip())
            current = ""
    current += pieces[-1]
    if current.strip():
        statements.append(current.strip())
    return statements


class SQLiteDatabase(ThreadedDatabase):
    """
    One SQLite database file, used from a writer thread and reader threads.

    :param path: the database file (not ``:memory:``: the reader
        connections must see the writer's data).  Its directory is created
        at :meth:`start` if needed, readable by its owner only, and a new
        database file is created readable by its owner only: it holds
        password hashes.
    :param reactor: where results are delivered; only
        :class:`~twisted.internet.interfaces.IReactorFromThreads` is needed.
        If it also provides
        :class:`~twisted.internet.interfaces.IReactorCore`, a database still
        running when the reactor shuts down is closed then, so its threads
        never keep the process alive; stop it explicitly (from
        ``stopService``) to close it cleanly before.
    :param migrations: the schema scripts, by default
        :data:`jmap_twisted.store.sqlite.schema.MIGRATIONS`.
    :param busy_timeout: seconds a transaction waits for another process's
        lock before failing with :class:`sqlite3.OperationalError`.
    :param readers: size of the reader pool.
    :param reader_share: readers one account may hold at once; by default
        half of them (at least one).
    :param read_budget: seconds one :meth:`read_for` may run before it is
        stopped with :class:`~jmap_twisted.store.sql.fair_reads.QueryTimeout`;
        ``None`` for no limit.
    :param monotonic: the clock of the budget, read in the reader threads.
    :param reserve: octets kept in ``<path>-reserve`` for removals once the
        disk is full; 0 keeps none.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        *,
        migrations: Sequence[str] = MIGRATIONS,
        busy_timeout: float = 5.0,
        readers: int = 2,
        reader_share: int | None = None,
        read_budget: float | None = DEFAULT_READ_BUDGET,
        monotonic: Callable[[], float] = time.monotonic,
        reserve: int = DEFAULT_RESERVE,
    ) -> None:
        super().__init__(reactor, migrations)
        self.path = path
        self.reserve_path = path + "-reserve"
        self._reserve = reserve
        self._reserve_tried: float | None = None
        self._busy_timeout = busy_timeout
        self._reader_count = readers
        self._reader_share = reader_share or max(1, readers // 2)
        self._read_budget = read_budget
        self._monotonic = monotonic
        self._writer: ThreadPool | None = None
        self._readers: ThreadPool | None = None
        self._directory_reader: ThreadPool | None = None
        self.reads: FairReads | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()

    @property
    def description(self) -> str:
        return self.path

    def start(self) -> Deferred[None]:
        """
        Open the database and bring its schema up to date.

        Pending migrations are applied one by one, each in its own
        transaction together with its ``user_version`` bump, so an
        interrupted upgrade resumes where it stopped.  Applying is
        idempotent: a second process starting at the same time waits for
        the write lock and then finds nothing left to do.

        :return: fires with ``None`` when :meth:`run` and :meth:`read` may be
            used; fails with :class:`SchemaVersionError` if the database is newer
            than this code, or with the :class:`OSError` /
            :class:`sqlite3.Error` that prevented opening it.  On failure
            every thread and connection is released again.
        """
        return super().start()

    def _make_pools(self) -> list[ThreadPool]:
        self._local = threading.local()
        self._writer = ThreadPool(1, 1, name="jmap-sqlite-writer")
        self._readers = ThreadPool(1, self._reader_count, name="jmap-sqlite-reader")
        self._directory_reader = ThreadPool(1, 1, name="jmap-sqlite-directory")
        self.reads = FairReads(
            self._reactor,
            self._readers,
            self._reader_count,
            self._reader_share,
            self._read_budget,
            self._monotonic,
        )
        return [self._writer, self._readers, self._directory_reader]

    def _close(self) -> None:
        self._writer = self._readers = self._directory_reader = None
        self.reads = None
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def run(self, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)`` in a write transaction on the writer
        thread.

        The transaction is ``BEGIN IMMEDIATE`` (it holds the write lock from
        the start, so it cannot fail half-way for lack of it) and commits
        once ``fn`` returned.  Writes submitted while another transaction
        is in flight share the next one (group commit, see
        :mod:`~jmap_twisted.store.sql.group_commit`), each inside a
        savepoint: if ``fn`` raises, its own changes are rolled back and
        the exception fails the returned Deferred; the other writes of the
        transaction are not affected.

        :param fn: runs on the writer thread; must not touch reactor APIs,
            nor keep ``connection`` beyond the call.  It may run a second
            time (alone) if the transaction it shared could not commit, so
            it must not have effects outside the transaction.
        :return: fires with ``fn``'s result after the commit holding it is
            durable.
        """
        return self._submit_write(None, fn, args)

    def run_for(
        self, owner: str, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts
    ) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)``, a write of ``owner``'s data, as
        :meth:`run` does (SQLite has one writer: every owner shares it).
        """
        return self._submit_write(owner, fn, args)

    def read(self, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)`` in one read transaction on the
        directory reader thread: for the server's own short reads, which
        must not wait behind an account's queries.

        ``fn`` sees a snapshot including every transaction committed before
        it started, by any process; its connection is read-only
        (``PRAGMA query_only``), so an attempt to write fails.

        :param fn: runs on a reader thread, under the same rules as for
            :meth:`run`.
        :return: fires with ``fn``'s result, or fails with its exception.
        """
        return self._submit(self._directory_reader, lambda: self._read_transaction(fn, args))

    def read_for(
        self, owner: str, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts
    ) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)`` in one read transaction on a reader
        thread, in ``owner``'s turn, as :meth:`read` does otherwise.

        :param owner: whose read it is (an account id): one owner holds at
            most its share of the readers.
        :return: fires with ``fn``'s result, or fails with its exception;
            fails with :class:`~jmap_twisted.store.sql.fair_reads.QueryTimeout`
            once the read's budget is spent.  Cancelling it before it
            starts keeps it from running; cancelling it while it runs stops
            its statement.
        """
        return self._submit_fair(
            self.reads, owner, lambda work: self._read_transaction(fn, args, work)
        )

    def _write_pool(self) -> ThreadPool | None:
        return self._writer

    # Everything below runs in the database's threads.

    def _connection(self, *, read_only: bool) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # used by one thread, closed by the reactor's
            )
            with self._connections_lock:
                self._connections.append(connection)
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = FULL")
            if read_only:
                connection.execute("PRAGMA query_only = ON")
            elif self._reserve:
                # What the WAL holds beyond the database must fit in the
                # reserve, to be copied in once the reserve is released.
                pages = min(1000, max(16, self._reserve // (2 * _PAGE_SIZE)))
                connection.execute(f"PRAGMA wal_autocheckpoint = {pages:d}")
            self._local.connection = connection
        return connection

    def _open(self) -> list[int]:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path):
            # SQLite gives the -wal and -shm files the database's mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        connection = self._connection(read_only=False)
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise DatabaseError(f"{self.path}: cannot use WAL journal mode (got {mode!r})")
        applied = self._migrate(connection)
        self._make_reserve()
        return applied

    def _make_reserve(self) -> None:
        """
        Make the reserve file if it is missing and the disk has room (on the
        writer thread).
        """
        self._reserve_tried = self._monotonic()
        if not self._reserve or os.path.exists(self.reserve_path):
            return
        partial = self.reserve_path + ".new"
        try:
            descriptor = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, self._reserve)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(partial, self.reserve_path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            _log.warn("No room for the reserve of {path}: {error}", path=self.path, error=str(e))

    def _release_reserve(self) -> bool:
        """
        Delete the reserve file; whether there was one.
        """
        try:
            os.unlink(self.reserve_path)
        except FileNotFoundError:
            return False
        _log.warn(
            "The disk of {path} is full: its reserve was released so that mail can be"
            " destroyed; other writes fail until there is room again",
            path=self.path,
        )
        return True

    def _migrate(self, connection: sqlite3.Connection) -> list[int]:
        applied: list[int] = []
        while True:
            connection.execute("BEGIN IMMEDIATE")
            try:
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                if version > len(self._migrations):
                    raise SchemaVersionError(self.path, version, len(self._migrations))
                if version == len(self._migrations):
                    connection.execute("COMMIT")
                    return applied
                for statement in split_statements(self._migrations[version]):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version + 1:d}")
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            applied.append(version + 1)

    def _write_transaction(
        self, fn: Callable[[sqlite3.Connection, *_Ts], _T], args: tuple[*_Ts]
    ) -> _T:
        try:
            result = self._write_once(fn, args)
        except sqlite3.Error as e:
            if not _disk_full(e):
                raise
            if not (clear_hints() and self._release_reserve()):
                raise DiskFull(f"the disk of {self.path} is full") from e
            self._checkpoint()
            try:
                result = self._write_once(fn, args)  # in the reserve's room
            except sqlite3.Error as again:
                if _disk_full(again):
                    raise DiskFull(f"the disk of {self.path} is full") from again
                raise
        self._after_write(clear_hints())
        return result

    def _after_write(self, freed: bool) -> None:
        """
        Once a write committed while the reserve is released: checkpoint
        after a removal (``freed``), and make the reserve again when it is
        time to try.
        """
        if self._reserve and not os.path.exists(self.reserve_path):
            if freed:
                self._checkpoint()
            if (
                self._reserve_tried is not None
                and self._monotonic() - self._reserve_tried >= RESERVE_RETRY
            ):
                self._make_reserve()

    def _write_group(self, writes: Sequence[Write]) -> GroupOutcome:
        """
        Run ``writes`` in one transaction, a savepoint each; alone when
        there is one, or while the reserve is released (the disk has been
        full: each removal then needs the reserve's path, and every other
        write its own ``DiskFull``).
        """
        results: list[Any] = [_PENDING] * len(writes)
        commits = 0
        if len(writes) > 1 and not (self._reserve and not os.path.exists(self.reserve_path)):
            try:
                freed = self._write_together(writes, results)
            except Exception:  # each write runs again alone
                _log.info(
                    "A group of {count} writes to {path} could not commit; running them alone",
                    count=len(writes),
                    path=self.path,
                )
            else:
                self._after_write(freed)
                return GroupOutcome(results, 1)
        for index, write in enumerate(writes):
            if isinstance(results[index], Failure):
                continue  # it failed on its own, in its savepoint
            try:
                results[index] = self._write_transaction(write.fn, write.args)
            except Exception:  # it fails alone
                results[index] = Failure()
            else:
                commits += 1
        return GroupOutcome(results, commits)

    def _write_together(self, writes: Sequence[Write], results: list[Any]) -> bool:
        """
        Run ``writes`` in one ``BEGIN IMMEDIATE … COMMIT``, each in a
        savepoint: one that raises is rolled back to it and its failure
        kept in ``results``; the others' results are kept once ``COMMIT``
        returned.  Whether one of them only removed data.

        :raises Exception: the transaction cannot go on (a full disk, an
            error that rolled it back, a failed ``COMMIT``); it is rolled
            back, and ``results`` keeps the failures of writes that failed
            on their own only.
        """
        connection = self._connection(read_only=False)
        done: list[Any] = [_PENDING] * len(writes)
        freed = False
        connection.execute("BEGIN IMMEDIATE")
        try:
            for index, write in enumerate(writes):
                clear_hints()
                connection.execute("SAVEPOINT jmap_write")
                try:
                    done[index] = write.fn(connection, *write.args)
                except Exception as e:
                    if (isinstance(e, sqlite3.Error) and _disk_full(e)) or (
                        not connection.in_transaction
                    ):
                        raise
                    results[index] = Failure()
                    connection.execute("ROLLBACK TO jmap_write")
                else:
                    freed = clear_hints() or freed
                connection.execute("RELEASE jmap_write")
            connection.execute("COMMIT")
        except BaseException:
            clear_hints()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        for index, result in enumerate(done):
            if not isinstance(results[index], Failure):
                results[index] = result
        return freed

    def _checkpoint(self) -> None:
        """
        Copy the WAL into the database and start it again from its
        beginning, so that the next removal on a full disk reuses the WAL's
        room (removals free pages inside the database: copying them needs
        no more room).
        """
        try:
            self._connection(read_only=False).execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error as e:
            _log.warn("Could not checkpoint {path}: {error}", path=self.path, error=str(e))

    def _write_once(self, fn: Callable[[sqlite3.Connection, *_Ts], _T], args: tuple[*_Ts]) -> _T:
        clear_hints()
        connection = self._connection(read_only=False)
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = fn(connection, *args)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    def _read_transaction(
        self,
        fn: Callable[[sqlite3.Connection, *_Ts], _T],
        args: tuple[*_Ts],
        work: Work | None = None,
    ) -> _T:
        connection = self._connection(read_only=True)
        connection.execute("BEGIN")
        if work is not None:
            connection.set_progress_handler(work.should_stop, PROGRESS_STEPS)
        try:
            return fn(connection, *args)
        except sqlite3.OperationalError:
            if work is not None:
                work.check()  # "interrupted" by the progress handler
            raise
        finally:
            if work is not None:
                connection.set_progress_handler(None, 0)  # ROLLBACK must run
            if connection.in_transaction:
                connection.execute("ROLLBACK")


#: A write of a group that has not run (or whose group was rolled back).
_PENDING: Any = object()


def _disk_full(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_FULL
