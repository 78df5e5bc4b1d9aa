"""
The contract of :class:`jmap_twisted.interfaces.ITicketStore`
(:class:`jmap_twisted.testing.TicketStoreContract`), run against every
implementation, and what the shared SQL store adds: two processes over one
database redeem each other's tickets, and never both win one.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from jmap_twisted.interfaces import ITicketStore
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.sql.tickets import SQLTickets
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.testing import MemoryTickets, TicketStoreContract
from jmap_twisted.testing._tickets import socket, stream, ticket
from tests.store.postgres_backend import started_database


class TestMemoryTickets(TicketStoreContract):
    """
    Tickets in memory.
    """

    @pytest.fixture
    def ticket_store(self) -> ITicketStore:
        return MemoryTickets()


class TestSQLiteTickets(TicketStoreContract):
    """
    Tickets in a fresh SQLite database.
    """

    @pytest.fixture
    def ticket_store(self, sqlite_database: SQLiteDatabase) -> ITicketStore:
        return SQLTickets(sqlite_database)


class TestPostgresTickets(TicketStoreContract):
    """
    Tickets in a fresh PostgreSQL database.
    """

    @pytest.fixture
    def ticket_store(self, postgres_database: PostgresDatabase) -> ITicketStore:
        return SQLTickets(postgres_database)


@pytest_twisted.ensureDeferred
async def test_nodes_share_postgres_tickets(fresh_postgres_dsn: str) -> None:
    """
    Two nodes over one PostgreSQL database (each with its own pool): a
    ticket one issued opens a socket on the other, and of both nodes
    redeeming one ticket at once exactly one wins, however often tried.
    """
    first = await started_database(fresh_postgres_dsn)
    second = await started_database(fresh_postgres_dsn)
    try:
        a, b = SQLTickets(first), SQLTickets(second)
        await a.add_ticket(ticket("shared"), 16)
        assert await b.claim_ticket(socket("shared")) is not None
        for n in range(20):
            await a.add_ticket(ticket(f"race{n}"), 100)
            results = await gatherResults(
                [
                    a.claim_ticket(socket(f"race{n}")),
                    b.claim_ticket(stream(f"race{n}", f"s{n}", client=None)),
                    b.claim_ticket(socket(f"race{n}")),
                ]
            )
            assert sum(r is not None for r in results) == 1, n
    finally:
        await first.stop()
        await second.stop()
