"""
SQLite connections used off the reactor thread.

:class:`SQLiteDatabase` owns one database file and the threads that use it:

- one *writer* thread with one connection: every :meth:`SQLiteDatabase.run`
  is one ``BEGIN IMMEDIATE … COMMIT`` transaction there, so writes from this
  process are serialised and never fail with ``SQLITE_BUSY`` against each
  other;
- a small pool of *reader* threads, one read-only connection each: every
  :meth:`SQLiteDatabase.read` sees one consistent snapshot (WAL readers do
  not block the writer, nor the writer them), so reads do not queue behind
  writes.

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
    0.02 ms with ``NORMAL`` on a 2-core development VM: still
    thousands of commits per second.
``foreign_keys=ON``
    the schema relies on ``ON DELETE CASCADE``.
busy timeout (default 5 s)
    how long a transaction waits for another process's write lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar, TypeVarTuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool

from jmap_twisted.store.schema import MIGRATIONS
from jmap_twisted.store.threaded_db import (
    DatabaseError,
    DatabaseNotRunningError,
    SchemaVersionError,
    ThreadedDatabase,
)

__all__ = [
    "DATABASE_FILENAME",
    "DatabaseError",
    "DatabaseNotRunningError",
    "SQLiteDatabase",
    "SchemaVersionError",
    "database_path",
    "split_statements",
]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

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
        :data:`jmap_twisted.store.schema.MIGRATIONS`.
    :param busy_timeout: seconds a transaction waits for another process's
        lock before failing with :class:`sqlite3.OperationalError`.
    :param readers: size of the reader pool.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        *,
        migrations: Sequence[str] = MIGRATIONS,
        busy_timeout: float = 5.0,
        readers: int = 2,
    ) -> None:
        super().__init__(reactor, migrations)
        self.path = path
        self._busy_timeout = busy_timeout
        self._reader_count = readers
        self._writer: ThreadPool | None = None
        self._readers: ThreadPool | None = None
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
        return [self._writer, self._readers]

    def _close(self) -> None:
        self._writer = self._readers = None
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def run(self, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)`` in one write transaction on the writer
        thread.

        The transaction is ``BEGIN IMMEDIATE`` (it holds the write lock from
        the start, so it cannot fail half-way for lack of it) and commits
        when ``fn`` returns.  If ``fn`` raises, the transaction rolls back
        and the exception fails the returned Deferred.

        :param fn: runs on the writer thread; must not touch reactor APIs,
            nor keep ``connection`` beyond the call.
        :return: fires with ``fn``'s result after the commit is durable.
        """
        return self._submit(self._writer, lambda: self._write_transaction(fn, args))

    def read(self, fn: Callable[[sqlite3.Connection, *_Ts], _T], *args: *_Ts) -> Deferred[_T]:
        """
        Run ``fn(connection, *args)`` in one read transaction on a reader
        thread.

        ``fn`` sees a snapshot including every transaction committed before
        it started, by any process; its connection is read-only
        (``PRAGMA query_only``), so an attempt to write fails.

        :param fn: runs on a reader thread, under the same rules as for
            :meth:`run`.
        :return: fires with ``fn``'s result, or fails with its exception.
        """
        return self._submit(self._readers, lambda: self._read_transaction(fn, args))

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
        return self._migrate(connection)

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
        self, fn: Callable[[sqlite3.Connection, *_Ts], _T], args: tuple[*_Ts]
    ) -> _T:
        connection = self._connection(read_only=True)
        connection.execute("BEGIN")
        try:
            return fn(connection, *args)
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
