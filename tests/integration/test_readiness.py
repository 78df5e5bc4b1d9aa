"""
``/healthz/ready`` of the real server following its dependencies: it
answers 503 naming the broker while RabbitMQ is down and 200 once it is
back; the same for the store while PostgreSQL is down.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import task
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RunningServer, start_server
from tests.services.postgres import (
    TEST_ROLE,
    PostgresCluster,
    PostgresUnavailable,
    _as_server_user,
    _unavailable,
    start_cluster,
)
from tests.services.rabbitmq import Broker, private_broker

__all__ = ["private_broker"]


async def readiness(server: RunningServer) -> tuple[int, list[str]]:
    response = await treq.get(server.base + "/healthz/ready")
    body = json.loads(await response.content())
    return response.code, body.get("notReady", [])


async def until(server: RunningServer, expected: tuple[int, list[str]]) -> None:
    """
    Probe until the readiness answer is ``expected`` (as a load balancer
    does, every tenth of a second); fail after a few hundred probes.
    """
    from twisted.internet import reactor

    seen = None
    for _ in range(600):
        seen = await readiness(server)
        if seen == expected:
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"readiness stayed {seen}, not {expected}")


@pytest_twisted.ensureDeferred
async def test_ready_follows_the_broker(tmp_path: Path, private_broker: Broker) -> None:
    """
    Connected to the broker the node is ready; with the broker stopped it
    answers 503 naming the broker; once the broker is back, ready again.
    """
    server = await start_server(
        tmp_path / "data",
        "tcp:0:interface=127.0.0.1",
        "http",
        "--bus",
        private_broker.url,
        "--bus-heartbeat",
        "1",
    )
    try:
        await until(server, (200, []))
        await deferToThread(private_broker.stop)
        await until(server, (503, ["broker"]))
        await deferToThread(private_broker.start)
        await until(server, (200, []))
    finally:
        await server.stop()


def _options(cluster: PostgresCluster) -> str:
    # As start_cluster starts it, durability off.
    return (
        f"-c listen_addresses=127.0.0.1 -c port={cluster.port}"
        f" -c unix_socket_directories={cluster.directory} -c max_connections=200"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )


def _pg_ctl(cluster: PostgresCluster, *args: str) -> None:
    subprocess.run(
        [*_as_server_user(), str(cluster.binaries / "pg_ctl"), *args, "-D", str(cluster.data_dir)],
        capture_output=True,
        check=True,
    )


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """
    A PostgreSQL cluster of the test's own, which it may stop and start.
    """
    try:
        cluster = start_cluster()
    except PostgresUnavailable as e:
        _unavailable(str(e))
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest_twisted.ensureDeferred
async def test_ready_follows_the_store(tmp_path: Path, private_postgres: PostgresCluster) -> None:
    """
    With PostgreSQL stopped the node answers 503 naming the store; once
    the database is back, ready again.
    """
    password_file = tmp_path / "db-password"
    password_file.write_text(private_postgres.password + "\n")
    server = await start_server(
        tmp_path / "data",
        "tcp:0:interface=127.0.0.1",
        "http",
        "--store",
        f"postgresql://{TEST_ROLE}@127.0.0.1:{private_postgres.port}/{TEST_ROLE}",
        "--store-password-file",
        str(password_file),
    )
    try:
        await until(server, (200, []))
        await deferToThread(_pg_ctl, private_postgres, "stop", "-m", "fast", "-w")
        await until(server, (503, ["store"]))
        await deferToThread(
            _pg_ctl,
            private_postgres,
            "start",
            "-w",
            "-l",
            str(private_postgres.directory / "server.log"),
            "-o",
            _options(private_postgres),
        )
        await until(server, (200, []))
    finally:
        await server.stop()
