"""
The health probes on this project's own site: ``/healthz/live`` while the
process serves, ``/healthz/ready`` naming what is not ready, the store
asked at most once a second however many probes come.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from jmap_twisted import JMAPServer, ServerConfig
from jmap_twisted.health import STORE_CACHE, STORE_TIMEOUT
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.web import jmap_site
from tests.support import ImmediateReactor

BASE = "http://jmap.test"


class CountedDirectory(MemoryDirectory):
    """
    A directory counting the readiness queries, answering them at once or,
    with ``hang`` set, never.
    """

    queries = 0
    hang = False
    fail = False

    def access_version(self) -> Deferred[int]:
        self.queries += 1
        if self.hang:
            return Deferred()
        if self.fail:
            raise_now: Deferred[int] = Deferred()
            raise_now.errback(ConnectionError("the database is gone"))
            return raise_now
        return succeed(1)


class Broker:
    connected = False


def site(connector: object | None = None) -> tuple[JMAPServer, CountedDirectory, StubTreq]:
    reactor = ImmediateReactor()
    directory = CountedDirectory(reactor)
    server = JMAPServer(
        ServerConfig(password_cost=2**4),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
    )
    server.connector = connector
    return server, directory, StubTreq(jmap_site(server).resource)


async def probe(treq: StubTreq, path: str) -> tuple[int, Any]:
    response = await treq.get(BASE + path)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_live_answers_without_credentials_whatever_the_store_does() -> None:
    """
    ``/healthz/live`` answers 200 to anyone, even while the store hangs.
    """
    _, directory, treq = site()
    directory.hang = True
    assert await probe(treq, "/healthz/live") == (200, {"status": "live"})


@pytest_twisted.ensureDeferred
async def test_ready_once_the_life_cycle_runs() -> None:
    """
    Before the server's life cycle starts (listeners not yet bound, push
    off) the server is not ready, and says so; once started it is.
    """
    server, _, treq = site()
    code, body = await probe(treq, "/healthz/ready")
    assert (code, body["notReady"]) == (503, ["service"])
    server.running = True
    assert await probe(treq, "/healthz/ready") == (200, {"status": "ready"})


@pytest_twisted.ensureDeferred
async def test_a_store_that_fails_or_does_not_answer_in_time_is_not_ready() -> None:
    """
    A failing store query makes the server not ready; so does one that
    has not answered after the probe's timeout.
    """
    server, directory, treq = site()
    server.running = True
    directory.fail = True
    code, body = await probe(treq, "/healthz/ready")
    assert (code, body["notReady"]) == (503, ["store"])
    directory.fail = False
    directory.hang = True
    clock: Any = server.reactor
    clock.advance(STORE_CACHE)
    answering = treq.get(BASE + "/healthz/ready")
    clock.advance(STORE_TIMEOUT)
    treq.flush()
    response = await answering
    assert response.code == 503
    assert json.loads(await response.content())["notReady"] == ["store"]


@pytest_twisted.ensureDeferred
async def test_a_flood_of_probes_costs_one_store_query_a_second() -> None:
    """
    Probes within a second share one store query (those arriving while it
    runs included); the next second asks again.
    """
    server, directory, treq = site()
    server.running = True
    directory.hang = True
    waiting = [treq.get(BASE + "/healthz/ready") for _ in range(5)]
    assert directory.queries == 1
    clock: Any = server.reactor
    clock.advance(STORE_TIMEOUT)
    treq.flush()  # the answers written after the timeout
    for answering in waiting:
        assert (await answering).code == 503
    directory.hang = False
    clock.advance(STORE_CACHE)
    for _ in range(5):
        assert (await probe(treq, "/healthz/ready"))[0] == 200
    assert directory.queries == 2


@pytest_twisted.ensureDeferred
async def test_a_disconnected_broker_is_not_ready() -> None:
    """
    With a broker configured, the server is ready only while connected.
    """
    broker = Broker()
    server, _, treq = site(broker)
    server.running = True
    code, body = await probe(treq, "/healthz/ready")
    assert (code, body["notReady"]) == (503, ["broker"])
    broker.connected = True
    assert (await probe(treq, "/healthz/ready"))[0] == 200
