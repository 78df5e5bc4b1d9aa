"""
Fixtures that run the real server, built by the ``twistd jmap`` plugin, on
loopback sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.listening import ListeningService
from jmap_twisted.records import User
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteDirectory
from tests.support import CHEAP_HASHER


class RunningServer:
    """
    A server started from the plugin, plus direct access to its database
    (as the admin command has).
    """

    def __init__(self, service: Any, data_dir: Path, scheme: str) -> None:
        self.service = service
        self.data_dir = data_dir
        jmap = next(iter(service))
        ports = {
            type(getattr(child.factory, "wrappedFactory", child.factory)).__name__: (
                child.port.getHost().port
            )
            for child in jmap
            if isinstance(child, ListeningService) and child.port is not None
        }
        self.port = ports["JMAPSite"]
        self.lmtp_port = ports.get("LMTPFactory")
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.database: SQLiteDatabase | None = None

    async def directory(self) -> SQLiteDirectory:
        from twisted.internet import reactor

        if self.database is None:
            self.database = SQLiteDatabase(database_path(str(self.data_dir)), reactor)
            await self.database.start()
        return SQLiteDirectory(self.database, reactor)

    async def add_user(self, username: str, password: str) -> User:
        directory = await self.directory()
        return await directory.create_user(username, CHEAP_HASHER.hash(password))

    async def stop(self) -> None:
        if self.database is not None:
            await self.database.stop()
        await self.service.stopService()


async def start_server(data_dir: Path, listen: str, scheme: str, *extra: str) -> RunningServer:
    from twisted.internet import reactor, task

    from twisted.plugins.jmap import jmap

    options = jmap.options()
    options.parseOptions(
        [
            "--listen",
            listen,
            "--data",
            str(data_dir),
            "--lmtp",
            "tcp:0:interface=127.0.0.1",
            "--domain",
            "example.com",
            "--hostname",
            "jmap.test",
            *extra,
        ]
    )
    service = jmap.makeService(options)
    service.startService()
    jmap_service = next(iter(service), None)
    for _ in range(500):
        if jmap_service is None:
            jmap_service = next(iter(service), None)
        if (
            service.running
            and jmap_service is not None
            and len(jmap_service.listening_ports()) >= 2
        ):
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    return RunningServer(service, data_dir, scheme)


@pytest_twisted.async_yield_fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path / "data", "tcp:0:interface=127.0.0.1", "http")
    yield running
    await running.stop()


@pytest.fixture(autouse=True)
def _integration_marker(request: pytest.FixtureRequest) -> None:
    request.node.add_marker(pytest.mark.integration)
