"""
Web push as a piece of the server: the VAPID key made once and shared,
advertised in the session (RFC 9749), followed when rotated, and the
verification POST of a new subscription.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.web.iweb import IAgent
from zope.interface import implementer

from jmap_twisted import JMAPServer, JMAPService, ServerConfig, resource
from jmap_twisted.push.webpush import delivery
from jmap_twisted.push.webpush.crypto import VapidKey
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.store.memory.push import MemoryPushSubscriptions
from tests.support import CHEAP_HASHER, ImmediateReactor

VAPID = "urn:ietf:params:jmap:webpush-vapid"
BASIC = {"Authorization": "Basic " + b64encode(b"alice:secret").decode()}


@implementer(IAgent)
class RecordingAgent:
    """
    Records each request and answers nothing (the POST stays pending).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Any]] = []

    def request(
        self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None
    ) -> Any:
        from twisted.internet.defer import Deferred

        self.requests.append((method, uri, headers))
        return Deferred()


def server(
    subscriptions: MemoryPushSubscriptions, agent: RecordingAgent
) -> tuple[JMAPServer, JMAPService]:
    reactor = ImmediateReactor()
    directory = MemoryDirectory(reactor)
    directory.create_user("alice", CHEAP_HASHER.hash("secret"))
    jmap = JMAPServer(
        ServerConfig(password_cost=2**4),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
        push_subscriptions=subscriptions,
    )
    return jmap, JMAPService(jmap)


async def session(jmap: JMAPServer) -> dict[str, Any]:
    treq = StubTreq(resource(jmap))
    response = await treq.get("http://jmap.example/session", headers=BASIC)
    result: dict[str, Any] = json.loads(await response.content())
    return result


@pytest_twisted.ensureDeferred
async def test_the_key_is_made_once_shared_and_advertised(monkeypatch: Any) -> None:
    """
    The first server to start makes the VAPID key and stores it; a second
    server on the same store (another node) uses the same key; both
    advertise it as ``applicationServerKey``; before the life cycle starts
    the capability is not advertised.
    """
    agent = RecordingAgent()
    monkeypatch.setattr(delivery, "push_agent", lambda *a, **k: agent)
    shared = MemoryPushSubscriptions()
    first, first_service = server(shared, agent)
    assert VAPID not in (await session(first))["capabilities"]
    first_service.startService()
    stored = await shared.vapid_key()
    assert stored is not None
    key = VapidKey.from_pem(stored).application_server_key()
    assert (await session(first))["capabilities"][VAPID] == {"applicationServerKey": key}
    second, second_service = server(shared, agent)
    second_service.startService()
    assert (await session(second))["capabilities"][VAPID] == {"applicationServerKey": key}
    await first_service.stopService()
    await second_service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_rotated_key_is_followed_and_changes_the_session_state(monkeypatch: Any) -> None:
    """
    A key rotated in the store (``jmap-admin vapid rotate``) is advertised
    after the next refresh, and the session's state changes with it, so
    clients notice and subscribe again.
    """
    agent = RecordingAgent()
    monkeypatch.setattr(delivery, "push_agent", lambda *a, **k: agent)
    shared = MemoryPushSubscriptions()
    jmap, service = server(shared, agent)
    service.startService()
    before = await session(jmap)
    rotated = VapidKey.generate()
    await shared.set_vapid_key(rotated.pem(), only_if_unset=False)
    assert jmap.webpush is not None
    await jmap.webpush.refresh()
    after = await session(jmap)
    assert after["capabilities"][VAPID]["applicationServerKey"] == rotated.application_server_key()
    assert after["state"] != before["state"]
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_creating_a_subscription_posts_its_verification(monkeypatch: Any) -> None:
    """
    PushSubscription/set create makes the server POST to the subscription's
    URL at once, signed with the advertised key.
    """
    agent = RecordingAgent()
    monkeypatch.setattr(delivery, "push_agent", lambda *a, **k: agent)
    jmap, service = server(MemoryPushSubscriptions(), agent)
    service.startService()
    advertised = (await session(jmap))["capabilities"][VAPID]["applicationServerKey"]
    treq = StubTreq(resource(jmap))
    body = {
        "using": ["urn:ietf:params:jmap:core"],
        "methodCalls": [
            [
                "PushSubscription/set",
                {"create": {"a": {"deviceClientId": "phone", "url": "https://push.example/p/1"}}},
                "0",
            ]
        ],
    }
    response = await treq.post(
        "http://jmap.example/api",
        json.dumps(body).encode(),
        headers={**BASIC, "Content-Type": "application/json"},
    )
    answer = json.loads(await response.content())
    assert "a" in answer["methodResponses"][0][1]["created"]
    (method, uri, headers), *_ = agent.requests
    assert (method, uri) == (b"POST", b"https://push.example/p/1")
    (authorization,) = headers.getRawHeaders(b"authorization")
    assert authorization.endswith(b", k=" + advertised.encode())
    await service.stopService()
