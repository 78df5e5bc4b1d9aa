"""
OpenID Connect bearer tokens end to end: a real provider (the certified
``oidc-provider`` package, ``tests/oidc/provider.mjs``) issues tokens
through the client_credentials grant, and the real server, on loopback
sockets, takes them for the session, API calls, WebSocket and EventSource
push, tickets, introspected opaque tokens and users it creates; sockets
close with 1008 when their token expires; a flood of tokens naming
made-up keys neither reaches the provider nor slows a well-behaved user.
"""

from __future__ import annotations

import json
import smtplib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_twisted
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.threads import deferToThread
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from jmap_twisted.ws.protocol import EXPIRED_REASON, POLICY_VIOLATION
from tests.integration.conftest import RunningServer, start_server
from tests.mailfactory import message
from tests.services.oidc_provider import AUDIENCE, OIDCProvider, start_provider_or_skip

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    running = start_provider_or_skip()
    yield running
    running.stop()


@pytest_twisted.async_yield_fixture
async def server(tmp_path: Path, provider: OIDCProvider) -> AsyncIterator[RunningServer]:
    secret = tmp_path / "client-secret"
    secret.write_text("jmap-server-secret\n")
    running = await start_server(
        tmp_path / "data",
        "tcp:0:interface=127.0.0.1",
        "http",
        "--oidc-issuer",
        provider.issuer,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-client-id",
        "jmap-server",
        "--oidc-client-secret-file",
        str(secret),
        "--oidc-create-users",
    )
    await running.add_user("alice@example.com", "pw")
    yield running
    await running.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


def deliver(port: int | None, subject: str) -> None:
    assert port is not None
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail(
            "s@elsewhere.test",
            ["alice@example.com"],
            message(subject=subject, to="alice@example.com"),
        )


def session(base: str, token: str) -> requests.Response:
    return requests.get(base + "/jmap/session", headers=bearer(token), timeout=30)


def receive(ws: Any, kind: str) -> dict[str, Any]:
    """
    The next message of the given @type (others are skipped).
    """
    while True:
        value = json.loads(ws.recv(timeout=30))
        if value.get("@type") == kind:
            return value


@pytest_twisted.ensureDeferred
async def test_token_from_the_grant_serves_session_and_api(
    server: RunningServer, provider: OIDCProvider
) -> None:
    """
    A JWT access token from the client_credentials grant opens the
    session as the user its email claim names, and an API call works.
    """
    token = await deferToThread(provider.access_token, "alice-app")
    assert token.count(".") == 2  # a JWT

    def use() -> tuple[requests.Response, requests.Response]:
        opened = session(server.base, token)
        account = opened.json()["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        called = requests.post(
            server.base + "/jmap/api/",
            headers={**bearer(token), "Content-Type": "application/json"},
            json={"using": USING, "methodCalls": [["Mailbox/get", {"accountId": account}, "0"]]},
            timeout=30,
        )
        return opened, called

    opened, called = await deferToThread(use)
    assert opened.status_code == 200
    assert opened.json()["username"] == "alice@example.com"
    assert called.status_code == 200
    ((name, result, _),) = called.json()["methodResponses"]
    assert name == "Mailbox/get"
    assert any(mailbox["role"] == "inbox" for mailbox in result["list"])
    refused = await deferToThread(session, server.base, token[:-4] + "AAAA")
    assert refused.status_code == 401


def push_over_websocket(url: str, headers: dict[str, str], lmtp: int | None) -> dict[str, Any]:
    with connect(url, subprotocols=["jmap"], additional_headers=headers) as ws:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "echo",
                    "using": USING,
                    "methodCalls": [["Core/echo", {"hello": True}, "0"]],
                }
            )
        )
        assert receive(ws, "Response")["requestId"] == "echo"
        deliver(lmtp, "Pushed")
        while True:  # the account's first mailboxes may be announced first
            change = receive(ws, "StateChange")
            if any("Email" in types for types in change["changed"].values()):
                return change


@pytest_twisted.ensureDeferred
async def test_websocket_with_bearer_pushes(server: RunningServer, provider: OIDCProvider) -> None:
    """
    A WebSocket upgrade authenticated with the token pushes a StateChange
    when mail arrives.
    """
    token = await deferToThread(provider.access_token, "alice-app")
    url = server.base.replace("http", "ws") + "/jmap/ws"
    change = await deferToThread(push_over_websocket, url, bearer(token), server.lmtp_port)
    (changed,) = change["changed"].values()
    assert "Email" in changed


@pytest_twisted.ensureDeferred
async def test_ticket_asked_with_the_token_opens_a_websocket(
    server: RunningServer, provider: OIDCProvider
) -> None:
    token = await deferToThread(provider.access_token, "alice-app")

    def ask() -> requests.Response:
        return requests.post(server.base + "/jmap/ticket", headers=bearer(token), timeout=30)

    response = await deferToThread(ask)
    assert response.status_code == 201
    ticket = response.json()["value"]
    url = server.base.replace("http", "ws") + "/jmap/ws?ticket=" + ticket
    change = await deferToThread(push_over_websocket, url, {}, server.lmtp_port)
    assert change["@type"] == "StateChange"


def first_state_event(url: str, lmtp: int | None) -> tuple[int, dict[str, Any]]:
    with requests.get(url, stream=True, timeout=30) as stream:
        if stream.status_code != 200:
            return stream.status_code, {}
        deliver(lmtp, "Streamed")
        fields: dict[str, str] = {}
        for line in stream.iter_lines(decode_unicode=True):
            if not line:
                if fields.get("event") == "state":
                    return 200, json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    raise AssertionError("the stream ended without a state event")


@pytest_twisted.ensureDeferred
async def test_eventsource_with_access_token(server: RunningServer, provider: OIDCProvider) -> None:
    """
    An EventSource stream opened with ``?access_token=`` (as browsers do)
    gets a state event when mail arrives.
    """
    token = await deferToThread(provider.access_token, "alice-app")
    url = f"{server.base}/jmap/eventsource/?types=*&closeafter=state&ping=0&access_token={token}"
    status, change = await deferToThread(first_state_event, url, server.lmtp_port)
    assert status == 200
    assert change["@type"] == "StateChange"


def closed_by_server(url: str, token: str) -> tuple[int, str, int]:
    """
    Open a socket and read until the server closes it: its code, its
    reason, and how many requests were answered meanwhile.
    """
    answered = 0
    with connect(url, subprotocols=["jmap"], additional_headers=bearer(token)) as ws:
        try:
            while True:
                ws.send(
                    json.dumps(
                        {
                            "@type": "Request",
                            "using": USING,
                            "methodCalls": [["Core/echo", {}, "0"]],
                        }
                    )
                )
                receive(ws, "Response")
                answered += 1
                try:
                    ws.recv(timeout=1)
                except TimeoutError:
                    pass
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason, answered
    raise AssertionError("unreachable")


@pytest_twisted.ensureDeferred
async def test_short_lived_token_socket_closed_with_1008_at_expiry(
    server: RunningServer, provider: OIDCProvider
) -> None:
    """
    A socket opened with a token that lives a few seconds serves until
    the token expires, then is closed with 1008 and a reason saying so.
    """
    issued = await deferToThread(provider.token, "short-app")
    assert issued["expires_in"] <= 4
    url = server.base.replace("http", "ws") + "/jmap/ws"
    code, reason, answered = await deferToThread(closed_by_server, url, issued["access_token"])
    assert code == POLICY_VIOLATION
    assert reason == EXPIRED_REASON
    assert answered >= 1


@pytest_twisted.ensureDeferred
async def test_opaque_token_through_introspection(
    server: RunningServer, provider: OIDCProvider
) -> None:
    """
    An opaque token, which only the provider can vouch for, is introspected
    by the server (as its client) and accepted.
    """
    token = await deferToThread(provider.access_token, "opaque-app")
    assert "." not in token
    opened = await deferToThread(session, server.base, token)
    assert opened.status_code == 200
    assert opened.json()["username"] == "alice@example.com"
    refused = await deferToThread(session, server.base, token + "x")
    assert refused.status_code == 401


@pytest_twisted.ensureDeferred
async def test_user_created_on_first_sight(server: RunningServer, provider: OIDCProvider) -> None:
    """
    With --oidc-create-users, a token naming a user the server has never
    heard of creates them (without a password) and logs in.
    """
    directory = await server.directory()
    assert await directory.get_user("carol@example.com") is None
    token = await deferToThread(provider.access_token, "newcomer-app")
    opened = await deferToThread(session, server.base, token)
    assert opened.status_code == 200
    assert opened.json()["username"] == "carol@example.com"
    carol = await directory.get_user("carol@example.com")
    assert carol is not None
    found = await directory.get_password_hash("carol@example.com")
    assert found is not None and found[1] is None


def forged(issuer: str, key: rsa.RSAPrivateKey) -> str:
    """
    A token claiming to come from the provider, signed with a key of the
    attacker's, naming a new key id the provider never published.
    """
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "attacker",
        "email": "alice@example.com",
        "exp": 4_102_444_800,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": uuid.uuid4().hex})


def flood(base: str, attacker: list[str], token: str) -> tuple[list[int], list[int]]:
    """
    Send the attacker's tokens in bursts, a well-behaved user's request
    between them: the statuses of each.
    """
    from concurrent.futures import ThreadPoolExecutor

    attacked: list[int] = []
    served: list[int] = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        for start in range(0, len(attacker), 16):
            burst = [pool.submit(session, base, t) for t in attacker[start : start + 16]]
            served.append(session(base, token).status_code)
            attacked += [f.result().status_code for f in burst]
    return attacked, served


@pytest_twisted.ensureDeferred
async def test_flood_of_unknown_keys_spares_provider_and_users(
    server: RunningServer, provider: OIDCProvider
) -> None:
    """
    While an attacker sends hundreds of tokens naming keys the provider
    never published, a second user is served throughout, and the key set
    is fetched at most once more.
    """
    token = await deferToThread(provider.access_token, "bob-app")
    assert (await deferToThread(session, server.base, token)).status_code == 200
    before = await deferToThread(provider.jwks_served)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker = [forged(provider.issuer, key) for _ in range(16 * 12)]
    attacked, served = await deferToThread(flood, server.base, attacker, token)
    assert set(attacked) == {401}
    assert served == [200] * 12
    assert await deferToThread(provider.jwks_served) - before <= 1
