"""
The directory, blob store and push subscriptions over a
:class:`~jmap_twisted.store.postgres.database.PostgresDatabase`, shared by every
server node: the transactions of :mod:`jmap_twisted.store.sql.directory`
and :mod:`jmap_twisted.store.sql.push`, as for SQLite.

``access_version`` lives in a single row that every change of access bumps
inside its own transaction (the row lock orders the bumps), so a node that
polls :meth:`PostgresDirectory.access_version` and
:meth:`PostgresDirectory.access_changes_since` sees the changes made on
every other node once they are committed.
"""

from __future__ import annotations

from psycopg import errors
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from jmap_twisted.errors import UserExists
from jmap_twisted.records import User
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.sql.directory import SQLBlobStore, SQLDirectory
from jmap_twisted.store.sql.push import SQLPushSubscriptions


class PostgresDirectory(SQLDirectory):
    """
    :class:`~jmap_twisted.interfaces.IDirectory` in the started PostgreSQL
    database ``db``, timestamps from ``clock``; behaves as
    :class:`~jmap_twisted.store.sqlite.directory.SQLiteDirectory`.
    """

    TOKEN_CREATION_ORDER = "num"  # noqa: S105 - a column name

    def __init__(self, db: PostgresDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)

    def create_user(self, username: str, password_hash: str | None) -> Deferred[User]:
        """
        Create a user and their personal account (same name).

        :raises jmap_twisted.errors.UserExists: the username is taken, also
            when another node created it at the same moment.
        """

        def taken(failure: Failure) -> Failure:
            failure.trap(errors.UniqueViolation)
            raise UserExists(username)

        return super().create_user(username, password_hash).addErrback(taken)


class PostgresBlobStore(SQLBlobStore):
    """
    :class:`~jmap_twisted.interfaces.IBlobStore` in the started PostgreSQL
    database ``db`` of the :class:`PostgresDirectory` whose accounts the
    blobs belong to; octets as ``bytea``, stored once per content.
    """

    def __init__(self, db: PostgresDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)


class PostgresPushSubscriptions(SQLPushSubscriptions):
    """
    :class:`~jmap_twisted.interfaces.IPushSubscriptions` in the started
    PostgreSQL database ``db`` of the :class:`PostgresDirectory` whose users
    the subscriptions belong to, shared by every node (see
    :class:`~jmap_twisted.store.sql.push.SQLPushSubscriptions`).
    """

    CREATION_ORDER = "num"

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(db)
