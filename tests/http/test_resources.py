"""
The HTTP API's resources, in memory through StubTreq.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from jmap_twisted.auth.passwords import new_token, token_hash
from jmap_twisted.config import ServerConfig
from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.support import CHEAP_HASHER, ImmediateReactor, jmap_service

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
BASE = "http://jmap.example:8080"


class Harness:
    def __init__(self, **limits: Any) -> None:
        self.reactor = ImmediateReactor()
        self.directory = MemoryDirectory(self.reactor)
        self.blobs = MemoryBlobStore(self.reactor)
        config = ServerConfig(password_cost=2**4, limits=CoreLimits(**limits))
        self.mail = MemoryMailStore(self.reactor)
        self.service = jmap_service(config, self.directory, self.blobs, self.mail, self.reactor)
        self.treq = StubTreq(self.service.site.resource)
        self.alice = self.directory.create_user("alice", CHEAP_HASHER.hash("secret")).result
        self.bob = self.directory.create_user("bob", CHEAP_HASHER.hash("hunter2")).result
        self.alice_token = new_token()
        self.directory.add_token(self.alice.id, token_hash(self.alice_token), "test")
        self.alice_account = self.directory.accounts_for_user(self.alice.id).result[0].id
        self.bob_account = self.directory.accounts_for_user(self.bob.id).result[0].id

    def basic(self, user: str = "alice", password: str = "secret") -> dict[str, str]:
        return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}

    def bearer(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.alice_token}

    async def api(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await self.treq.post(
            BASE + "/jmap/api/",
            data=data,
            headers={"Content-Type": "application/json", **(headers or self.bearer())},
        )
        return response.code, json.loads(await response.content())


@pytest.fixture
def harness() -> Harness:
    harness = Harness()
    harness.service.startService()  # push runs
    return harness


@pytest_twisted.ensureDeferred
async def test_session_has_every_rfc8620_field(harness: Harness) -> None:
    """
    The session lists capabilities with every core limit, the user's
    account, primary accounts, username, absolute URLs with the RFC's
    template variables, and a state.
    """
    response = await harness.treq.get(BASE + "/.well-known/jmap", headers=harness.basic())
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("application/json")
    session = json.loads(await response.content())
    assert set(session) == {
        "capabilities",
        "accounts",
        "primaryAccounts",
        "username",
        "apiUrl",
        "downloadUrl",
        "uploadUrl",
        "eventSourceUrl",
        "state",
    }
    assert session["username"] == "alice"
    assert session["capabilities"][CORE]["maxCallsInRequest"] == 16
    (account,) = session["accounts"].values()
    assert list(session["accounts"]) == [harness.alice_account]
    assert (account["name"], account["isPersonal"], account["isReadOnly"]) == ("alice", True, False)
    assert set(account["accountCapabilities"]) == {
        MAIL,
        "urn:ietf:params:jmap:submission",
        "urn:ietf:params:jmap:vacationresponse",
        "urn:ietf:params:jmap:quota",
        "urn:ietf:params:jmap:principals",
        "urn:ietf:params:jmap:principals:owner",
    }
    assert account["accountCapabilities"][MAIL]["mayCreateTopLevelMailbox"] is True
    assert set(session["primaryAccounts"]) == set(session["capabilities"]) - {
        "urn:ietf:params:jmap:websocket",
        "com:linagora:params:jmap:ws:ticket",
    }
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"] == {
        "supportsPush": True,
        "url": "ws://jmap.example:8080/jmap/ws",
    }
    assert session["capabilities"]["com:linagora:params:jmap:ws:ticket"] == {
        "generationEndpoint": BASE + "/jmap/ticket",
        "revocationEndpoint": BASE + "/jmap/ticket",
    }
    assert set(session["primaryAccounts"].values()) == {harness.alice_account}
    assert session["apiUrl"] == BASE + "/jmap/api/"
    for variable in ("{accountId}", "{blobId}", "{name}", "{type}"):
        assert variable in session["downloadUrl"]
    assert "{accountId}" in session["uploadUrl"]
    for variable in ("{types}", "{closeafter}", "{ping}"):
        assert variable in session["eventSourceUrl"]
    again = await harness.treq.get(BASE + "/jmap/session", headers=harness.bearer())
    assert json.loads(await again.content())["state"] == session["state"]


@pytest_twisted.ensureDeferred
async def test_session_follows_public_url() -> None:
    """
    With a configured public URL the session's URLs use it, whatever Host.
    """
    harness = Harness()
    harness.service.server.config = ServerConfig(public_url="https://mail.example.org")
    response = await harness.treq.get(BASE + "/.well-known/jmap", headers=harness.basic())
    session = json.loads(await response.content())
    assert session["apiUrl"] == "https://mail.example.org/jmap/api/"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + b64encode(b"alice:wrong").decode()},
        {"Authorization": "Basic " + b64encode(b"nobody:secret").decode()},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer jmt_nope"},
        {"Authorization": "Digest x"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_unauthorized(harness: Harness, headers: dict[str, str]) -> None:
    """
    Missing, malformed or wrong credentials get 401 with a challenge for
    Basic and for Bearer.
    """
    response = await harness.treq.get(BASE + "/.well-known/jmap", headers=headers)
    assert response.code == 401
    challenges = response.headers.getRawHeaders("www-authenticate")
    assert [c.split()[0] for c in challenges] == ["Basic", "Bearer"]


@pytest_twisted.ensureDeferred
async def test_revoked_token_and_changed_password_apply_at_once(harness: Harness) -> None:
    """
    A revoked token and an old password stop working on the next request.
    """
    assert (await harness.api({"using": [CORE], "methodCalls": []}))[0] == 200
    token = harness.directory.find_token(token_hash(harness.alice_token)).result[1]
    harness.directory.revoke_token(token.id)
    assert (await harness.api({"using": [CORE], "methodCalls": []}))[0] == 401
    assert (await harness.api({"using": [CORE], "methodCalls": []}, harness.basic()))[0] == 200
    harness.directory.set_password_hash("alice", CHEAP_HASHER.hash("new"))
    assert (await harness.api({"using": [CORE], "methodCalls": []}, harness.basic()))[0] == 401
    code, _ = await harness.api({"using": [CORE], "methodCalls": []}, harness.basic(password="new"))
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_echo(harness: Harness) -> None:
    """
    Core/echo over the API answers with its arguments and the session state.
    """
    code, body = await harness.api(
        {"using": [CORE], "methodCalls": [["Core/echo", {"a": [1, 2]}, "c0"]]}
    )
    assert code == 200
    assert body["methodResponses"] == [["Core/echo", {"a": [1, 2]}, "c0"]]
    assert body["sessionState"]


@pytest.mark.parametrize(
    "body, error_type, detail_word",
    [
        (b"{not json", "notJSON", "I-JSON"),
        (b'{"a": "\xff"}', "notJSON", "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "notJSON", "deeper"),
        (b"[1, 2]", "notRequest", "object"),
        (b'{"using": []}', "notRequest", "methodCalls"),
        (b'{"using": ["urn:x"], "methodCalls": []}', "unknownCapability", "urn:x"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_request_level_errors(
    harness: Harness, body: bytes, error_type: str, detail_word: str
) -> None:
    """
    Each request-level error is a 400 problem-details response with its
    type and a detail, and the server keeps serving.
    """
    code, problem = await harness.api(body)
    assert code == 400
    assert problem["type"] == "urn:ietf:params:jmap:error:" + error_type
    assert problem["status"] == 400
    assert detail_word in problem["detail"]
    code, _ = await harness.api({"using": [CORE], "methodCalls": [["Core/echo", {}, "x"]]})
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_wrong_content_type(harness: Harness) -> None:
    """
    A body that is not declared as JSON is notJSON.
    """
    response = await harness.treq.post(
        BASE + "/jmap/api/",
        data=b'{"using": [], "methodCalls": []}',
        headers={"Content-Type": "text/plain", **harness.bearer()},
    )
    assert response.code == 400
    problem = json.loads(await response.content())
    assert problem["type"] == "urn:ietf:params:jmap:error:notJSON"
    assert response.headers.getRawHeaders("content-type") == ["application/problem+json"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_only_json_is_executed(harness: Harness, content_type: str | None) -> None:
    """
    A body a cross-site form or no-CORS fetch could send (no type, or a
    "simple" one) is refused as notJSON and never executed.
    """
    body = b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{},"c"]]}'
    headers = dict(harness.bearer())
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await harness.treq.post(BASE + "/jmap/api/", data=body, headers=headers)
    assert response.code == 400
    problem = json.loads(await response.content())
    assert problem["type"] == "urn:ietf:params:jmap:error:notJSON"


@pytest_twisted.ensureDeferred
async def test_numbers_beyond_a_double_are_not_json(harness: Harness) -> None:
    """
    ``1e999`` is refused rather than echoed back as ``Infinity`` (which is
    not JSON).
    """
    code, problem = await harness.api(
        b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{"n":1e999},"c"]]}'
    )
    assert code == 400
    assert problem["type"] == "urn:ietf:params:jmap:error:notJSON"


@pytest_twisted.ensureDeferred
async def test_too_many_calls(harness: Harness) -> None:
    """
    More calls than maxCallsInRequest is a limit problem naming it.
    """
    calls = [["Core/echo", {}, str(i)] for i in range(17)]
    code, problem = await harness.api({"using": [CORE], "methodCalls": calls})
    assert code == 400
    assert problem["type"] == "urn:ietf:params:jmap:error:limit"
    assert problem["limit"] == "maxCallsInRequest"


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_over_the_limit(harness: Harness) -> None:
    """
    A user already running maxConcurrentRequests requests is refused with
    the limit error; another user is not.
    """
    held = [harness.service.server.runner.limiter.try_acquire(harness.alice.id) for _ in range(4)]
    code, problem = await harness.api({"using": [CORE], "methodCalls": []})
    assert code == 400
    assert problem["limit"] == "maxConcurrentRequests"
    code, _ = await harness.api(
        {"using": [CORE], "methodCalls": []}, harness.basic("bob", "hunter2")
    )
    assert code == 200
    held[0]()
    assert (await harness.api({"using": [CORE], "methodCalls": []}))[0] == 200


@pytest_twisted.ensureDeferred
async def test_wrong_method_and_cors_preflight(harness: Harness) -> None:
    """
    GET on the API is 405 with Allow; an OPTIONS preflight gets CORS
    headers without credentials.
    """
    response = await harness.treq.get(BASE + "/jmap/api/", headers=harness.bearer())
    assert response.code == 405
    assert "POST" in response.headers.getRawHeaders("allow")[0]
    response = await harness.treq.request("OPTIONS", BASE + "/jmap/api/", headers={"Origin": BASE})
    assert response.code == 204
    assert response.headers.getRawHeaders("access-control-allow-origin") == [BASE]
    assert "Authorization" in response.headers.getRawHeaders("access-control-allow-headers")[0]


@pytest_twisted.ensureDeferred
async def test_upload_and_download(harness: Harness) -> None:
    """
    An upload returns accountId, blobId, type and size; the download URL
    serves the octets with the requested type and a Content-Disposition
    carrying the exact name.
    """
    data = bytes(range(256)) * 10
    response = await harness.treq.post(
        BASE + f"/jmap/upload/{harness.alice_account}/",
        data=data,
        headers={"Content-Type": "image/png", **harness.bearer()},
    )
    assert response.code == 201
    blob = json.loads(await response.content())
    assert blob == {
        "accountId": harness.alice_account,
        "blobId": blob["blobId"],
        "type": "image/png",
        "size": len(data),
    }
    url = BASE + f"/jmap/download/{harness.alice_account}/{blob['blobId']}/r%C3%A9sum%C3%A9.png"
    response = await harness.treq.get(url + "?type=image/png", headers=harness.bearer())
    assert response.code == 200
    assert await response.content() == data
    assert response.headers.getRawHeaders("content-type") == ["image/png"]
    disposition = response.headers.getRawHeaders("content-disposition")[0]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.png" in disposition
    assert 'filename="r_sum_.png"' in disposition
    response = await harness.treq.get(url + "?type=text/html%0d%0aX:1", headers=harness.bearer())
    assert response.headers.getRawHeaders("content-type") == ["application/octet-stream"]


@pytest_twisted.ensureDeferred
async def test_blobs_are_scoped_to_their_account(harness: Harness) -> None:
    """
    Another user can neither download Alice's blob (404, like a missing
    one) nor upload into her account.
    """
    response = await harness.treq.post(
        BASE + f"/jmap/upload/{harness.alice_account}/", data=b"private", headers=harness.bearer()
    )
    blob_id = json.loads(await response.content())["blobId"]
    for account in (harness.alice_account, harness.bob_account):
        url = BASE + f"/jmap/download/{account}/{blob_id}/x.txt"
        response = await harness.treq.get(url, headers=harness.basic("bob", "hunter2"))
        assert response.code == 404
    missing = await harness.treq.get(
        BASE + f"/jmap/download/{harness.bob_account}/Gnope/x.txt",
        headers=harness.basic("bob", "hunter2"),
    )
    assert missing.code == 404
    assert await missing.content() == await response.content()
    response = await harness.treq.post(
        BASE + f"/jmap/upload/{harness.alice_account}/",
        data=b"x",
        headers=harness.basic("bob", "hunter2"),
    )
    assert response.code == 404


@pytest_twisted.ensureDeferred
async def test_concurrent_uploads_over_the_limit(harness: Harness) -> None:
    """
    Past maxConcurrentUpload uploads in progress, an upload is refused with
    the limit error.
    """
    for _ in range(4):
        harness.service.server.upload_limiter.try_acquire(harness.alice.id)
    response = await harness.treq.post(
        BASE + f"/jmap/upload/{harness.alice_account}/", data=b"x", headers=harness.bearer()
    )
    assert response.code == 429
    problem = json.loads(await response.content())
    assert problem["limit"] == "maxConcurrentUpload"


def test_chunked_body_over_the_limit_with_its_end_in_the_same_read() -> None:
    """
    A chunked body that crosses the limit and ends in the same read is
    refused with the limit problem, without an error in the server.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    harness = Harness(max_size_request=10)
    protocol = harness.service.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: " + harness.basic()["Authorization"].encode() + b"\r\n\r\n"
        b"14\r\n" + b"a" * 20 + b"\r\n0\r\n\r\n"
    )
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"maxSizeRequest"' in answer


def test_cancelled_waiters_leave_no_state_behind() -> None:
    """
    A user whose only waiter was cancelled holds no limiter state.
    """
    from jmap_twisted.core.limits import ConcurrencyLimiter

    limiter = ConcurrencyLimiter(1, "x", queue_bound=2)
    release = limiter.acquire("u").result
    waiter = limiter.acquire("u")
    waiter.addErrback(lambda _: None)
    waiter.cancel()
    release()
    assert limiter._running == {} and limiter._waiting == {}
