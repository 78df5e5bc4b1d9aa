"""
Dead letters in a PostgreSQL database shared by every server node: the
transactions of :mod:`jmap_twisted.store.sql.deadletters`, as for SQLite.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.sql.deadletters import SQLDeadLetters


class PostgresDeadLetters(SQLDeadLetters):
    """
    :class:`~jmap_twisted.interfaces.IEventDeadLetters` in the started
    PostgreSQL database ``db`` (``clock`` dates the letters), with
    :meth:`group_counts` and :meth:`summaries` for the admin command.
    """

    def __init__(self, db: PostgresDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)
