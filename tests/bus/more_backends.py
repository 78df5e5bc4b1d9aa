"""
Dead letters in the databases, for the dead-letter contract suite
(:mod:`tests.bus.test_bus_contract`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from jmap_twisted.interfaces import IEventDeadLetters


async def sqlite_dead_letters(tmp_path: Path) -> AsyncIterator[IEventDeadLetters]:
    """
    Dead letters in a fresh SQLite database in ``tmp_path``, stopped
    afterwards.
    """
    from twisted.internet import reactor

    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.deadletters import SQLiteDeadLetters

    db = SQLiteDatabase(str(tmp_path / "dl.sqlite3"), reactor)
    await db.start()
    try:
        yield SQLiteDeadLetters(db, reactor)
    finally:
        await db.stop()


async def postgres_dead_letters(dsn: str) -> AsyncIterator[IEventDeadLetters]:
    """
    Dead letters in the fresh PostgreSQL database ``dsn``, stopped
    afterwards.
    """
    from twisted.internet import reactor

    from jmap_twisted.store.postgres.deadletters import PostgresDeadLetters
    from tests.store.postgres_backend import started_database

    db = await started_database(dsn)
    try:
        yield PostgresDeadLetters(db, reactor)
    finally:
        await db.stop()
