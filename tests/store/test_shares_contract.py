"""
The contract of :class:`jmap_twisted.interfaces.IMailboxShares`
(:class:`jmap_twisted.testing.MailboxSharesContract`), run against every
directory, and what only the SQL directories add: shares seen at once by
another process over the same database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IDirectory
from jmap_twisted.store.memory.directory import MemoryDirectory
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.postgres.directory import PostgresDirectory
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteDirectory
from jmap_twisted.testing import MailboxSharesContract


class TestMemoryShares(MailboxSharesContract):
    """
    The shares of the directory in memory.
    """

    @pytest.fixture
    def directory(self, clock: Clock) -> IDirectory:
        return MemoryDirectory(clock)


class TestSQLiteShares(MailboxSharesContract):
    """
    The shares of the directory in a fresh SQLite database.
    """

    @pytest.fixture
    def directory(self, sqlite_database: SQLiteDatabase, clock: Clock) -> IDirectory:
        return SQLiteDirectory(sqlite_database, clock)


class TestPostgresShares(MailboxSharesContract):
    """
    The shares of the directory in a fresh database of the test PostgreSQL
    cluster.
    """

    @pytest.fixture
    def directory(self, postgres_database: PostgresDatabase, clock: Clock) -> IDirectory:
        return PostgresDirectory(postgres_database, clock)


@pytest_twisted.ensureDeferred
async def test_shares_seen_by_another_process(tmp_path: Path) -> None:
    """
    A share granted through one SQLite database instance (``jmap-admin``)
    is listed at once through another on the same file (a running server),
    and so is its revocation.
    """
    from twisted.internet import reactor

    clock = Clock()
    path = database_path(str(tmp_path))
    server_db, admin_db = SQLiteDatabase(path, reactor), SQLiteDatabase(path, reactor)
    await server_db.start()
    await admin_db.start()
    try:
        server, admin = SQLiteDirectory(server_db, clock), SQLiteDirectory(admin_db, clock)
        alice = await admin.create_user("alice", None)
        bob = await admin.create_user("bob", None)
        (account,) = await server.accounts_for_user(alice.id)
        await admin.set_rights(account.id, "Minbox", bob.id, "lrs", alice.id)
        ((listed, view),) = await server.shared_views_for_user(bob.id)
        assert listed == account
        assert view.rights == (("Minbox", "lrs"),)
        await admin.set_rights(account.id, "Minbox", bob.id, "", None)
        assert await server.shared_views_for_user(bob.id) == []
    finally:
        await admin_db.stop()
        await server_db.stop()
