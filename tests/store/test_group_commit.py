"""
Group commit (:mod:`jmap_twisted.store.sql.group_commit`): writes that
arrive while a write transaction is in flight share the next one, each in
a savepoint; every write's Deferred fires only once the commit holding it
returned; a write that fails, fails alone.

The lanes are tested alone, with groups run by hand; then both databases,
SQLite on real files and PostgreSQL on the test cluster, with a first
write holding the writer so that the next ones queue up behind it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from jmap_twisted.store.postgres.database import PostgresDatabase, Statements
from jmap_twisted.store.sql.group_commit import GroupOutcome, Write, WriteLanes
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from tests.store.postgres_backend import started_database

# -- the lanes, with groups run by hand ---------------------------------------


class _Groups:
    """
    Groups sent to the database, each answered by the test.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[list[Write], Deferred[GroupOutcome]]] = []
        self.commits = 0

    def run(self, writes: Sequence[Write]) -> Deferred[GroupOutcome]:
        answer: Deferred[GroupOutcome] = Deferred()
        self.sent.append((list(writes), answer))
        return answer

    def committed(self, commits: int) -> None:
        self.commits += commits

    def keys(self) -> list[list[str | None]]:
        return [[w.key for w in writes] for writes, _ in self.sent]


def _write(key: str | None = None) -> Write:
    return Write(lambda connection: None, (), key)


def test_a_lone_write_starts_at_once() -> None:
    """
    A write that finds its lane idle is sent to the database at once, alone.
    """
    groups = _Groups()
    lanes = WriteLanes(1, groups.run, groups.committed)
    lanes.add(_write("a"))
    assert groups.keys() == [["a"]]


def test_writes_queued_behind_a_transaction_form_the_next_group() -> None:
    """
    Writes arriving while a transaction is in flight wait, and go together
    once it is over; each Deferred fires with its own result, in order.
    """
    groups = _Groups()
    lanes = WriteLanes(1, groups.run, groups.committed)
    writes = [_write(key) for key in "abcd"]
    for write in writes:
        lanes.add(write)
    assert groups.keys() == [["a"]]
    fired: list[str] = []
    for write in writes:
        write.done.addCallback(fired.append)
    groups.sent[0][1].callback(GroupOutcome(["A"], 1))
    assert fired == ["A"]
    assert groups.keys() == [["a"], ["b", "c", "d"]]
    groups.sent[1][1].callback(GroupOutcome(["B", "C", "D"], 1))
    assert fired == ["A", "B", "C", "D"]
    assert groups.commits == 2


def test_writes_submitted_by_results_form_one_group() -> None:
    """
    Writes submitted by the callbacks of a group's results (the next
    delivery of each connection) go together, not the first one alone.
    """
    groups = _Groups()
    lanes = WriteLanes(1, groups.run, groups.committed)
    writes = [_write(key) for key in "abc"]
    for write in writes:
        lanes.add(write)
    groups.sent[0][1].callback(GroupOutcome([None], 1))
    for write in writes[1:]:
        write.done.addCallback(lambda _, key=write.key: lanes.add(_write(f"{key}2")))
    groups.sent[1][1].callback(GroupOutcome([None, None], 1))
    assert groups.keys() == [["a"], ["b", "c"], ["b2", "c2"]]


def test_a_failure_fails_its_write_only() -> None:
    """
    A group's result that is a failure fails that write alone.
    """
    groups = _Groups()
    lanes = WriteLanes(1, groups.run, groups.committed)
    writes = [_write() for _ in range(3)]
    for write in writes:
        lanes.add(write)
    groups.sent[0][1].callback(GroupOutcome([1], 1))
    outcomes: list[Any] = []
    for write in writes[1:]:
        write.done.addBoth(outcomes.append)
    groups.sent[1][1].callback(GroupOutcome([Failure(KeyError("x")), 3], 1))
    assert isinstance(outcomes[0], Failure) and outcomes[0].check(KeyError)
    assert outcomes[1] == 3


def test_groups_are_bounded() -> None:
    """
    No group holds more writes than the limit; the rest make further groups.
    """
    groups = _Groups()
    lanes = WriteLanes(1, groups.run, groups.committed, limit=3)
    for n in range(8):
        lanes.add(_write(str(n)))
    for index in range(3):
        writes, answer = groups.sent[index]
        answer.callback(GroupOutcome([None] * len(writes), 1))
    assert groups.keys() == [["0"], ["1", "2", "3"], ["4", "5", "6"], ["7"]]


def test_keys_keep_their_lane_and_take_idle_ones() -> None:
    """
    A key's writes stay in its lane while any is queued or in flight; a new
    key takes an idle lane, else the least loaded one.
    """
    groups = _Groups()
    lanes = WriteLanes(2, groups.run, groups.committed)
    for _ in range(3):
        lanes.add(_write("a"))
    lanes.add(_write("b"))
    assert groups.keys() == [["a"], ["b"]]  # b did not wait behind a
    lanes.add(_write("c"))  # a's lane holds 3 writes, b's 1
    groups.sent[1][1].callback(GroupOutcome([None], 1))
    assert groups.keys() == [["a"], ["b"], ["c"]]
    groups.sent[0][1].callback(GroupOutcome([None], 1))
    assert groups.keys() == [["a"], ["b"], ["c"], ["a", "a"]]


# -- SQLite -------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE t (x INTEGER UNIQUE);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (parent_id INTEGER"
    " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
)


@pytest_twisted.async_yield_fixture
async def sqlite_db(tmp_path: Any) -> AsyncIterator[SQLiteDatabase]:
    from twisted.internet import reactor

    db = SQLiteDatabase(str(tmp_path / "db.sqlite3"), reactor, migrations=[_SCHEMA])
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


def _insert(connection: Any, value: int) -> int:
    connection.execute("INSERT INTO t (x) VALUES (?)", (value,))
    return value


def _fail(connection: Any, value: int) -> None:
    connection.execute("INSERT INTO t (x) VALUES (?)", (value,))
    raise ValueError(value)


def _orphan(connection: Any) -> None:
    # Checked at COMMIT only: the transaction holding it cannot commit.
    connection.execute("INSERT INTO child (parent_id) VALUES (42)")


class _Blocker:
    """
    A first write that holds the writer until released, so that the writes
    submitted meanwhile queue up and form one group.
    """

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, connection: Any) -> None:
        self.started.set()
        self.release.wait(30)

    async def hold(self, run: Callable[..., Deferred[Any]]) -> Deferred[Any]:
        held = run(self)
        from twisted.internet import threads

        await threads.deferToThread(self.started.wait, 30)
        return held


def _sqlite_visible(path: str, value: int) -> bool:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM t WHERE x = ?", (value,)).fetchone()[0] == 1
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_lone_write_is_one_transaction(sqlite_db: SQLiteDatabase) -> None:
    """
    A write on an idle database commits in one transaction of its own.
    """
    before = sqlite_db.commits
    assert await sqlite_db.run(_insert, 1) == 1
    assert sqlite_db.commits == before + 1


@pytest_twisted.ensureDeferred
async def test_sqlite_writes_together_share_a_commit(sqlite_db: SQLiteDatabase) -> None:
    """
    Writes submitted while a transaction is in flight commit together, and
    each Deferred fires only once its write is visible to a new connection.
    """
    blocker = _Blocker()
    held = await blocker.hold(sqlite_db.run)
    before = sqlite_db.commits
    seen: list[bool] = []
    writes = [
        sqlite_db.run_for(f"account{n % 3}", _insert, n).addCallback(
            lambda value: seen.append(_sqlite_visible(sqlite_db.path, value))
        )
        for n in range(20)
    ]
    blocker.release.set()
    await held
    await defer.gatherResults(writes)
    assert seen == [True] * 20
    assert sqlite_db.commits - before == 2  # the blocker's, then the group's


@pytest_twisted.ensureDeferred
async def test_sqlite_failing_write_fails_alone(sqlite_db: SQLiteDatabase) -> None:
    """
    A write raising in the middle of a group is rolled back and fails; the
    writes before and after it commit, in the same transaction.
    """
    blocker = _Blocker()
    held = await blocker.hold(sqlite_db.run)
    before = sqlite_db.commits
    first = sqlite_db.run(_insert, 1)
    failing = sqlite_db.run(_fail, 2)
    duplicate = sqlite_db.run(_insert, 1)  # UNIQUE: an SQL error, alone too
    last = sqlite_db.run(_insert, 3)
    blocker.release.set()
    await held
    assert await first == 1
    with pytest.raises(ValueError):
        await failing
    with pytest.raises(sqlite3.IntegrityError):
        await duplicate
    assert await last == 3
    assert sqlite_db.commits - before == 2
    assert [_sqlite_visible(sqlite_db.path, n) for n in (1, 2, 3)] == [True, False, True]


@pytest_twisted.ensureDeferred
async def test_sqlite_failed_commit_runs_writes_alone(sqlite_db: SQLiteDatabase) -> None:
    """
    When the group's COMMIT fails, each write runs again in a transaction of
    its own: only the one that cannot commit fails.
    """
    blocker = _Blocker()
    held = await blocker.hold(sqlite_db.run)
    before = sqlite_db.commits
    first = sqlite_db.run(_insert, 1)
    orphan = sqlite_db.run(_orphan)
    last = sqlite_db.run(_insert, 2)
    blocker.release.set()
    await held
    assert await first == 1
    with pytest.raises(sqlite3.IntegrityError):
        await orphan
    assert await last == 2
    # The blocker, then the two good writes alone.
    assert sqlite_db.commits - before == 3
    assert _sqlite_visible(sqlite_db.path, 1) and _sqlite_visible(sqlite_db.path, 2)


@pytest_twisted.ensureDeferred
async def test_sqlite_groups_are_bounded(tmp_path: Any) -> None:
    """
    A burst larger than the group limit commits in several transactions.
    """
    from twisted.internet import reactor

    db = SQLiteDatabase(str(tmp_path / "db.sqlite3"), reactor, migrations=[_SCHEMA])
    db.group_limit = 4
    await db.start()
    try:
        blocker = _Blocker()
        held = await blocker.hold(db.run)
        before = db.commits
        writes = [db.run(_insert, n) for n in range(10)]
        blocker.release.set()
        await held
        assert await defer.gatherResults(writes) == list(range(10))
        assert db.commits - before == 1 + 3  # the blocker, then 4 + 4 + 2
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_stop_waits_for_queued_writes(sqlite_db: SQLiteDatabase) -> None:
    """
    Stopping the database waits for the writes queued behind the one in
    flight, and they commit.
    """
    blocker = _Blocker()
    held = await blocker.hold(sqlite_db.run)
    writes = [sqlite_db.run(_insert, n) for n in range(5)]
    stopped = sqlite_db.stop()
    blocker.release.set()
    await held
    await stopped
    assert await defer.gatherResults(writes) == list(range(5))
    assert all(_sqlite_visible(sqlite_db.path, n) for n in range(5))


# -- PostgreSQL -----------------------------------------------------------------

_PG_SCHEMA = (
    "CREATE TABLE t (x INTEGER UNIQUE);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (parent_id INTEGER"
    " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
    # A row of doomed makes the COMMIT holding it lose its connection.
    "CREATE TABLE ran (n SERIAL PRIMARY KEY, label TEXT);"
    "CREATE TABLE doomed (x INTEGER);"
    "CREATE FUNCTION doom() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;"
    "CREATE CONSTRAINT TRIGGER doomed_at_commit AFTER INSERT ON doomed"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION doom();"
)


@pytest_twisted.async_yield_fixture
async def pg_db(fresh_postgres_dsn: str) -> AsyncIterator[PostgresDatabase]:
    db = await started_database(
        fresh_postgres_dsn, pool_size=3, write_lanes=1, migrations=[_PG_SCHEMA]
    )
    try:
        yield db
    finally:
        await db.stop()


def _pg_visible(dsn: str, value: int) -> bool:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM t WHERE x = %s", (value,)).fetchone()
        return row is not None and row[0] == 1


def _pg_fail(statements: Statements, value: int) -> None:
    statements.execute("INSERT INTO t (x) VALUES (?)", (value,))
    raise ValueError(value)


@pytest_twisted.ensureDeferred
async def test_postgres_lone_write_is_one_transaction(pg_db: PostgresDatabase) -> None:
    """
    A write on an idle database commits in one transaction of its own.
    """
    before = pg_db.commits
    assert await pg_db.run_for("a", _insert, 1) == 1
    assert pg_db.commits == before + 1


@pytest_twisted.ensureDeferred
async def test_postgres_writes_together_share_a_commit(
    pg_db: PostgresDatabase, fresh_postgres_dsn: str
) -> None:
    """
    Writes of several accounts submitted while a transaction is in flight
    commit together; each Deferred fires once its write is visible to a
    new connection.
    """
    blocker = _Blocker()
    held = await blocker.hold(pg_db.run)
    before = pg_db.commits
    seen: list[bool] = []
    writes = [
        pg_db.run_for(f"account{n % 5}", _insert, n).addCallback(
            lambda value: seen.append(_pg_visible(fresh_postgres_dsn, value))
        )
        for n in range(20)
    ]
    blocker.release.set()
    await held
    await defer.gatherResults(writes)
    assert seen == [True] * 20
    assert pg_db.commits - before == 2


@pytest_twisted.ensureDeferred
async def test_postgres_failing_write_fails_alone(
    pg_db: PostgresDatabase, fresh_postgres_dsn: str
) -> None:
    """
    A write raising in the middle of a group (in Python, or with an SQL
    error) is rolled back to its savepoint and fails; the others commit
    together.
    """
    blocker = _Blocker()
    held = await blocker.hold(pg_db.run)
    before = pg_db.commits
    first = pg_db.run(_insert, 1)
    failing = pg_db.run(_pg_fail, 2)
    duplicate = pg_db.run(_insert, 1)
    last = pg_db.run(_insert, 3)
    blocker.release.set()
    await held
    assert await first == 1
    with pytest.raises(ValueError):
        await failing
    with pytest.raises(psycopg.errors.UniqueViolation):
        await duplicate
    assert await last == 3
    assert pg_db.commits - before == 2
    assert [_pg_visible(fresh_postgres_dsn, n) for n in (1, 2, 3)] == [True, False, True]


@pytest_twisted.ensureDeferred
async def test_postgres_failed_commit_runs_writes_alone(
    pg_db: PostgresDatabase, fresh_postgres_dsn: str
) -> None:
    """
    When the group's COMMIT fails, each write runs again alone: only the
    one that cannot commit fails.
    """
    blocker = _Blocker()
    held = await blocker.hold(pg_db.run)
    before = pg_db.commits
    first = pg_db.run_for("b", _insert, 1)
    orphan = pg_db.run_for("a", _orphan)
    last = pg_db.run_for("c", _insert, 2)
    blocker.release.set()
    await held
    assert await first == 1
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await orphan
    assert await last == 2
    assert pg_db.commits - before == 3
    assert _pg_visible(fresh_postgres_dsn, 1) and _pg_visible(fresh_postgres_dsn, 2)


def _doom(statements: Statements) -> None:
    statements.execute("INSERT INTO doomed (x) VALUES (1)")


@pytest_twisted.ensureDeferred
async def test_postgres_commit_in_doubt_fails_the_whole_group(pg_db: PostgresDatabase) -> None:
    """
    When the connection is lost during the group's COMMIT, whether it
    committed is unknown: every write of the group fails, none runs again;
    a write that had failed alone keeps its own error.
    """
    blocker = _Blocker()
    held = await blocker.hold(pg_db.run)
    before = pg_db.commits
    first = pg_db.run_for("a", _insert, 1)
    failing = pg_db.run_for("b", _pg_fail, 2)
    doomed = pg_db.run_for("c", _doom)
    blocker.release.set()
    await held
    for write in (first, doomed):
        with pytest.raises(psycopg.OperationalError):
            await write
    with pytest.raises(ValueError):
        await failing
    assert pg_db.commits - before == 1  # the blocker's only
    # The pool replaced the lost connection.
    assert await pg_db.run_for("a", _insert, 3) == 3


def _ran(statements: Statements, label: str) -> str:
    statements.execute("INSERT INTO ran (label) VALUES (?)", (label,))
    return label


@pytest_twisted.ensureDeferred
async def test_postgres_group_runs_in_account_order(
    pg_db: PostgresDatabase, fresh_postgres_dsn: str
) -> None:
    """
    A group runs its writes in the order of their accounts (so every group
    takes account row locks in the same order), one account's writes in
    the order submitted.
    """
    blocker = _Blocker()
    held = await blocker.hold(pg_db.run)
    labels = ["c1", "a1", "b1", "a2", "c2"]
    writes = [pg_db.run_for(label[0], _ran, label) for label in labels]
    blocker.release.set()
    await held
    assert await defer.gatherResults(writes) == labels
    with psycopg.connect(fresh_postgres_dsn) as connection:
        rows = connection.execute("SELECT label FROM ran ORDER BY n").fetchall()
    assert [label for (label,) in rows] == ["a1", "a2", "b1", "c1", "c2"]
