"""
A PostgreSQL database used off the reactor thread, shared by several server
nodes: :class:`PostgresDatabase`.

- Work runs in a Twisted :class:`~twisted.python.threadpool.ThreadPool` of
  ``pool_size`` threads, each transaction on a connection of a
  :class:`psycopg_pool.ConnectionPool` of the same size, so every busy
  thread has its connection and none waits for one.
- :meth:`PostgresDatabase.run` is one ``READ COMMITTED`` write transaction;
  its Deferred fires after ``COMMIT`` returned (the server's own durability
  settings apply: keep ``synchronous_commit`` on).  Writers that must not
  interleave take a row lock first (the mail store locks the account's
  ``mail_accounts`` row).  :meth:`PostgresDatabase.read` is one
  ``REPEATABLE READ READ ONLY`` transaction: one snapshot for all its
  statements.
- A transaction that fails with a serialisation failure or a deadlock
  (SQLSTATE ``40001``, ``40P01``) runs again, a few times; so does one whose
  connection was found broken before ``COMMIT`` was sent (the server
  restarted, or an administrator terminated the backend): the pool drops
  broken connections and opens new ones.  A connection lost *during*
  ``COMMIT`` leaves the outcome unknown, so that failure is reported, not
  retried.  The function given to ``run`` or ``read`` may therefore be
  called more than once; it must not have effects outside the transaction.
- Writes that arrive while their lane's transaction is in flight share the
  next one, a savepoint each (group commit, see
  :mod:`~jmap_twisted.store.sql.group_commit`).  A mail write names its
  account (:meth:`PostgresDatabase.run_for`), whose writes stay in one
  lane while any is pending; inside a group, writes run in the order of
  their accounts, so that every group takes account row locks in the same
  order and two groups cannot deadlock on them.  A
  group that fails as a whole (a deadlock on shared rows, a serialisation
  failure, a lost connection, a failed ``COMMIT``) runs its writes again
  alone, each with the retries above; a connection lost during its
  ``COMMIT`` fails every write of the group.
- Transactions other than migrations run in psycopg's pipeline mode:
  ``BEGIN`` and the statements whose results are not read go out without
  waiting for each other's replies, so a delivery costs a few round trips
  rather than one per statement.
- :meth:`PostgresDatabase.read_for` reads one account's data in the
  account's share of the threads (half, by default), waiting accounts
  taking turns, with a time budget: ``statement_timeout`` is set for the
  transaction and the budget is checked between statements; a cancelled
  read's running statement is stopped with a cancel request
  (:mod:`~jmap_twisted.store.sql.fair_reads`).  :meth:`PostgresDatabase.read`
  (the directory's short reads) runs on a thread and connection of its
  own, which no account's queries can occupy.
- Functions receive a :class:`Statements`: it takes SQL with ``?``
  placeholders, as SQLite does, so the SQL both backends share reads the
  same; :attr:`Statements.connection` is the psycopg connection itself.
- The schema is brought up to date at start (:mod:`jmap_twisted.store.postgres.schema`)
  under an advisory lock, so nodes starting together do not race.
- The DSN may carry a password (libpq also reads ``PGPASSWORD`` and the
  password file): log lines and errors name the database by
  :func:`redact_dsn` only.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, TypeVarTuple

import psycopg
from psycopg import errors, pq
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jmap_twisted.errors import DatabaseError
from jmap_twisted.store.postgres.schema import MIGRATION_LOCK, MIGRATIONS
from jmap_twisted.store.sql.fair_reads import (
    DEFAULT_READ_BUDGET,
    FairReads,
    QueryTimeout,
    Work,
)
from jmap_twisted.store.sql.group_commit import GroupOutcome, Write
from jmap_twisted.store.sql.threaded import SchemaVersionError, ThreadedDatabase

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

_log = Logger()

#: The default number of worker threads and pooled connections.
DEFAULT_POOL_SIZE = 8

#: How often a transaction runs again after a serialisation failure or a
#: deadlock.
DEFAULT_RETRIES = 3

_RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)

_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

_PLACEHOLDER = re.compile(r"%|\?")


def redact_dsn(dsn: str) -> str:
    """
    How to name a database in logs: its user, host, port and name, without
    the password or any other option.

    :param dsn: a libpq connection string or URI.
    """
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable DSN>"
    user = str(parts.get("user") or "")
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "")
    dbname = str(parts.get("dbname") or "")
    where = f"{host}:{port}" if port else str(host)
    return f"postgresql://{user + '@' if user else ''}{where}/{dbname}"


@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    """
    SQL with ``?`` placeholders as psycopg wants it: ``%s`` placeholders,
    literal ``%`` doubled.  The SQL must have no ``?`` other than
    placeholders (none in literals, no jsonb ``?`` operator).
    """
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group() == "?" else "%%", sql)


class Statements:
    """
    A psycopg connection inside a transaction, taking SQL with ``?``
    placeholders (see :func:`to_psycopg`).

    :ivar connection: the connection, for SQL with psycopg's own
        placeholders.
    """

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        pipeline: psycopg.Pipeline | None = None,
        work: Work | None = None,
    ) -> None:
        self.connection = connection
        self._pipeline = pipeline
        self._work = work

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """
        Run one statement; its rows are read from the returned cursor.
        In pipeline mode the statement is sent without waiting for its
        result; reading rows or ``rowcount`` waits.

        :raises QueryTimeout: the read's budget is spent.
        """
        if self._work is not None:
            self._work.check()
        cursor = self.connection.execute(to_psycopg(sql), parameters)
        if self._pipeline is None:
            return cursor
        return _PipelinedCursor(cursor, self._pipeline)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        """
        Run one statement for each parameter sequence (pipelined by psycopg).
        """
        rows = list(parameters)
        if rows:
            with self.connection.cursor() as cursor:
                cursor.executemany(to_psycopg(sql), rows)


class _PipelinedCursor:
    """
    A cursor of a pipelined statement: ``fetch*`` and iteration wait for
    its result already (psycopg syncs); ``rowcount`` is made to wait too.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return self._cursor.rowcount

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _CommitInDoubt(DatabaseError):
    """
    The connection broke while ``COMMIT`` was in flight: the transaction
    may or may not have committed.
    """


class PostgresDatabase(ThreadedDatabase):
    """
    One PostgreSQL database, used from a pool of threads with a connection
    each; several instances (nodes) may share it.

    :param dsn: a libpq connection string or URI (it may hold a password;
        it is never logged).
    :param reactor: where results are delivered (see
        :class:`~jmap_twisted.store.sql.threaded.ThreadedDatabase`).
    :param pool_size: worker threads and pooled connections.
    :param migrations: the schema scripts, by default
        :data:`jmap_twisted.store.postgres.schema.MIGRATIONS`.
    :param retries: how many times a transaction runs again after a
        serialisation failure or a deadlock.
    :param connect_timeout: seconds :meth:`start` waits for the pool's
        first connections, and a transaction waits for a connection.
    :param reader_share: threads one account's :meth:`read_for` may hold at
        once; by default half of ``pool_size`` (at least one).
    :param read_budget: seconds one :meth:`read_for` may run;
        ``None`` for no limit.
    :param monotonic: the clock of the budget, read in the worker threads.
    :param write_lanes: how many write transactions (each holding a group
        of writes) may be in flight at once; by default ``pool_size``, so
        that writes of up to that many accounts run in parallel as they
        did without grouping, and only the writes that would have waited
        for a thread group together.
    """

    def __init__(
        self,
        dsn: str,
        reactor: IReactorFromThreads,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrations: Sequence[str] = MIGRATIONS,
        retries: int = DEFAULT_RETRIES,
        connect_timeout: float = 10.0,
        reader_share: int | None = None,
        read_budget: float | None = DEFAULT_READ_BUDGET,
        monotonic: Callable[[], float] = time.monotonic,
        write_lanes: int | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        super().__init__(reactor, migrations)
        self._dsn = dsn
        self._redacted = redact_dsn(dsn)
        self.pool_size = pool_size
        self._retries = retries
        self._connect_timeout = connect_timeout
        self._reader_share = reader_share or max(1, pool_size // 2)
        self._read_budget = read_budget
        self._monotonic = monotonic
        self._threads: ThreadPool | None = None
        self._directory_thread: ThreadPool | None = None
        self.reads: FairReads | None = None
        self._connections: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_lock = threading.Lock()
        self._lane_count = write_lanes or pool_size

    @property
    def description(self) -> str:
        return self._redacted

    def _make_pools(self) -> list[ThreadPool]:
        self._threads = ThreadPool(self.pool_size, self.pool_size, name="jmap-postgres")
        self._directory_thread = ThreadPool(1, 1, name="jmap-postgres-directory")
        self.reads = FairReads(
            self._reactor,
            self._threads,
            self.pool_size,
            self._reader_share,
            self._read_budget,
            self._monotonic,
            interrupter=self._directory_thread,
            clock=self._reactor if IReactorTime.providedBy(self._reactor) else None,
        )
        return [self._threads, self._directory_thread]

    def _close(self) -> None:
        self._threads = self._directory_thread = None
        self.reads = None
        with self._pool_lock:
            connections, self._connections = self._connections, None
        if connections is not None:
            connections.close()

    def run(self, fn: Callable[[Statements, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(statements, *args)`` in a ``READ COMMITTED`` write
        transaction in a worker thread; it commits once ``fn`` returned.
        Writes submitted while their lane's transaction is in flight share
        the next one (group commit, see the module's documentation), each
        inside a savepoint: if ``fn`` raises, its own changes are rolled
        back and the exception fails the Deferred, the other writes of the
        transaction are not affected.

        :param fn: runs in a worker thread, maybe more than once (see the
            module's documentation); must not touch reactor APIs, nor keep
            ``statements`` beyond the call.
        :return: fires with ``fn``'s result after the ``COMMIT`` holding it
            returned.
        """
        return self._submit_write(None, fn, args)

    def run_for(
        self, owner: str, fn: Callable[[Statements, *_Ts], _T], *args: *_Ts
    ) -> Deferred[_T]:
        """
        Run ``fn(statements, *args)``, a write of ``owner``'s data (which
        starts by locking the owner's row), as :meth:`run` does; the
        owner's writes stay in one lane while any of them is pending.

        :param owner: whose data it writes (an account id).
        """
        return self._submit_write(owner, fn, args)

    def _write_pool(self) -> ThreadPool | None:
        return self._threads

    def _write_lanes(self) -> int:
        return self._lane_count

    def read(self, fn: Callable[[Statements, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(statements, *args)`` in one read-only transaction that sees
        one snapshot, taken at its first statement, on the thread reserved
        for the server's own short reads (the directory).

        :return: fires with ``fn``'s result, or fails with its exception.
        """
        return self._submit(
            self._directory_thread,
            lambda: self._transaction(_READ, fn, args, pipelined=True),
        )

    def read_for(
        self, owner: str, fn: Callable[[Statements, *_Ts], _T], *args: *_Ts
    ) -> Deferred[_T]:
        """
        Run ``fn(statements, *args)`` as :meth:`read` does, in ``owner``'s
        turn of the worker threads and with a time budget.

        :param owner: whose read it is (an account id).
        :return: fires with ``fn``'s result, or fails with its exception;
            fails with :class:`~jmap_twisted.store.sql.fair_reads.QueryTimeout`
            once the budget is spent.  Cancelling it keeps a waiting read
            from starting and stops a running one.
        """
        return self._submit_fair(
            self.reads,
            owner,
            lambda work: self._transaction(_READ, fn, args, pipelined=True, work=work),
        )

    # Everything below runs in the worker threads.

    def _pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._connections is None:
                raise DatabaseError(f"{self._redacted} is not open")
            return self._connections

    def _open(self) -> list[int]:
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._dsn,
            # One more connection for the directory's thread.
            min_size=self.pool_size + 1,
            max_size=self.pool_size + 1,
            kwargs={"autocommit": True, "application_name": "jmap-twisted"},
            timeout=self._connect_timeout,
            name="jmap",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self._connect_timeout)
        except BaseException:
            pool.close()
            raise
        with self._pool_lock:
            self._connections = pool
        return self._migrate()

    def _migrate(self) -> list[int]:
        applied: list[int] = []
        while True:
            version = self._transaction("BEGIN", self._migrate_one, ())
            if version is None:
                return applied
            applied.append(version)

    def _migrate_one(self, statements: Statements) -> int | None:
        """
        Apply the next pending migration, if any; return its version.
        """
        connection = statements.connection
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS jmap_schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM jmap_schema_migrations"
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > len(self._migrations):
            raise SchemaVersionError(self._redacted, version, len(self._migrations))
        if version == len(self._migrations):
            return None
        connection.execute(self._migrations[version])
        connection.execute(
            "INSERT INTO jmap_schema_migrations (version) VALUES (%s)", (version + 1,)
        )
        return version + 1

    def _transaction(
        self,
        begin: str,
        fn: Callable[[Statements, *_Ts], _T],
        args: tuple[*_Ts],
        pipelined: bool = False,
        work: Work | None = None,
    ) -> _T:
        retried = 0
        reconnected = 0
        while True:
            try:
                return self._attempt(begin, fn, args, pipelined, work)
            except errors.QueryCanceled:
                if work is None:
                    raise
                work.check()  # cancelled, or out of time
                if work.budget is None:  # pragma: no cover - an administrator's cancel
                    raise
                raise QueryTimeout(work.budget) from None
            except _CommitInDoubt as e:
                raise e.__cause__ or e from None
            except _RETRYABLE as e:
                if retried >= self._retries:
                    raise
                retried += 1
                _log.info(
                    "Retrying a transaction on {path} after {sqlstate} ({attempt}/{retries})",
                    path=self._redacted,
                    sqlstate=e.sqlstate,
                    attempt=retried,
                    retries=self._retries,
                )
            except psycopg.OperationalError as e:
                # Every pooled connection may have been broken at once.
                if not _broken(e) or reconnected > self.pool_size:
                    raise
                reconnected += 1
                _log.warn(
                    "Connection to {path} lost ({error}); retrying on another",
                    path=self._redacted,
                    error=str(e).strip(),
                )

    def _attempt(
        self,
        begin: str,
        fn: Callable[[Statements, *_Ts], _T],
        args: tuple[*_Ts],
        pipelined: bool,
        work: Work | None = None,
    ) -> _T:
        with self._pool().connection() as connection, contextlib.ExitStack() as finished:
            try:
                if pipelined:
                    # One round trip for BEGIN and every statement whose
                    # result nobody reads (migrations, with several
                    # statements per script, cannot be pipelined).
                    with connection.pipeline() as pipeline:
                        connection.execute(begin)
                        if work is not None:
                            finished.callback(_limit(connection, work))
                        result = fn(Statements(connection, pipeline, work), *args)
                else:
                    connection.execute(begin)
                    result = fn(Statements(connection), *args)
            except BaseException as e:
                _abandon(connection, e)
                raise
            _commit(connection)
            return result

    def _write_group(self, writes: Sequence[Write]) -> GroupOutcome:
        """
        Run ``writes`` in one transaction, a savepoint each, in the order
        of their keys (see the module's documentation); alone when there is
        one.
        """
        order = sorted(range(len(writes)), key=lambda i: writes[i].key or "")
        results: list[Any] = [_PENDING] * len(writes)
        if len(writes) > 1:
            try:
                self._write_together([writes[i] for i in order], order, results)
            except _CommitInDoubt as e:
                # Every write that had not failed alone may have committed.
                doubt = Failure(e.__cause__ or e)
                return GroupOutcome([r if isinstance(r, Failure) else doubt for r in results], 0)
            except Exception as e:  # each write runs again alone
                _log.info(
                    "A group of {count} writes to {path} could not commit ({error});"
                    " running them alone",
                    count=len(writes),
                    path=self._redacted,
                    error=str(e).strip() or type(e).__name__,
                )
            else:
                return GroupOutcome(results, 1)
        commits = 0
        for index in order:
            if isinstance(results[index], Failure):
                continue  # it failed on its own, in its savepoint
            write = writes[index]
            try:
                results[index] = self._transaction("BEGIN", write.fn, write.args, pipelined=True)
            except Exception:  # it fails alone
                results[index] = Failure()
            else:
                commits += 1
        return GroupOutcome(results, commits)

    def _write_together(
        self, writes: Sequence[Write], indexes: Sequence[int], results: list[Any]
    ) -> None:
        """
        Run ``writes`` (the group's ``indexes``-th) in one pipelined
        transaction, each in a savepoint: one that raises is rolled back to
        it and its failure kept in ``results``; the others' results are
        kept once ``COMMIT`` returned.

        :raises _CommitInDoubt: the connection was lost during ``COMMIT``.
        :raises Exception: the transaction cannot go on (a serialisation
            failure, a deadlock, a lost connection, a failed ``COMMIT``);
            nothing was committed, and ``results`` keeps the failures of
            writes that failed on their own only.
        """
        done: list[Any] = [_PENDING] * len(writes)
        with self._pool().connection() as connection:
            try:
                with connection.pipeline() as pipeline:
                    connection.execute("BEGIN")
                    for position, write in enumerate(writes):
                        connection.execute("SAVEPOINT jmap_write")
                        try:
                            done[position] = write.fn(Statements(connection, pipeline), *write.args)
                            connection.execute("RELEASE SAVEPOINT jmap_write")
                            pipeline.sync()  # its errors are its own
                        except Exception as e:
                            if connection.broken or isinstance(e, _RETRYABLE):
                                raise
                            done[position] = _PENDING
                            results[indexes[position]] = Failure()
                            _undo_savepoint(connection, pipeline)
            except BaseException as e:
                _abandon(connection, e)
                raise
            _commit(connection)
        for position, result in enumerate(done):
            if result is not _PENDING:
                results[indexes[position]] = result


#: A write of a group that has not run (or whose group was rolled back).
_PENDING: Any = object()


def _abandon(connection: psycopg.Connection[Any], error: BaseException) -> None:
    """
    After ``error`` inside a transaction: mark it as a broken connection's
    (for the retry), or roll the transaction back.
    """
    if connection.broken:
        _mark_broken(error)
    elif connection.info.transaction_status != pq.TransactionStatus.IDLE:
        connection.execute("ROLLBACK")


def _commit(connection: psycopg.Connection[Any]) -> None:
    """
    Commit; a connection lost while ``COMMIT`` was in flight leaves the
    outcome unknown (:class:`_CommitInDoubt`).
    """
    try:
        connection.execute("COMMIT")
    except psycopg.OperationalError as e:
        if connection.broken:
            raise _CommitInDoubt("connection lost during COMMIT") from e
        raise


def _undo_savepoint(connection: psycopg.Connection[Any], pipeline: psycopg.Pipeline) -> None:
    """
    Roll the group's transaction back to the failed write's savepoint.

    :raises Exception: the transaction cannot go on.
    """
    try:
        pipeline.sync()  # what the write left in flight fails, or not
    except psycopg.Error as e:
        if connection.broken or isinstance(e, _RETRYABLE):
            raise
    connection.execute("ROLLBACK TO SAVEPOINT jmap_write")
    connection.execute("RELEASE SAVEPOINT jmap_write")
    pipeline.sync()


def _limit(connection: psycopg.Connection[Any], work: Work) -> Callable[[], None]:
    """
    Give the transaction's statements the read's remaining budget, and let
    a cancellation stop the one running until the returned function is
    called.
    """
    left = work.remaining()
    if left is not None:
        milliseconds = str(max(1, int(left * 1000)))
        connection.execute("SELECT set_config('statement_timeout', %s, true)", (milliseconds,))
    lock = threading.Lock()
    active = [True]

    def interrupt() -> None:
        with lock:  # never once the connection went back to the pool
            if active[0]:
                connection.cancel_safe()

    def finished() -> None:
        with lock:
            active[0] = False

    work.interrupt = interrupt
    return finished


def _mark_broken(error: BaseException) -> None:
    """
    Remember that ``error`` came with a broken connection (nothing was
    committed: the failure happened before ``COMMIT``).
    """
    try:
        error.__dict__["_jmap_connection_broken"] = True
    except (AttributeError, TypeError):  # pragma: no cover - exceptions have a __dict__
        pass


def _broken(error: BaseException) -> bool:
    return bool(getattr(error, "__dict__", {}).get("_jmap_connection_broken"))
