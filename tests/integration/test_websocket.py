"""
RFC 8887 over real loopback sockets, with two independent clients: the
``websockets`` library (synchronous client, in a thread) and Autobahn's
Twisted client; permessage-deflate negotiated.
"""

from __future__ import annotations

import json
import smtplib
from base64 import b64encode
from typing import Any

import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.conftest import RunningServer
from tests.mailfactory import message

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def deliver(port: int, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail(
            "s@elsewhere.test",
            ["alice@example.com"],
            message(subject=subject, to="alice@example.com"),
        )


def receive(ws: Any, kind: str) -> dict[str, Any]:
    """
    The next message of the given @type (others are collected).
    """
    while True:
        value = json.loads(ws.recv(timeout=10))
        if value.get("@type") == kind:
            return value


def six_steps(url: str, lmtp_port: int, account: str) -> dict[str, Any]:
    """
    The intended sequence: authenticate on the upgrade, enable push, mail
    arrives, StateChange, resync on the same socket.
    """
    with connect(
        url,
        subprotocols=["jmap"],
        additional_headers=basic("alice", "pw"),
        compression="deflate",
    ) as ws:
        assert ws.subprotocol == "jmap"
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "r0",
                    "using": USING,
                    "methodCalls": [
                        ["Email/get", {"accountId": account, "ids": []}, "0"],
                        ["Mailbox/get", {"accountId": account, "ids": []}, "1"],
                    ],
                }
            )
        )
        first = receive(ws, "Response")
        email_state = first["methodResponses"][0][1]["state"]
        mailbox_state = first["methodResponses"][1][1]["state"]
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email", "Mailbox"]}))
        deliver(lmtp_port, "Pushed")
        change = receive(ws, "StateChange")
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "resync",
                    "using": USING,
                    "methodCalls": [
                        ["Email/changes", {"accountId": account, "sinceState": email_state}, "c"],
                        [
                            "Email/get",
                            {
                                "accountId": account,
                                "#ids": {
                                    "resultOf": "c",
                                    "name": "Email/changes",
                                    "path": "/created",
                                },
                                "properties": ["subject"],
                            },
                            "g",
                        ],
                        [
                            "Mailbox/changes",
                            {"accountId": account, "sinceState": mailbox_state},
                            "mc",
                        ],
                        [
                            "Mailbox/get",
                            {
                                "accountId": account,
                                "#ids": {
                                    "resultOf": "mc",
                                    "name": "Mailbox/changes",
                                    "path": "/updated",
                                },
                                "properties": ["totalEmails"],
                            },
                            "mg",
                        ],
                    ],
                }
            )
        )
        resync = receive(ws, "Response")
        return {"extensions": extensions, "change": change, "resync": resync}


async def account_of(server: RunningServer) -> str:
    session = json.loads(
        await (await treq.get(server.base + "/.well-known/jmap", auth=("alice", "pw"))).content()
    )
    return str(session["primaryAccounts"]["urn:ietf:params:jmap:mail"])


@pytest_twisted.ensureDeferred
async def test_push_and_resync_over_compressed_websocket(server: RunningServer) -> None:
    """
    With the websockets client and permessage-deflate: push enabled for
    Email and Mailbox, an LMTP delivery produces a StateChange with only
    those types, and Email/changes, Email/get, Mailbox/changes,
    Mailbox/get on the same socket see the new mail.
    """
    await server.add_user("alice", "pw")
    account = await account_of(server)
    url = server.base.replace("http", "ws") + "/jmap/ws"
    result = await deferToThread(six_steps, url, server.lmtp_port, account)
    assert "permessage-deflate" in result["extensions"]
    change = result["change"]
    assert set(change["changed"][account]) == {"Email", "Mailbox"}
    assert change["pushState"]
    responses = {r[2]: r[1] for r in result["resync"]["methodResponses"]}
    assert result["resync"]["requestId"] == "resync"
    assert len(responses["c"]["created"]) == 1
    assert responses["c"]["newState"] == change["changed"][account]["Email"]
    assert responses["g"]["list"][0]["subject"] == "Pushed"
    assert responses["mg"]["list"][0]["totalEmails"] == 1


def refused(url: str, **kwargs: Any) -> int:
    try:
        with connect(url, **kwargs):
            return 101
    except InvalidStatus as e:
        return e.response.status_code


@pytest_twisted.ensureDeferred
async def test_upgrade_authentication(server: RunningServer) -> None:
    """
    No or wrong credentials: 401 and no upgrade.  A ticket from the
    ticket endpoint opens one socket, once; an access_token works.
    """
    user = await server.add_user("alice", "pw")
    url = server.base.replace("http", "ws") + "/jmap/ws"
    assert await deferToThread(refused, url, subprotocols=["jmap"]) == 401
    assert (
        await deferToThread(
            refused, url, subprotocols=["jmap"], additional_headers=basic("alice", "nope")
        )
        == 401
    )
    response = await treq.post(server.base + "/jmap/ticket", auth=("alice", "pw"))
    assert response.code == 201
    ticket = json.loads(await response.content())["value"]
    assert await deferToThread(refused, f"{url}?ticket={ticket}", subprotocols=["jmap"]) == 101
    assert await deferToThread(refused, f"{url}?ticket={ticket}", subprotocols=["jmap"]) == 401
    from jmap_twisted.auth.passwords import new_token, token_hash

    directory = await server.directory()
    token = new_token()
    await directory.add_token(user.id, token_hash(token), "browser")
    assert await deferToThread(refused, f"{url}?access_token={token}", subprotocols=["jmap"]) == 101
    assert (
        await deferToThread(
            refused, url, subprotocols=["other"], additional_headers=basic("alice", "pw")
        )
        == 400
    )
    log = server.data_dir.parent / "twistd.log"
    assert not log.exists() or token not in log.read_text()


def bad_inputs(url: str) -> list[Any]:
    results = []
    with connect(
        url, subprotocols=["jmap"], additional_headers=basic("alice", "pw"), compression="deflate"
    ) as ws:
        for payload in (
            "not json",
            "[1, 2]",
            json.dumps({"id": "x1"}),
            json.dumps({"@type": "Response", "id": "x2"}),
            json.dumps({"@type": 7, "id": "x3"}),
            json.dumps({"@type": "Request", "id": "x4", "using": "bad"}),
            json.dumps({"@type": "Request", "id": "x5", "using": ["urn:nope"], "methodCalls": []}),
        ):
            ws.send(payload)
            results.append(json.loads(ws.recv(timeout=10)))
        ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "ok",
                    "using": USING,
                    "methodCalls": [["Core/echo", {"still": "here"}, "e"]],
                }
            )
        )
        results.append(json.loads(ws.recv(timeout=10)))
        ws.send(b"\x00binary")
        try:
            ws.recv(timeout=10)
        except Exception as e:  # the server closes the socket
            results.append(getattr(e, "rcvd", None) and e.rcvd.code)
    return results


@pytest_twisted.ensureDeferred
async def test_bad_messages_get_request_errors_and_binary_closes(server: RunningServer) -> None:
    """
    Non-JSON, non-objects, missing or unknown @type, a client-sent
    Response and bad Request fields get RequestErrors (requestId when the
    message had a string id) and the socket keeps serving; a binary frame
    closes it with 1003.
    """
    await server.add_user("alice", "pw")
    url = server.base.replace("http", "ws") + "/jmap/ws"
    results = await deferToThread(bad_inputs, url)
    kinds = [
        (r.get("@type"), r.get("type", "").rsplit(":", 1)[-1], r.get("requestId"))
        for r in results[:7]
    ]
    assert kinds == [
        ("RequestError", "notJSON", None),
        ("RequestError", "notRequest", None),
        ("RequestError", "notRequest", "x1"),
        ("RequestError", "notRequest", "x2"),
        ("RequestError", "notRequest", "x3"),
        ("RequestError", "notRequest", "x4"),
        ("RequestError", "unknownCapability", "x5"),
    ]
    assert results[7]["methodResponses"] == [["Core/echo", {"still": "here"}, "e"]]
    assert results[8] == 1003


@pytest_twisted.ensureDeferred
async def test_autobahn_client_with_push_state_replay(server: RunningServer) -> None:
    """
    Autobahn's client negotiates permessage-deflate; a push enable with a
    pushState from before a delivery gets an immediate StateChange naming
    what changed since; one with garbage gets the full current state.
    """
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from autobahn.websocket.compress import (
        PerMessageDeflateOffer,
        PerMessageDeflateResponse,
        PerMessageDeflateResponseAccept,
    )
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    await server.add_user("alice", "pw")
    account = await account_of(server)
    # Set the account up (its mailboxes are created on first use).
    await treq.post(
        server.base + "/jmap/api/",
        json={
            "using": USING,
            "methodCalls": [["Mailbox/get", {"accountId": account, "ids": []}, "0"]],
        },
        auth=("alice", "pw"),
    )
    from twisted.internet.defer import DeferredQueue

    messages: DeferredQueue[dict[str, Any]] = DeferredQueue()
    opened: Deferred[Any] = Deferred()

    class Client(WebSocketClientProtocol):
        def onOpen(self) -> None:
            opened.callback(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            messages.put(json.loads(payload))

    factory = WebSocketClientFactory(
        server.base.replace("http", "ws") + "/jmap/ws",
        protocols=["jmap"],
        headers=basic("alice", "pw"),
    )
    factory.protocol = Client
    factory.setProtocolOptions(
        perMessageCompressionOffers=[PerMessageDeflateOffer()],
        perMessageCompressionAccept=lambda r: (
            PerMessageDeflateResponseAccept(r) if isinstance(r, PerMessageDeflateResponse) else None
        ),
    )
    await TCP4ClientEndpoint(reactor, "127.0.0.1", server.port).connect(factory)
    client = await opened
    assert client._perMessageCompress is not None

    async def next_message() -> dict[str, Any]:
        return await messages.get()

    client.sendMessage(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}).encode())
    await deferToThread(deliver, server.lmtp_port, "one")
    first = await next_message()
    assert first["@type"] == "StateChange"
    assert "EmailDelivery" in first["changed"][account]
    old_push_state = first["pushState"]
    client.sendMessage(json.dumps({"@type": "WebSocketPushDisable"}).encode())
    await deferToThread(deliver, server.lmtp_port, "two")
    client.sendMessage(
        json.dumps(
            {"@type": "WebSocketPushEnable", "dataTypes": [], "pushState": old_push_state}
        ).encode()
    )
    replay = await next_message()
    assert replay["@type"] == "StateChange"
    assert set(replay["changed"][account]) >= {"Email", "Mailbox"}
    assert "EmailDelivery" not in replay["changed"][account]
    assert replay["changed"][account]["Email"] != first["changed"][account]["Email"]
    client.sendMessage(
        json.dumps(
            {"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"], "pushState": "garbage"}
        ).encode()
    )
    full = await next_message()
    assert set(full["changed"][account]) == {"Mailbox"}
    client.sendClose(1000)
