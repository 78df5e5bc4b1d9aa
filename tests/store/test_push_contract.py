"""
The contract of :class:`jmap_twisted.interfaces.IPushSubscriptions`
(:class:`jmap_twisted.testing.PushSubscriptionsContract`), run against
every implementation, and what only the SQL backends add: subscriptions
belong to users of the directory in the same database, and several
processes over one database agree on them and on the VAPID key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IDirectory, IPushSubscriptions
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.postgres.directory import PostgresDirectory, PostgresPushSubscriptions
from jmap_twisted.store.sql.push import SQLPushSubscriptions
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteDirectory, SQLitePushSubscriptions
from jmap_twisted.testing import MemoryPushSubscriptions, NewUser, PushSubscriptionsContract
from jmap_twisted.testing._push import subscription
from tests.store.postgres_backend import started_database


def directory_users(directory: IDirectory) -> NewUser:
    """
    Users made in ``directory``: the SQL stores accept subscriptions only
    for the users of the directory sharing their database.
    """

    async def user(name: str) -> str:
        return (await directory.create_user(name, None)).id

    return user


class TestMemoryPushSubscriptions(PushSubscriptionsContract):
    """
    Push subscriptions in memory, for any user id.
    """

    @pytest.fixture
    def push_subscriptions(self) -> IPushSubscriptions:
        return MemoryPushSubscriptions()


class TestSQLitePushSubscriptions(PushSubscriptionsContract):
    """
    Push subscriptions in a fresh SQLite database, for the users of its
    directory.
    """

    @pytest.fixture
    def push_subscriptions(self, sqlite_database: SQLiteDatabase) -> IPushSubscriptions:
        return SQLitePushSubscriptions(sqlite_database)

    @pytest.fixture
    def new_user(self, sqlite_database: SQLiteDatabase) -> NewUser:
        return directory_users(SQLiteDirectory(sqlite_database, Clock()))


class TestPostgresPushSubscriptions(PushSubscriptionsContract):
    """
    Push subscriptions in a fresh PostgreSQL database, for the users of its
    directory.
    """

    @pytest.fixture
    def push_subscriptions(self, postgres_database: PostgresDatabase) -> IPushSubscriptions:
        return PostgresPushSubscriptions(postgres_database)

    @pytest.fixture
    def new_user(self, postgres_database: PostgresDatabase) -> NewUser:
        return directory_users(PostgresDirectory(postgres_database, Clock()))


# Specific to the SQL backends: the subscriptions live with the directory.


@pytest.fixture(params=["sqlite", "postgres"])
def sql_backend(request: pytest.FixtureRequest) -> tuple[IDirectory, SQLPushSubscriptions]:
    """
    A directory and the push subscriptions in the same fresh database.
    """
    if request.param == "sqlite":
        sqlite: SQLiteDatabase = request.getfixturevalue("sqlite_database")
        return SQLiteDirectory(sqlite, Clock()), SQLitePushSubscriptions(sqlite)
    postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
    return PostgresDirectory(postgres, Clock()), PostgresPushSubscriptions(postgres)


@pytest_twisted.ensureDeferred
async def test_deleted_user_takes_subscriptions(
    sql_backend: tuple[IDirectory, SQLPushSubscriptions],
) -> None:
    """
    Deleting a user deletes their push subscriptions, so no node pushes to
    them any more: the version moves and active() no longer lists them;
    another user's stay.
    """
    directory, push = sql_backend
    alice = await directory.create_user("alice", None)
    bob = await directory.create_user("bob", None)
    await push.add(subscription("p1", alice.id))
    await push.add(subscription("p2", alice.id))
    await push.add(subscription("p3", bob.id))
    version = await push.version()

    assert await directory.delete_user("alice") is True

    assert await push.for_user(alice.id) == []
    assert [r.id for r in await push.active(0)] == ["p3"]
    assert await push.version() > version


@pytest_twisted.ensureDeferred
async def test_deleting_user_without_subscriptions_keeps_version(
    sql_backend: tuple[IDirectory, SQLPushSubscriptions],
) -> None:
    """
    Deleting a user who had no push subscriptions leaves the version, so
    the nodes pushing have nothing to reload.
    """
    directory, push = sql_backend
    alice = await directory.create_user("alice", None)
    await directory.create_user("bob", None)
    await push.add(subscription("p1", alice.id))
    version = await push.version()

    assert await directory.delete_user("bob") is True

    assert await push.version() == version
    assert [r.id for r in await push.for_user(alice.id)] == ["p1"]


@pytest_twisted.ensureDeferred
async def test_sqlite_add_needs_existing_user(sqlite_database: SQLiteDatabase) -> None:
    """
    The SQLite store refuses a subscription for a user its directory does
    not have, rather than keep one nobody can see, and the version stays.
    """
    push = SQLitePushSubscriptions(sqlite_database)
    version = await push.version()
    with pytest.raises(sqlite3.IntegrityError):
        await push.add(subscription("p1", "nobody"))
    assert await push.active(0) == []
    assert await push.version() == version


@pytest_twisted.ensureDeferred
async def test_sqlite_processes_share_subscriptions(tmp_path: Path) -> None:
    """
    Two SQLiteDatabase instances on one file, as a server and jmap-admin
    have, see each other's subscriptions, version and VAPID key at once.
    """
    from twisted.internet import reactor

    path = database_path(str(tmp_path))
    server_db, admin_db = SQLiteDatabase(path, reactor), SQLiteDatabase(path, reactor)
    await server_db.start()
    await admin_db.start()
    try:
        server, admin = SQLitePushSubscriptions(server_db), SQLitePushSubscriptions(admin_db)
        alice = await SQLiteDirectory(admin_db, Clock()).create_user("alice", None)
        version = await server.version()

        record = subscription("p1", alice.id)
        await admin.add(record)
        assert await server.for_user(alice.id) == [record]
        assert await server.version() > version

        assert await server.set_vapid_key(b"server key", only_if_unset=True) == b"server key"
        assert await admin.set_vapid_key(b"admin key", only_if_unset=True) == b"server key"
        await admin.set_vapid_key(b"rotated key", only_if_unset=False)
        assert await server.vapid_key() == b"rotated key"
    finally:
        await admin_db.stop()
        await server_db.stop()


@pytest_twisted.ensureDeferred
async def test_postgres_nodes_agree_on_first_vapid_key(fresh_postgres_dsn: str) -> None:
    """
    Nodes starting together over one PostgreSQL database, each storing a
    key of its own unless one is set, all end up with the same key: the
    one stored first.
    """
    nodes = [await started_database(fresh_postgres_dsn, pool_size=1) for _ in range(4)]
    try:
        stores = [PostgresPushSubscriptions(db) for db in nodes]
        results: list[tuple[bool, Any]] = await DeferredList(
            [
                store.set_vapid_key(f"key of node {n}".encode(), only_if_unset=True)
                for n, store in enumerate(stores)
            ],
            consumeErrors=True,
        )
        assert all(ok for ok, _ in results), results
        (kept,) = {key for _, key in results}
        assert kept in {f"key of node {n}".encode() for n in range(4)}
        for store in stores:
            assert await store.vapid_key() == kept
    finally:
        for db in nodes:
            await db.stop()
