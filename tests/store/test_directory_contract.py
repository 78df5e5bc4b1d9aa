"""
The contract of :class:`jmap_twisted.interfaces.IDirectory`
(:class:`jmap_twisted.testing.DirectoryContract`), run against every
implementation, and what only SQLite adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IDirectory
from jmap_twisted.store.memory.directory import MemoryDirectory
from jmap_twisted.store.postgres.directory import PostgresDirectory
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteDirectory
from jmap_twisted.testing import DirectoryContract
from tests.store.postgres_backend import started_database


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


class TestMemoryDirectory(DirectoryContract):
    """
    The directory in memory.
    """

    @pytest.fixture
    def directory(self, clock: Clock) -> IDirectory:
        return MemoryDirectory(clock)


class TestSQLiteDirectory(DirectoryContract):
    """
    The directory in a fresh SQLite database.
    """

    @pytest_twisted.async_yield_fixture
    async def directory(self, tmp_path: Path, clock: Clock) -> AsyncIterator[IDirectory]:
        from twisted.internet import reactor

        db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
        await db.start()
        try:
            yield SQLiteDirectory(db, clock)
        finally:
            await db.stop()


class TestPostgresDirectory(DirectoryContract):
    """
    The directory in a fresh database of the test PostgreSQL cluster.
    """

    @pytest_twisted.async_yield_fixture
    async def directory(self, fresh_postgres_dsn: str, clock: Clock) -> AsyncIterator[IDirectory]:
        db = await started_database(fresh_postgres_dsn)
        try:
            yield PostgresDirectory(db, clock)
        finally:
            await db.stop()


@pytest_twisted.ensureDeferred
async def test_delegations_shared_between_databases(tmp_path, clock):
    """
    Two SQLiteDatabase instances on one file, as a server and jmap-admin
    have, see each other's delegations, revocations and access versions at
    once.
    """
    from twisted.internet import reactor

    path = database_path(str(tmp_path))
    server_db, admin_db = SQLiteDatabase(path, reactor), SQLiteDatabase(path, reactor)
    await server_db.start()
    await admin_db.start()
    try:
        server, admin = SQLiteDirectory(server_db, clock), SQLiteDirectory(admin_db, clock)
        alice = await admin.create_user("alice", None)
        bob = await admin.create_user("bob", None)
        version = await server.access_version()

        await admin.delegate("alice", "bob")
        assert [a.owner_id for a in await server.accounts_for_user(bob.id)] == [bob.id, alice.id]
        assert await server.delegations("alice") == [bob]
        granted = await server.access_version()
        assert granted > version

        assert await server.revoke_delegation("alice", "bob") is True
        assert [a.owner_id for a in await admin.accounts_for_user(bob.id)] == [bob.id]
        assert await admin.access_version() > granted
        assert await admin.revoke_delegation("alice", "bob") is False
    finally:
        await admin_db.stop()
        await server_db.stop()
