"""
The contract of :class:`jmap_twisted.interfaces.IBlobStore`, run against
every implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IBlobStore, IDirectory
from jmap_twisted.records import BlobInfo
from jmap_twisted.store import ids
from jmap_twisted.store.ids import is_valid_id
from jmap_twisted.store.memory.directory import MemoryBlobStore
from jmap_twisted.store.postgres.directory import PostgresBlobStore, PostgresDirectory
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteBlobStore, SQLiteDirectory
from tests.store.postgres_backend import fresh_dsn, started_database


@attrs.frozen
class Blobs:
    """
    A blob store under test, and how to make an account to store blobs in
    (the SQLite store only accepts accounts of its directory).
    """

    store: IBlobStore
    new_account: Callable[[str], Awaitable[str]]


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite", "postgres"])
async def blobs(request, tmp_path) -> AsyncIterator[Blobs]:
    clock = Clock()
    if request.param == "memory":

        async def any_account(name: str) -> str:
            return ids.new_account_id()

        yield Blobs(MemoryBlobStore(clock), any_account)
        return
    from twisted.internet import reactor

    db: Any
    if request.param == "postgres":
        db = await started_database(fresh_dsn(request))
        directory: IDirectory = PostgresDirectory(db, clock)
        store: IBlobStore = PostgresBlobStore(db, clock)
    else:
        db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
        await db.start()
        directory = SQLiteDirectory(db, clock)
        store = SQLiteBlobStore(db, clock)

    async def personal_account(name: str) -> str:
        user = await directory.create_user(name, None)
        (account,) = await directory.accounts_for_user(user.id)
        return account.id

    try:
        yield Blobs(store, personal_account)
    finally:
        await db.stop()


def test_provides_interface(blobs):
    """
    Every implementation provides IBlobStore fully.
    """
    assert verifyObject(IBlobStore, blobs.store)


@pytest_twisted.ensureDeferred
async def test_put_get_roundtrip(blobs):
    """
    Stored octets come back with their size, media type and account.
    """
    account = await blobs.new_account("alice")
    info = await blobs.store.put(account, b"Hello, world!", "text/plain")
    assert info == BlobInfo(account_id=account, blob_id=info.blob_id, size=13, type="text/plain")
    assert is_valid_id(info.blob_id)
    assert await blobs.store.get(account, info.blob_id) == (info, b"Hello, world!")


@pytest_twisted.ensureDeferred
async def test_blob_id_is_content_address(blobs):
    """
    The blob id is G followed by the SHA-256 of the content, so the same
    octets get the same id (in one account or several) and different octets
    different ids.
    """
    alice = await blobs.new_account("alice")
    bob = await blobs.new_account("bob")
    first = await blobs.store.put(alice, b"same", "text/plain")
    again = await blobs.store.put(alice, b"same", "text/plain")
    bobs = await blobs.store.put(bob, b"same", "application/octet-stream")
    other = await blobs.store.put(alice, b"other", "text/plain")
    assert first.blob_id == "G" + hashlib.sha256(b"same").hexdigest()
    assert first.blob_id == again.blob_id == bobs.blob_id
    assert other.blob_id != first.blob_id


@pytest_twisted.ensureDeferred
async def test_blob_scoped_to_account(blobs):
    """
    A blob is visible only to accounts that stored it: another account gets
    None, until it stores the same octets itself.
    """
    alice = await blobs.new_account("alice")
    bob = await blobs.new_account("bob")
    info = await blobs.store.put(alice, b"secret", "text/plain")
    assert await blobs.store.get(bob, info.blob_id) is None
    bobs = await blobs.store.put(bob, b"secret", "application/x-bob")
    assert await blobs.store.get(bob, info.blob_id) == (bobs, b"secret")
    assert await blobs.store.get(alice, info.blob_id) == (info, b"secret")


@pytest_twisted.ensureDeferred
async def test_storing_again_replaces_type(blobs):
    """
    Storing octets the account already has keeps the id and takes the new
    media type.
    """
    alice = await blobs.new_account("alice")
    await blobs.store.put(alice, b"data", "text/plain")
    info = await blobs.store.put(alice, b"data", "application/json")
    assert info.type == "application/json"
    assert await blobs.store.get(alice, info.blob_id) == (info, b"data")


@pytest_twisted.ensureDeferred
async def test_unknown_blob(blobs):
    """
    A blob id nobody stored gives None, whether well-formed or not.
    """
    alice = await blobs.new_account("alice")
    await blobs.store.put(alice, b"data", "text/plain")
    assert await blobs.store.get(alice, ids.blob_id(b"never stored")) is None
    assert await blobs.store.get(alice, "not-a-blob") is None


@pytest_twisted.ensureDeferred
async def test_empty_blob(blobs):
    """
    An empty blob is stored and returned, with size 0.
    """
    alice = await blobs.new_account("alice")
    info = await blobs.store.put(alice, b"", "application/octet-stream")
    assert info.size == 0
    assert await blobs.store.get(alice, info.blob_id) == (info, b"")


@pytest_twisted.ensureDeferred
async def test_binary_blob(blobs):
    """
    Arbitrary octets, NULs included, come back unchanged.
    """
    alice = await blobs.new_account("alice")
    data = b"\0" + bytes(range(256)) * 64 + b"\0\0"
    info = await blobs.store.put(alice, data, "application/octet-stream")
    assert info.size == len(data)
    result = await blobs.store.get(alice, info.blob_id)
    assert result is not None
    assert result[1] == data


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
