"""
The contract of :class:`jmap_twisted.interfaces.IBlobStore`
(:class:`jmap_twisted.testing.BlobStoreContract`), run against every
implementation, and what only SQLite adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IBlobStore, IDirectory
from jmap_twisted.store.memory.directory import MemoryBlobStore
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.postgres.directory import PostgresBlobStore, PostgresDirectory
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteBlobStore, SQLiteDirectory
from jmap_twisted.testing import BlobStoreContract, NewAccount
from tests.store.postgres_backend import started_database


def personal_accounts(directory: IDirectory) -> NewAccount:
    """
    Accounts made as users of ``directory``: the SQL blob stores accept
    blobs only for the accounts of the directory sharing their database.
    """

    async def personal_account(name: str) -> str:
        user = await directory.create_user(name, None)
        (account,) = await directory.accounts_for_user(user.id)
        return account.id

    return personal_account


class TestMemoryBlobStore(BlobStoreContract):
    """
    Blobs in memory, for any account id.
    """

    @pytest.fixture
    def blob_store(self, clock: Clock) -> IBlobStore:
        return MemoryBlobStore(clock)


class TestSQLiteBlobStore(BlobStoreContract):
    """
    Blobs in a fresh SQLite database, for the accounts of its directory.
    """

    @pytest_twisted.async_yield_fixture
    async def database(self, tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
        from twisted.internet import reactor

        db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
        await db.start()
        try:
            yield db
        finally:
            await db.stop()

    @pytest.fixture
    def blob_store(self, database: SQLiteDatabase, clock: Clock) -> IBlobStore:
        return SQLiteBlobStore(database, clock)

    @pytest.fixture
    def new_account(self, database: SQLiteDatabase, clock: Clock) -> NewAccount:
        return personal_accounts(SQLiteDirectory(database, clock))


class TestPostgresBlobStore(BlobStoreContract):
    """
    Blobs in a fresh PostgreSQL database, for the accounts of its directory.
    """

    @pytest_twisted.async_yield_fixture
    async def database(self, fresh_postgres_dsn: str) -> AsyncIterator[PostgresDatabase]:
        db = await started_database(fresh_postgres_dsn)
        try:
            yield db
        finally:
            await db.stop()

    @pytest.fixture
    def blob_store(self, database: PostgresDatabase, clock: Clock) -> IBlobStore:
        return PostgresBlobStore(database, clock)

    @pytest.fixture
    def new_account(self, database: PostgresDatabase, clock: Clock) -> NewAccount:
        return personal_accounts(PostgresDirectory(database, clock))


# Specific to SQLite: the blob store shares its database with the directory.


@pytest_twisted.ensureDeferred
async def test_sqlite_deleted_user_takes_blobs(tmp_path):
    """
    Deleting a user makes their blobs invisible and deletes the octets no
    other account stored; octets another account stored remain for it.
    """
    from twisted.internet import reactor

    clock = Clock()
    db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
    await db.start()
    try:
        directory: IDirectory = SQLiteDirectory(db, clock)
        store = SQLiteBlobStore(db, clock)
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        (alices,) = await directory.accounts_for_user(alice.id)
        (bobs,) = await directory.accounts_for_user(bob.id)
        own = await store.put(alices.id, b"only alice", "text/plain")
        shared = await store.put(alices.id, b"both", "text/plain")
        await store.put(bobs.id, b"both", "text/plain")

        await directory.delete_user("alice")

        assert await store.get(alices.id, own.blob_id) is None
        assert await store.get(alices.id, shared.blob_id) is None
        kept = await store.get(bobs.id, shared.blob_id)
        assert kept is not None and kept[1] == b"both"
        stored = await db.read(lambda c: [row[0] for row in c.execute("SELECT id FROM blobs")])
        assert stored == [shared.blob_id]
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_put_needs_existing_account(tmp_path):
    """
    The SQLite store refuses blobs for an account its directory does not
    have, rather than keep unreachable data.
    """
    import sqlite3

    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
    await db.start()
    try:
        store = SQLiteBlobStore(db, Clock())
        with pytest.raises(sqlite3.IntegrityError):
            await store.put("anobody", b"data", "text/plain")
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM blobs").fetchone()[0]) == 0
    finally:
        await db.stop()
