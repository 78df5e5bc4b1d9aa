"""
Choosing the storage backend: the embedded SQLite database of a data
directory, or a shared PostgreSQL database for several nodes.

The server and ``jmap-admin`` both open their stores here, so they always
agree on where the data is.  The PostgreSQL modules (and their driver, the
``postgresql`` extra) are imported only when a ``postgresql://`` URL is
configured; without the extra, asking for it raises
:class:`~jmap_twisted.extras.MissingExtra`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attrs import field, frozen

from jmap_twisted.extras import require
from jmap_twisted.interfaces import IJMAPReactor
from jmap_twisted.store.sql.deadletters import SQLDeadLetters
from jmap_twisted.store.sql.directory import SQLBlobStore, SQLDirectory
from jmap_twisted.store.sql.fair_reads import DEFAULT_READ_BUDGET
from jmap_twisted.store.sql.mail import SQLMailStore
from jmap_twisted.store.sql.push import SQLPushSubscriptions
from jmap_twisted.store.sql.tickets import SQLTickets


class StoreConfigurationError(ValueError):
    """
    A store URL or setting that cannot be used.
    """


@frozen
class StoreSettings:
    """
    Where the data is.

    :ivar url: a ``postgresql://`` URL, or ``None`` for SQLite in
        ``data_dir``.
    :ivar password: the database password (read from a file), never shown
        by ``repr``; ``None`` leaves it to libpq (``PGPASSWORD``,
        ``~/.pgpass``, the ``passfile`` parameter).
    :ivar pool_size: PostgreSQL connections (and threads) per process.
    """

    data_dir: Path
    url: str | None = None
    password: str | None = field(default=None, repr=False)
    pool_size: int = 8

    @classmethod
    def checked(
        cls, data_dir: Path, url: str | None, password: str | None, pool_size: int = 8
    ) -> StoreSettings:
        """
        Settings after checking ``url``: only PostgreSQL URLs, and no
        password in them (command lines are visible to every local user).

        :raises StoreConfigurationError: an unusable URL or pool size.
        :raises jmap_twisted.extras.MissingExtra: a PostgreSQL URL without
            the ``postgresql`` extra installed.
        """
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("postgresql", "postgres"):
                raise StoreConfigurationError(
                    f"the store must be a postgresql:// URL, not {parts.scheme}://…"
                )
            if parts.password is not None or "password=" in parts.query:
                raise StoreConfigurationError(
                    "the store URL must not carry a password: use --store-password-file, "
                    "$PGPASSWORD or ~/.pgpass"
                )
        if pool_size < 1:
            raise StoreConfigurationError("the pool size must be at least 1")
        if url is not None:
            _require_postgresql()
        return cls(data_dir=data_dir, url=url, password=password, pool_size=pool_size)

    @property
    def description(self) -> str:
        """
        Where the data is, fit for logs and error messages.
        """
        if self.url is None:
            return str(self.data_dir)
        from jmap_twisted.store.postgres.database import redact_dsn

        return redact_dsn(self.url)


@frozen
class Stores:
    """
    One database and the stores over it (both backends share the SQL
    classes, with their methods beyond the interfaces).

    :ivar database: has ``start()`` and ``stop()``; start it before use.
    """

    database: Any
    directory: SQLDirectory
    blobs: SQLBlobStore
    mail: SQLMailStore
    dead_letters: SQLDeadLetters
    push_subscriptions: SQLPushSubscriptions
    tickets: SQLTickets


def _require_postgresql() -> None:
    """
    Make sure the PostgreSQL driver and its pool can be imported.

    :raises jmap_twisted.extras.MissingExtra: the ``postgresql`` extra is
        not installed.
    """
    require("postgresql", "psycopg")
    require("postgresql", "psycopg_pool")


def open_stores(
    settings: StoreSettings,
    reactor: IJMAPReactor,
    query_timeout: float | None = DEFAULT_READ_BUDGET,
) -> Stores:
    """
    The stores of ``settings`` (not started yet).

    :param reactor: runs the database's threads and gives the stores the time.
    :param query_timeout: seconds one read of an account's data may run
        (see :mod:`~jmap_twisted.store.sql.fair_reads`); ``None`` for no limit.
    :raises jmap_twisted.extras.MissingExtra: PostgreSQL is asked for but
        the ``postgresql`` extra is not installed.
    """
    if settings.url is None:
        from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
        from jmap_twisted.store.sqlite.deadletters import SQLiteDeadLetters
        from jmap_twisted.store.sqlite.directory import (
            SQLiteBlobStore,
            SQLiteDirectory,
            SQLitePushSubscriptions,
        )
        from jmap_twisted.store.sqlite.mail import SQLiteMailStore

        sqlite = SQLiteDatabase(
            database_path(str(settings.data_dir)), reactor, read_budget=query_timeout
        )
        return Stores(
            sqlite,
            SQLiteDirectory(sqlite, reactor),
            SQLiteBlobStore(sqlite, reactor),
            SQLiteMailStore(sqlite, reactor),
            SQLiteDeadLetters(sqlite, reactor),
            SQLitePushSubscriptions(sqlite),
            SQLTickets(sqlite),
        )
    _require_postgresql()
    from psycopg.conninfo import make_conninfo

    from jmap_twisted.store.postgres.database import PostgresDatabase
    from jmap_twisted.store.postgres.deadletters import PostgresDeadLetters
    from jmap_twisted.store.postgres.directory import (
        PostgresBlobStore,
        PostgresDirectory,
        PostgresPushSubscriptions,
    )
    from jmap_twisted.store.postgres.mail import PostgresMailStore

    dsn = settings.url
    if settings.password is not None:
        dsn = make_conninfo(dsn, password=settings.password)
    postgres = PostgresDatabase(
        dsn, reactor, pool_size=settings.pool_size, read_budget=query_timeout
    )
    return Stores(
        postgres,
        PostgresDirectory(postgres, reactor),
        PostgresBlobStore(postgres, reactor),
        PostgresMailStore(postgres, reactor),
        PostgresDeadLetters(postgres, reactor),
        PostgresPushSubscriptions(postgres),
        SQLTickets(postgres),
    )


def read_secret(path: str) -> str:
    """
    The first line of a file holding a password.

    :raises StoreConfigurationError: unreadable or empty.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise StoreConfigurationError(f"cannot read {path}: {error}") from None
    if not lines or not lines[0]:
        raise StoreConfigurationError(f"{path} holds no password on its first line")
    return lines[0]
