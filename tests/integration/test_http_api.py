"""
The HTTP API of the real server on a loopback socket.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import pytest_twisted
import treq
from twisted.internet.protocol import Protocol

from jmap_twisted.auth.passwords import new_token, token_hash
from tests.integration.conftest import RunningServer

CORE = "urn:ietf:params:jmap:core"


async def api(server: RunningServer, body: Any, auth: tuple[str, str]) -> tuple[int, Any]:
    response = await treq.post(
        server.base + "/jmap/api/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        auth=auth,
    )
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_session_and_echo_with_a_user_added_while_running(server: RunningServer) -> None:
    """
    A user created in the database while the server runs can fetch the
    session at once and run Core/echo.
    """
    await server.add_user("alice", "pw")
    response = await treq.get(server.base + "/.well-known/jmap", auth=("alice", "pw"))
    assert response.code == 200
    session = json.loads(await response.content())
    assert session["apiUrl"] == server.base + "/jmap/api/"
    code, body = await api(
        server, {"using": [CORE], "methodCalls": [["Core/echo", {"x": "é"}, "0"]]}, ("alice", "pw")
    )
    assert code == 200
    assert body["methodResponses"] == [["Core/echo", {"x": "é"}, "0"]]
    assert body["sessionState"] == session["state"]


@pytest_twisted.ensureDeferred
async def test_bearer_token_issued_and_revoked_while_running(server: RunningServer) -> None:
    """
    A token recorded while the server runs works at once and stops working
    the moment it is revoked.
    """
    user = await server.add_user("bob", "pw")
    directory = await server.directory()
    token = new_token()
    info = await directory.add_token(user.id, token_hash(token), "phone")
    headers = {"Authorization": "Bearer " + token}
    assert (await treq.get(server.base + "/jmap/session", headers=headers)).code == 200
    await directory.revoke_token(info.id)
    assert (await treq.get(server.base + "/jmap/session", headers=headers)).code == 401


class _Collect(Protocol):
    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(self.data)


async def raw_exchange(server: RunningServer, payload: bytes, then: bytes = b"") -> bytes:
    """
    Send raw bytes, optionally more after the first answer arrives, and
    return all the server wrote before closing.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    protocol = _Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), protocol)
    protocol.transport.write(payload)
    if then:
        protocol.transport.write(then)
    return await protocol.closed


@pytest_twisted.ensureDeferred
async def test_declared_oversized_body_refused_before_it_is_sent(server: RunningServer) -> None:
    """
    A request declaring a body over maxSizeRequest is answered with the
    limit problem and closed as soon as its headers arrive.
    """
    await server.add_user("carol", "pw")
    answer = await raw_exchange(
        server,
        b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n{",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    problem = json.loads(body)
    assert problem["type"] == "urn:ietf:params:jmap:error:limit"
    assert problem["limit"] == "maxSizeRequest"


@pytest_twisted.ensureDeferred
async def test_chunked_oversized_body_refused_when_it_crosses_the_limit(
    server: RunningServer,
) -> None:
    """
    A chunked body is refused when it grows past the limit, without the
    server reading the rest.
    """
    await server.add_user("erin", "pw")
    chunk = b"a" * 1_000_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(11))
    answer = await raw_exchange(
        server,
        b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Basic " + b64encode(b"erin:pw") + b"\r\n\r\n",
        chunks,
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"maxSizeRequest"' in answer


@pytest_twisted.ensureDeferred
async def test_oversized_upload_is_413(server: RunningServer) -> None:
    """
    An upload declared over maxSizeUpload is refused with 413 and the limit.
    """
    answer = await raw_exchange(
        server,
        b"POST /jmap/upload/a1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"maxSizeUpload"' in answer


@pytest_twisted.ensureDeferred
async def test_anonymous_bodies_are_refused_before_they_are_read(server: RunningServer) -> None:
    """
    An upload or API request without valid credentials is answered 401 on
    its headers and closed: its body is never read, let alone spooled.
    """
    await server.add_user("fay", "pw")
    for head in (
        b"POST /jmap/upload/a1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000\r\n\r\n",
        b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Basic " + b64encode(b"fay:wrong") + b"\r\n"
        b"Content-Length: 9000000\r\n\r\n",
    ):
        answer = await raw_exchange(server, head, b"x" * 65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"WWW-Authenticate: Basic" in answer


@pytest_twisted.ensureDeferred
async def test_upload_download_round_trip_on_sqlite(server: RunningServer) -> None:
    """
    A blob uploaded to the SQLite-backed server downloads unchanged.
    """
    await server.add_user("dave", "pw")
    session = json.loads(
        await (await treq.get(server.base + "/.well-known/jmap", auth=("dave", "pw"))).content()
    )
    account = session["primaryAccounts"][CORE]
    data = bytes(range(256)) * 1000
    response = await treq.post(
        session["uploadUrl"].format(accountId=account),
        data=data,
        headers={"Content-Type": "application/pdf"},
        auth=("dave", "pw"),
    )
    assert response.code == 201
    blob = json.loads(await response.content())
    url = session["downloadUrl"].format(
        accountId=account, blobId=blob["blobId"], name="a.pdf", type="application/pdf"
    )
    response = await treq.get(url, auth=("dave", "pw"))
    assert response.code == 200
    assert await response.content() == data
