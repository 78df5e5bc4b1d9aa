"""
The contracts of :class:`~jmap_twisted.interfaces.IEventBus` and
:class:`~jmap_twisted.interfaces.IEventDeadLetters`
(:class:`jmap_twisted.testing.EventBusContract`,
:class:`jmap_twisted.testing.DeadLettersContract`), run against every
implementation: the buses in memory and on RabbitMQ (one node, and two
nodes sharing a broker), the dead letters in memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import IEventBus, IEventDeadLetters
from jmap_twisted.testing import (
    DeadLettersContract,
    EventBusContract,
    InMemoryEventBus,
    MemoryDeadLetters,
)
from tests.bus.amqp_backends import one_node, two_nodes
from tests.bus.more_backends import postgres_dead_letters, sqlite_dead_letters


class TestInMemoryEventBus(EventBusContract):
    """
    The bus of one node, in memory.
    """

    @pytest_twisted.async_yield_fixture
    async def event_bus(
        self, bus_dead_letters: IEventDeadLetters, retry_policy: RetryPolicy
    ) -> AsyncIterator[IEventBus]:
        from twisted.internet import reactor

        bus = InMemoryEventBus(reactor, bus_dead_letters, retry_policy)
        await bus.start()
        yield bus
        await bus.stop()


class TestAMQPEventBus(EventBusContract):
    """
    One node on a RabbitMQ broker: key events delivered in process, group
    events through the broker.
    """

    @pytest_twisted.async_yield_fixture
    async def event_bus(
        self, bus_dead_letters: IEventDeadLetters, retry_policy: RetryPolicy
    ) -> AsyncIterator[IEventBus]:
        async for bus in one_node(bus_dead_letters, retry_policy):
            yield bus


class TestAMQPEventBusTwoNodes(EventBusContract):
    """
    Two nodes sharing a RabbitMQ broker: every key event crosses the
    broker to the other node.
    """

    @pytest_twisted.async_yield_fixture
    async def event_bus(
        self, bus_dead_letters: IEventDeadLetters, retry_policy: RetryPolicy
    ) -> AsyncIterator[IEventBus]:
        async for bus in two_nodes(bus_dead_letters, retry_policy):
            yield bus


class TestMemoryDeadLetters(DeadLettersContract):
    """
    Dead letters in memory.
    """

    @pytest.fixture
    def dead_letters(self) -> IEventDeadLetters:
        return MemoryDeadLetters()


class TestSQLiteDeadLetters(DeadLettersContract):
    """
    Dead letters in a fresh SQLite database.
    """

    @pytest_twisted.async_yield_fixture
    async def dead_letters(self, tmp_path: Path) -> AsyncIterator[IEventDeadLetters]:
        async for dead in sqlite_dead_letters(tmp_path):
            yield dead


class TestPostgresDeadLetters(DeadLettersContract):
    """
    Dead letters in a fresh PostgreSQL database.
    """

    @pytest_twisted.async_yield_fixture
    async def dead_letters(self, fresh_postgres_dsn: str) -> AsyncIterator[IEventDeadLetters]:
        async for dead in postgres_dead_letters(fresh_postgres_dsn):
            yield dead
