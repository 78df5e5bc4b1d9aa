"""
The PostgreSQL backends of the store contract suites: factories over a
fresh database of the session's throwaway cluster
(:mod:`tests.services.postgres`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from twisted.internet.interfaces import IReactorTime

from jmap_twisted.interfaces import IMailStore


def fresh_dsn(request: pytest.FixtureRequest) -> str:
    """
    An empty database for the requesting test (fixture ``fresh_postgres_dsn``).
    """
    return str(request.getfixturevalue("fresh_postgres_dsn"))


async def started_database(dsn: str, **kwargs: Any) -> Any:
    """
    A started :class:`~jmap_twisted.store.postgres.database.PostgresDatabase`
    (a small pool: tests open many).
    """
    from twisted.internet import reactor

    from jmap_twisted.store.postgres.database import PostgresDatabase

    kwargs.setdefault("pool_size", 2)
    db = PostgresDatabase(dsn, reactor, **kwargs)
    await db.start()
    return db


async def postgres_mail_backend(dsn: str, clock: IReactorTime) -> AsyncIterator[IMailStore]:
    """
    A :class:`~jmap_twisted.store.postgres.mail.PostgresMailStore` over a
    fresh database, reading commit times from ``clock``, stopped after the
    test.
    """
    from jmap_twisted.store.postgres.mail import PostgresMailStore

    db = await started_database(dsn)
    try:
        yield PostgresMailStore(db, clock)
    finally:
        await db.stop()
