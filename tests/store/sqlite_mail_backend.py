"""
The SQLite backend of the mail contract suite
(:mod:`tests.store.test_mail_contract`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.interfaces import IMailStore


async def sqlite_backend(tmp_path: Path, clock: IReactorTime) -> AsyncIterator[IMailStore]:
    """
    A :class:`~jmap_twisted.store.sqlite.mail.SQLiteMailStore` over a fresh
    database in ``tmp_path``, reading commit times from ``clock``, stopped
    after the test.
    """
    from twisted.internet import reactor

    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.mail import SQLiteMailStore

    db = SQLiteDatabase(str(tmp_path / "mail.sqlite3"), reactor)
    await db.start()
    try:
        yield SQLiteMailStore(db, clock)
    finally:
        await db.stop()
