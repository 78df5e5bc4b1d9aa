"""
Dead letters in an SQLite database, so that they survive restarts and the
``jmap-admin`` command can list them and mark them for redelivery while a
server runs on the same database.  The transactions are those of
:mod:`jmap_twisted.store.sql.deadletters`, shared with PostgreSQL.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.store.sql.deadletters import DeadLetterSummary, SQLDeadLetters
from jmap_twisted.store.sqlite.database import SQLiteDatabase

__all__ = ["DeadLetterSummary", "SQLiteDeadLetters"]


class SQLiteDeadLetters(SQLDeadLetters):
    """
    :class:`~jmap_twisted.interfaces.IEventDeadLetters` in an SQLite
    database.

    Every call is one transaction, without caching, so letters stored or
    marked by another process over the same file are seen by the next call.
    Insertion ids are random (never reused), letters are listed in the
    order they were stored, and marking a letter again counts it again.

    :param db: the started database.
    :param clock: gives the time a letter was stored.
    """

    def __init__(self, db: SQLiteDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)
