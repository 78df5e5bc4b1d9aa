"""
Started databases of both SQL backends, fresh for each test, for the
store tests (``fresh_postgres_dsn`` comes from the suite's conftest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted

from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from tests.store.postgres_backend import started_database


@pytest_twisted.async_yield_fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(tmp_path)), reactor)
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


@pytest_twisted.async_yield_fixture
async def postgres_database(fresh_postgres_dsn: str) -> AsyncIterator[PostgresDatabase]:
    db = await started_database(fresh_postgres_dsn)
    try:
        yield db
    finally:
        await db.stop()
