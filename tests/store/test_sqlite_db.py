"""
Tests of :class:`jmap_twisted.store.sqlite.database.SQLiteDatabase`: connection
settings, migrations, transactions, threads, and sharing one file between
processes.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.store.sqlite.database import (
    DATABASE_FILENAME,
    DatabaseNotRunningError,
    SchemaVersionError,
    SQLiteDatabase,
    database_path,
    split_statements,
)
from jmap_twisted.store.sqlite.directory import SQLiteDirectory
from jmap_twisted.store.sqlite.schema import MIGRATIONS

TABLE_T = "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);"


def _database(path, **kwargs) -> SQLiteDatabase:
    from twisted.internet import reactor

    return SQLiteDatabase(str(path), reactor, **kwargs)


def _user_version(path) -> int:
    connection = sqlite3.connect(str(path))
    try:
        return connection.execute("PRAGMA user_version").fetchone()[0]
    finally:
        connection.close()


def _tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


def _count_t(connection: sqlite3.Connection) -> int:
    return connection.execute("SELECT count(*) FROM t").fetchone()[0]


def _insert_t(connection: sqlite3.Connection, value: int) -> None:
    connection.execute("INSERT INTO t VALUES (?)", (value,))


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "jmap-sqlite" in t.name]


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / DATABASE_FILENAME


def test_database_path():
    """
    The database of a data directory is jmap.sqlite3 inside it.
    """
    assert database_path("some/dir") == os.path.join("some/dir", "jmap.sqlite3")


@pytest_twisted.ensureDeferred
async def test_start_applies_schema(db_path):
    """
    Starting creates the directory and the database, and applies every
    migration: user_version counts them and the directory's tables exist.
    """
    db = _database(db_path)
    await db.start()
    try:
        tables = await db.read(_tables)
        assert {"users", "accounts", "tokens", "blobs", "account_blobs"} <= tables
        assert await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == len(
            MIGRATIONS
        )
    finally:
        await db.stop()
    assert _user_version(db_path) == len(MIGRATIONS)


@pytest_twisted.ensureDeferred
async def test_files_private(db_path):
    """
    A new data directory is accessible to its owner only, and so is the
    database file, since it holds password hashes.
    """
    db = _database(db_path)
    await db.start()
    await db.stop()
    assert stat.S_IMODE(os.stat(db_path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def _pragmas(connection: sqlite3.Connection) -> dict[str, object]:
    return {
        name: connection.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ["journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only"]
    }


@pytest_twisted.ensureDeferred
async def test_connection_settings(db_path):
    """
    Every connection uses WAL, synchronous=FULL (2), foreign keys and a busy
    timeout; reader connections are read-only.
    """
    db = _database(db_path, busy_timeout=3.0)
    await db.start()
    try:
        writer = await db.run(_pragmas)
        reader = await db.read(_pragmas)
    finally:
        await db.stop()
    common = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 3000}
    assert writer == {**common, "query_only": 0}
    assert reader == {**common, "query_only": 1}


@pytest_twisted.ensureDeferred
async def test_read_cannot_write(db_path):
    """
    A function passed to read() cannot write.
    """
    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    try:
        with pytest.raises(sqlite3.OperationalError):
            await db.read(_insert_t, 2)
        assert await db.read(_count_t) == 1
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_migrations_applied_once(db_path):
    """
    Migrations already applied are not applied again when the database is
    opened again, and data committed before a stop is there after the next
    start.
    """
    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    await db.run(_insert_t, 2)
    await db.stop()

    again = _database(db_path, migrations=[TABLE_T])
    await again.start()
    try:
        assert await again.read(_count_t) == 2
    finally:
        await again.stop()
    assert _user_version(db_path) == 1


@pytest_twisted.ensureDeferred
async def test_new_migration_applied(db_path):
    """
    A migration appended since the last start is applied, alone.
    """
    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    await db.stop()
    upgraded = _database(db_path, migrations=[TABLE_T, "CREATE TABLE u (y TEXT);"])
    await upgraded.start()
    try:
        assert "u" in await upgraded.read(_tables)
        assert await upgraded.read(_count_t) == 1
    finally:
        await upgraded.stop()
    assert _user_version(db_path) == 2


@pytest_twisted.ensureDeferred
async def test_failing_migration_rolls_back(db_path):
    """
    A migration that fails leaves no trace: neither its earlier statements
    nor a version bump; the migrations before it stay applied, start fails
    with the error, and no thread is left behind.
    """
    broken = "CREATE TABLE u (y TEXT); INSERT INTO missing VALUES (1);"
    db = _database(db_path, migrations=[TABLE_T, broken])
    with pytest.raises(sqlite3.OperationalError, match="missing"):
        await db.start()
    assert _our_threads() == []
    assert _user_version(db_path) == 1
    connection = sqlite3.connect(str(db_path))
    try:
        assert "u" not in _tables(connection)
        assert _count_t(connection) == 1
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_newer_database_refused(db_path):
    """
    A database with more migrations applied than this code knows is
    refused with SchemaVersionError saying both versions, and left as is.
    """
    db = _database(db_path)
    await db.start()
    await db.stop()
    connection = sqlite3.connect(str(db_path))
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    connection.close()

    newer = _database(db_path)
    with pytest.raises(SchemaVersionError) as raised:
        await newer.start()
    assert raised.value.found == len(MIGRATIONS) + 3
    assert raised.value.supported == len(MIGRATIONS)
    assert str(len(MIGRATIONS) + 3) in str(raised.value)
    assert _our_threads() == []
    assert _user_version(db_path) == len(MIGRATIONS) + 3


@pytest_twisted.ensureDeferred
async def test_failing_run_rolls_back(db_path):
    """
    When the function passed to run() raises, nothing it wrote is kept and
    its exception fails the Deferred.
    """

    def insert_then_fail(connection: sqlite3.Connection) -> None:
        _insert_t(connection, 2)
        _insert_t(connection, 3)
        raise ValueError("changed my mind")

    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    try:
        with pytest.raises(ValueError, match="changed my mind"):
            await db.run(insert_then_fail)
        assert await db.read(_count_t) == 1
        await db.run(_insert_t, 4)  # the writer is usable afterwards
        assert await db.read(_count_t) == 2
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_run_and_read_results(db_path):
    """
    run(), read() and read_for() fire with the function's result,
    computed off the reactor thread: writes on the writer, the directory's
    reads on its own reader, accounts' reads on the shared readers.
    """

    def which_thread(connection: sqlite3.Connection, tag: str) -> tuple[str, str]:
        return tag, threading.current_thread().name

    db = _database(db_path)
    await db.start()
    try:
        tag, writer = await db.run(which_thread, "w")
        assert tag == "w"
        assert "jmap-sqlite-writer" in writer
        tag, reader = await db.read(which_thread, "r")
        assert tag == "r"
        assert "jmap-sqlite-directory" in reader
        tag, reader = await db.read_for("account", which_thread, "a")
        assert tag == "a"
        assert "jmap-sqlite-reader" in reader
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_reads_do_not_wait_for_writes(db_path):
    """
    A read completes while a long write transaction is still running, and
    sees the data as it was before that write.
    """
    started = threading.Event()
    release = threading.Event()

    def slow_write(connection: sqlite3.Connection) -> None:
        _insert_t(connection, 2)
        started.set()
        release.wait(10)

    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    try:
        writing = db.run(slow_write)
        started.wait(10)
        try:
            assert await db.read(_count_t) == 1
        finally:
            release.set()
        await writing
        assert await db.read(_count_t) == 2
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_submitted_work(db_path):
    """
    stop() lets work already submitted finish and commit; work submitted
    after stop() fails with DatabaseNotRunningError; every thread is gone
    once stop() has fired.
    """

    def slow_insert(connection: sqlite3.Connection) -> str:
        time.sleep(0.2)
        _insert_t(connection, 2)
        return "done"

    db = _database(db_path, migrations=[TABLE_T])
    await db.start()
    pending = db.run(slow_insert)
    stopped = db.stop()
    with pytest.raises(DatabaseNotRunningError):
        await db.run(_insert_t, 3)
    assert await pending == "done"
    await stopped
    await db.stop()  # harmless again
    assert _our_threads() == []
    with pytest.raises(DatabaseNotRunningError):
        await db.read(_count_t)
    connection = sqlite3.connect(str(db_path))
    try:
        assert _count_t(connection) == 2
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_not_started(db_path):
    """
    Work submitted before start() fails with DatabaseNotRunningError.
    """
    db = _database(db_path)
    with pytest.raises(DatabaseNotRunningError):
        await db.run(_count_t)


@pytest_twisted.ensureDeferred
async def test_two_instances_share_committed_writes(db_path):
    """
    Two SQLiteDatabase instances on one file (as the admin command and a
    running server) each see what the other committed, at once: a user
    created and a token revoked through one directory are seen by the
    other's next call.
    """
    clock = Clock()
    server_db = _database(db_path)
    admin_db = _database(db_path)
    await server_db.start()
    await admin_db.start()
    try:
        server = SQLiteDirectory(server_db, clock)
        admin = SQLiteDirectory(admin_db, clock)
        assert await server.get_user("alice") is None

        alice = await admin.create_user("alice", "hash")
        token = await admin.add_token(alice.id, "token-hash", "phone")
        assert await server.get_user("alice") == alice
        assert await server.find_token("token-hash") == (alice, token)

        await admin.revoke_token(token.id)
        assert await server.find_token("token-hash") is None

        await server.set_password_hash("alice", "new-hash")
        assert await admin.get_password_hash("alice") == (alice, "new-hash")
    finally:
        await admin_db.stop()
        await server_db.stop()


def test_split_statements():
    """
    Scripts split at the semicolons that end statements, not at those in
    literals, comments or trigger bodies.
    """
    script = """
    CREATE TABLE a (x TEXT DEFAULT 'semi;colon');  -- a comment; with a semicolon
    CREATE TRIGGER a_log AFTER INSERT ON a BEGIN
        INSERT INTO a VALUES ('one;');
        SELECT 1;
    END;
    /* block; comment */
    INSERT INTO a VALUES ('last')
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0] == "CREATE TABLE a (x TEXT DEFAULT 'semi;colon');"
    assert statements[1].startswith("-- a comment; with a semicolon")
    assert statements[1].endswith("END;")
    assert statements[2].startswith("/* block; comment */")
    assert statements[2].endswith("INSERT INTO a VALUES ('last')")
    assert split_statements("") == []
    assert split_statements("SELECT 1;\n") == ["SELECT 1;"]
    assert split_statements("SELECT 1; ;\n;") == ["SELECT 1;"]


def test_split_statements_runs():
    """
    The statements of a script run one by one do what the whole script
    does.
    """
    script = """
    CREATE TABLE a (x TEXT);
    CREATE TABLE log (x TEXT);
    CREATE TRIGGER a_log AFTER INSERT ON a BEGIN
        INSERT INTO log VALUES (new.x || ';logged');
    END;
    INSERT INTO a VALUES ('v');
    -- trailing comment
    """
    connection = sqlite3.connect(":memory:")
    for statement in split_statements(script):
        connection.execute(statement)
    assert connection.execute("SELECT x FROM log").fetchall() == [("v;logged",)]
    connection.close()


LEFT_OPEN = """
import sys

from twisted.internet.task import react

from jmap_twisted.store.sqlite.database import SQLiteDatabase


def insert(connection):
    connection.execute("INSERT INTO users VALUES ('u1', 'alice', NULL, 0)")


async def main(reactor, path):
    db = SQLiteDatabase(path, reactor)
    await db.start()
    db.run(insert)  # neither awaited nor followed by stop()


react(main, [sys.argv[1]])
"""


def test_closed_at_reactor_shutdown(db_path):
    """
    A database nobody stopped is closed when the reactor shuts down: its
    threads do not keep the process alive, and work already submitted is
    committed.
    """
    result = subprocess.run(
        [sys.executable, "-c", LEFT_OPEN, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result
    connection = sqlite3.connect(str(db_path))
    try:
        assert connection.execute("SELECT username FROM users").fetchall() == [("alice",)]
    finally:
        connection.close()
