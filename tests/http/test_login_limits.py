"""
Password logins refused unchecked answer 429 or 503 with ``Retry-After``,
on the HTTP resources and on the WebSocket upgrade alike.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin

from jmap_twisted.auth.checkers import PasswordCredentials
from jmap_twisted.config import ServerConfig
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.auth.pools import ManualReactor
from tests.support import CHEAP_HASHER, jmap_service

BASE = "http://jmap.example:8080"


class Server:
    """
    A service whose password hashing runs when the test says so.
    """

    def __init__(self) -> None:
        self.reactor = ManualReactor()
        directory = MemoryDirectory(self.reactor)
        self.service = jmap_service(
            ServerConfig(password_cost=2**4),
            directory,
            MemoryBlobStore(self.reactor),
            MemoryMailStore(self.reactor),
            self.reactor,
        )
        self.treq = StubTreq(self.service.site.resource)
        directory.create_user("alice", CHEAP_HASHER.hash("secret"))

    async def get(self, path: str, password: str, **headers: str) -> tuple[int, Any, Any]:
        basic = b64encode(b"alice:" + password.encode()).decode()
        answer = self.treq.get(BASE + path, headers={"Authorization": "Basic " + basic, **headers})
        self.reactor.pool.run_all()
        self.treq.flush()
        response = await answer
        return response.code, response.headers, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_repeated_failures_get_429_with_retry_after() -> None:
    """
    After ten wrong passwords from one address, the next login from it is
    refused unchecked with 429 and ``Retry-After``, even with the right
    password; the same goes for the WebSocket upgrade.
    """
    server = Server()
    for _ in range(10):
        code, _, _ = await server.get("/jmap/session", "wrong")
        assert code == 401
    code, headers, problem = await server.get("/jmap/session", "secret")
    assert code == 429
    assert int(headers.getRawHeaders("retry-after")[0]) >= 1
    assert problem["status"] == 429
    code, headers, _ = await server.get(
        "/jmap/ws", "secret", Upgrade="websocket", Connection="Upgrade"
    )
    assert code == 429
    assert headers.getRawHeaders("retry-after")
    server.reactor.advance(60)
    code, _, _ = await server.get("/jmap/session", "secret")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_full_hashing_queue_gets_503_with_retry_after() -> None:
    """
    While the hashing queue is full (other clients' checks running and
    waiting), a login needing a hash is refused at once with 503 and
    ``Retry-After``.
    """
    server = Server()
    checker = server.service.server.portal.checkers[IUsernamePassword]
    others = [
        checker.requestAvatarId(PasswordCredentials(b"alice", b"guess%d" % i, f"198.51.100.{i}"))
        for i in range(4)
    ]
    for other in others:
        other.addErrback(lambda f: f.trap(UnauthorizedLogin))
    basic = b64encode(b"alice:secret").decode()
    answer = server.treq.get(BASE + "/jmap/session", headers={"Authorization": "Basic " + basic})
    server.treq.flush()
    response = await answer
    assert response.code == 503
    assert response.headers.getRawHeaders("retry-after") == ["1"]
    assert json.loads(await response.content())["status"] == 503
    server.reactor.pool.run_all()
    code, _, _ = await server.get("/jmap/session", "secret")
    assert code == 200
