"""
Implementations beyond the in-memory ones that the bus contract suite
(:mod:`tests.bus.test_bus_contract`) also runs against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from jmap_twisted.interfaces import IEventDeadLetters


async def _sqlite_dead_letters(tmp_path: Path) -> AsyncIterator[IEventDeadLetters]:
    from twisted.internet import reactor

    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.deadletters import SQLiteDeadLetters

    db = SQLiteDatabase(str(tmp_path / "dl.sqlite3"), reactor)
    await db.start()
    try:
        yield SQLiteDeadLetters(db, reactor)
    finally:
        await db.stop()


async def _postgres_dead_letters(tmp_path: Path) -> AsyncIterator[IEventDeadLetters]:
    from twisted.internet import reactor

    from jmap_twisted.store.postgres.deadletters import PostgresDeadLetters
    from tests.services.postgres import fresh_database, shared_cluster
    from tests.store.postgres_backend import started_database

    dsn = fresh_database()
    db = await started_database(dsn)
    try:
        yield PostgresDeadLetters(db, reactor)
    finally:
        await db.stop()
        shared_cluster().drop_database(dsn)


def register_backends(
    buses: dict[str, Callable[[Path], Any]], dead_letters: dict[str, Callable[[Path], Any]]
) -> None:
    """
    Add the SQLite dead letters and the RabbitMQ buses to the suite.

    :param buses: name → factory of (bus, dead letters).
    :param dead_letters: name → factory of dead letters.
    """
    dead_letters["sqlite"] = _sqlite_dead_letters
    dead_letters["postgres"] = _postgres_dead_letters
    from tests.bus.amqp_backends import register_amqp

    register_amqp(buses)
