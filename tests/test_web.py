"""
The JMAP resource tree on its own: mounted anywhere, served without the
server's life cycle, in a site that is not this project's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource

from jmap_twisted import JMAPServer, JMAPService, ServerConfig, resource
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.web import JMAPRoot
from tests.http.test_resources import Harness
from tests.support import CHEAP_HASHER, ImmediateReactor
from tests.ws.memory import Connection

BASE = "http://jmap.example:8080"


def mounted(prefix: list[bytes], **limits: Any) -> tuple[JMAPServer, StubTreq, dict[str, str]]:
    reactor = ImmediateReactor()
    directory = MemoryDirectory(reactor)
    server = JMAPServer(
        ServerConfig(password_cost=2**4, limits=CoreLimits(**limits)),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
    )
    directory.create_user("alice", CHEAP_HASHER.hash("secret"))
    root = parent = Resource()
    for segment in prefix[:-1]:
        child = Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(prefix[-1], resource(server))
    return server, StubTreq(root), Harness().basic()


@pytest_twisted.ensureDeferred
async def test_session_urls_follow_where_the_tree_is_mounted() -> None:
    """
    Mounted at /a/b/mail, every URL of the session is below /a/b/mail.
    """
    _, treq, basic = mounted([b"a", b"b", b"mail"])
    response = await treq.get(BASE + "/a/b/mail/session", headers=basic)
    session = json.loads(await response.content())
    assert session["apiUrl"] == BASE + "/a/b/mail/api/"
    assert session["downloadUrl"].startswith(BASE + "/a/b/mail/download/{accountId}/")
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"]["url"] == (
        "ws://jmap.example:8080/a/b/mail/ws"
    )
    ticket = session["capabilities"]["com:linagora:params:jmap:ws:ticket"]
    assert ticket["generationEndpoint"] == BASE + "/a/b/mail/ticket"


@pytest_twisted.ensureDeferred
async def test_without_its_life_cycle_the_tree_says_push_is_off() -> None:
    """
    Served without JMAPService: the session says supportsPush false, an
    EventSource is refused with 503 and a clear reason, a warning is logged
    once; requests still work.  Once the life cycle starts, push is on.
    """
    server, treq, basic = mounted([b"jmap"])
    warnings: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(warnings.append)
    try:
        response = await treq.get(BASE + "/jmap/session", headers=basic)
        session = json.loads(await response.content())
        await treq.get(BASE + "/jmap/session", headers=basic)
    finally:
        globalLogPublisher.removeObserver(warnings.append)
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"]["supportsPush"] is False
    said = [e for e in warnings if "life cycle has not started" in e.get("log_format", "")]
    assert len(said) == 1
    stream = await treq.get(BASE + "/jmap/eventsource/?types=*&closeafter=no&ping=0", headers=basic)
    assert stream.code == 503
    assert b"life cycle" in await stream.content()
    echo = await treq.post(
        BASE + "/jmap/api",
        json.dumps(
            {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "0"]]}
        ).encode(),
        headers={**basic, "Content-Type": "application/json"},
    )
    assert echo.code == 200

    JMAPService(server).startService()
    response = await treq.get(BASE + "/jmap/session", headers=basic)
    session = json.loads(await response.content())
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"]["supportsPush"] is True


def test_websocket_push_enable_without_life_cycle_is_a_request_error() -> None:
    """
    Over a WebSocket of a server whose life cycle is not running,
    WebSocketPushEnable answers a serverUnavailable RequestError; requests
    on the same socket still run.
    """
    connection = Connection()
    connection.service.server.running = False
    connection.client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
    connection.client.send_json(
        {
            "@type": "Request",
            "id": "r1",
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {}, "0"]],
        }
    )
    connection.flush()
    refused, answered = connection.client.messages[-2:]
    assert refused["@type"] == "RequestError"
    assert refused["type"] == "urn:ietf:params:jmap:error:serverUnavailable"
    assert answered["@type"] == "Response" and answered["requestId"] == "r1"


@pytest_twisted.ensureDeferred
async def test_body_limits_hold_inside_the_resources() -> None:
    """
    In a plain Site (which reads whole bodies), a body over maxSizeRequest
    gets the ``limit`` problem and one over maxSizeUpload a 413, with
    nothing stored.
    """
    server, treq, basic = mounted([b"jmap"], max_size_request=1000, max_size_upload=2000)
    api = await treq.post(
        BASE + "/jmap/api",
        b'{"using": [], "methodCalls": [], "x": "' + b"y" * 2000 + b'"}',
        headers={**basic, "Content-Type": "application/json"},
    )
    assert api.code == 400
    problem = json.loads(await api.content())
    assert (problem["type"], problem["limit"]) == (
        "urn:ietf:params:jmap:error:limit",
        "maxSizeRequest",
    )
    user = await server.directory.get_user("alice")
    assert user is not None
    account = (await server.directory.accounts_for_user(user.id))[0].id
    upload = await treq.post(BASE + f"/jmap/upload/{account}/", b"z" * 2001, headers=basic)
    assert upload.code == 413
    small = await treq.post(BASE + f"/jmap/upload/{account}/", b"z" * 2000, headers=basic)
    assert small.code == 201


def test_the_tree_is_a_resource_to_mount() -> None:
    """
    ``resource(server)`` gives the tree's root, with every endpoint below it.
    """
    server, _, _ = mounted([b"x"])
    tree = resource(server)
    assert isinstance(tree, JMAPRoot)
    assert set(tree.children) == {
        b"session",
        b"api",
        b"upload",
        b"download",
        b"ticket",
        b"eventsource",
        b"ws",
    }
