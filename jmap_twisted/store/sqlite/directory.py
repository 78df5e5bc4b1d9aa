"""
The directory, blob store and push subscriptions over a
:class:`~jmap_twisted.store.sqlite.database.SQLiteDatabase`.

Every call is one transaction on the database, with no caching in this
process: a change made by another process over the same file (a user added
or a token revoked with ``jmap-admin``) is seen by the next call here.  The
transactions are those of :mod:`jmap_twisted.store.sql.directory` and
:mod:`jmap_twisted.store.sql.push`, shared with PostgreSQL.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.store.sql.directory import SQLBlobStore, SQLDirectory
from jmap_twisted.store.sql.push import SQLPushSubscriptions
from jmap_twisted.store.sqlite.database import SQLiteDatabase


class SQLiteDirectory(SQLDirectory):
    """
    :class:`~jmap_twisted.interfaces.IDirectory` in an SQLite database.

    Deleting a user also deletes the blobs that only their accounts stored,
    and the delegations of their accounts and to them.

    :param db: the started database.
    :param clock: gives the ``created`` time of users, accounts, tokens and
        delegations.
    """

    def __init__(self, db: SQLiteDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)


class SQLiteBlobStore(SQLBlobStore):
    """
    :class:`~jmap_twisted.interfaces.IBlobStore` in the started SQLite
    database ``db`` of the :class:`SQLiteDirectory` whose accounts the
    blobs belong to (see :class:`~jmap_twisted.store.sql.directory.SQLBlobStore`);
    ``clock`` gives the time a blob was stored.
    """

    def __init__(self, db: SQLiteDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)


class SQLitePushSubscriptions(SQLPushSubscriptions):
    """
    :class:`~jmap_twisted.interfaces.IPushSubscriptions` in the started
    SQLite database ``db`` of the :class:`SQLiteDirectory` whose users the
    subscriptions belong to (see
    :class:`~jmap_twisted.store.sql.push.SQLPushSubscriptions`).
    """

    def __init__(self, db: SQLiteDatabase) -> None:
        super().__init__(db)
