"""
Every method test runs against each mail store backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.mail.smarthost import Smarthost
from tests.methods.harness import HarnessFactory, MailHarness
from tests.support import ImmediateReactor


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite", "postgres"])
async def make_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[HarnessFactory]:
    from twisted.internet import reactor

    from jmap_twisted.store.postgres.mail import PostgresMailStore
    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.mail import SQLiteMailStore
    from tests.services.postgres import fresh_database, shared_cluster
    from tests.store.postgres_backend import started_database

    databases: list[Any] = []
    dsns: list[str] = []

    async def make(smarthost: Smarthost | None = None) -> MailHarness:
        if request.param == "memory":
            return MailHarness(smarthost=smarthost)
        clock = ImmediateReactor()
        clock.advance(1_800_000_000)
        store: Any
        if request.param == "postgres":
            dsns.append(fresh_database())
            database = await started_database(dsns[-1])
            store = PostgresMailStore(database, clock)
        else:
            database = SQLiteDatabase(str(tmp_path / f"mail{len(databases)}.sqlite3"), reactor)
            await database.start()
            store = SQLiteMailStore(database, clock)
        databases.append(database)
        return MailHarness(store, clock, smarthost)

    yield make
    for database in databases:
        await database.stop()
    for dsn in dsns:
        shared_cluster().drop_database(dsn)
