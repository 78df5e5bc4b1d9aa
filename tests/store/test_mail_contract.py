"""
The contract every :class:`~jmap_twisted.interfaces.IMailStore` meets
(:class:`jmap_twisted.testing.MailStoreContract`), run against each
backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IMailStore
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.testing import MailStoreContract
from tests.store.postgres_backend import postgres_mail_backend
from tests.store.sqlite_mail_backend import sqlite_backend


class TestMemoryMailStore(MailStoreContract):
    """
    The reference store, in memory.
    """

    @pytest.fixture
    def mail_store(self, clock: Clock) -> IMailStore:
        return MemoryMailStore(clock)


class TestSQLiteMailStore(MailStoreContract):
    """
    The SQLite store, over a fresh database file.
    """

    @pytest_twisted.async_yield_fixture
    async def mail_store(self, tmp_path: Path, clock: Clock) -> AsyncIterator[IMailStore]:
        async for store in sqlite_backend(tmp_path, clock):
            yield store


class TestPostgresMailStore(MailStoreContract):
    """
    The PostgreSQL store, over a fresh database of the test cluster.
    """

    @pytest_twisted.async_yield_fixture
    async def mail_store(self, fresh_postgres_dsn: str, clock: Clock) -> AsyncIterator[IMailStore]:
        async for store in postgres_mail_backend(fresh_postgres_dsn, clock):
            yield store
