"""
Quotas on the real server: limits set with ``jmap-admin`` while it runs,
LMTP answering ``452 4.2.2`` for a full mailbox (at ``RCPT``, and after
``DATA`` for a message that does not fit) while the other recipients get
theirs, the sender's retry succeeding once mail is destroyed, and the
Quota state pushed over the WebSocket.
"""

from __future__ import annotations

import json
import smtplib
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.threads import deferToThread
from websockets.sync.client import connect

from tests.integration.conftest import RunningServer
from tests.integration.test_websocket import basic, receive
from tests.mailfactory import message
from tests.test_admin import admin

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:quota"]
FULL = b"4.2.2 Mailbox full (over quota); try again later"


async def jmap(server: RunningServer, user: str, calls: list[Any]) -> list[Any]:
    response = await treq.post(
        server.base + "/jmap/api/",
        data=json.dumps({"using": USING, "methodCalls": calls}).encode(),
        headers={"Content-Type": "application/json"},
        auth=(user, "pw"),
    )
    assert response.code == 200
    return json.loads(await response.content())["methodResponses"]


async def account_of(server: RunningServer, user: str) -> str:
    session = json.loads(
        await (await treq.get(server.base + "/.well-known/jmap", auth=(user, "pw"))).content()
    )
    assert session["capabilities"]["urn:ietf:params:jmap:quota"] == {}
    return str(session["primaryAccounts"]["urn:ietf:params:jmap:mail"])


def lmtp_send(port: int, recipients: list[str], data: bytes) -> dict[str, Any]:
    with smtplib.LMTP("127.0.0.1", port) as client:
        return client.sendmail("sender@elsewhere.test", recipients, data)


async def set_quota(server: RunningServer, *args: str) -> None:
    result = await deferToThread(admin, server.data_dir, "quota", "set", *args)
    assert result.returncode == 0, result


@pytest_twisted.ensureDeferred
async def test_full_mailbox_gets_452_and_the_retry_is_delivered(server: RunningServer) -> None:
    """
    With alice's message limit reached, LMTP refuses her at RCPT with
    452 4.2.2 while bob's copy is delivered; once she destroys an email
    the sender's retry is delivered.  With carol's storage too small for
    the message with its trace headers, LMTP accepts her at RCPT (the
    announced SIZE fits) and answers 452 4.2.2 after DATA; nothing of it
    is stored.
    """
    for user in ("alice", "bob", "carol"):
        await server.add_user(user, "pw")
    alice = await account_of(server, "alice")
    await set_quota(server, "alice", "--messages", "1")
    raw = message(subject="Quota", to="alice@example.com")
    port = server.lmtp_port
    assert port is not None

    assert await deferToThread(lmtp_send, port, ["alice@example.com"], raw) == {}
    refused = await deferToThread(lmtp_send, port, ["alice@example.com", "bob@example.com"], raw)
    assert refused == {"alice@example.com": (452, FULL)}
    got = await jmap(
        server, "bob", [["Email/query", {"accountId": await account_of(server, "bob")}, "q"]]
    )
    assert len(got[0][1]["ids"]) == 1

    responses = await jmap(
        server,
        "alice",
        [
            ["Email/query", {"accountId": alice}, "q"],
            [
                "Email/set",
                {
                    "accountId": alice,
                    "#destroy": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                },
                "s",
            ],
        ],
    )
    assert len(responses[1][1]["destroyed"]) == 1
    assert await deferToThread(lmtp_send, port, ["alice@example.com"], raw) == {}

    await set_quota(server, "carol", "--storage", str(len(raw) + 10))
    with pytest.raises(smtplib.SMTPDataError) as refused_data:
        await deferToThread(lmtp_send, port, ["carol@example.com"], raw)
    assert (refused_data.value.smtp_code, refused_data.value.smtp_error) == (452, FULL)
    carol = await account_of(server, "carol")
    quotas = await jmap(server, "carol", [["Quota/get", {"accountId": carol, "ids": None}, "g"]])
    assert [(q["id"], q["used"]) for q in quotas[0][1]["list"]] == [("storage", 0)]


def push_quota(url: str, port: int, account: str) -> dict[str, Any]:
    """
    Over the WebSocket: read the Quota state, enable push of Quota only,
    have a message delivered, and resync with Quota/changes and Quota/get
    on the same socket.
    """
    with connect(url, subprotocols=["jmap"], additional_headers=basic("alice", "pw")) as ws:

        def call(request_id: str, calls: list[Any]) -> dict[str, Any]:
            ws.send(
                json.dumps(
                    {"@type": "Request", "id": request_id, "using": USING, "methodCalls": calls}
                )
            )
            return receive(ws, "Response")

        before = call("r0", [["Quota/get", {"accountId": account, "ids": None}, "0"]])
        state = before["methodResponses"][0][1]["state"]
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Quota"]}))
        lmtp_send(port, ["alice@example.com"], message(subject="Pushed", to="alice@example.com"))
        change = receive(ws, "StateChange")
        resync = call(
            "resync",
            [
                ["Quota/changes", {"accountId": account, "sinceState": state}, "c"],
                [
                    "Quota/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "c", "name": "Quota/changes", "path": "/updated"},
                        "#properties": {
                            "resultOf": "c",
                            "name": "Quota/changes",
                            "path": "/updatedProperties",
                        },
                    },
                    "g",
                ],
            ],
        )
        return {"state": state, "change": change, "resync": resync}


@pytest_twisted.ensureDeferred
async def test_quota_state_is_pushed_over_the_websocket(server: RunningServer) -> None:
    """
    With push enabled for Quota alone, a delivery into an account with a
    limit pushes a StateChange with only the new Quota state; Quota/changes
    from the old state names the quota with updatedProperties ["used"], and
    Quota/get of those properties gives the new usage.
    """
    await server.add_user("alice", "pw")
    account = await account_of(server, "alice")
    await set_quota(server, "alice", "--storage", "10M")
    url = server.base.replace("http", "ws") + "/jmap/ws"
    result = await deferToThread(push_quota, url, server.lmtp_port, account)
    changed = result["change"]["changed"][account]
    assert set(changed) == {"Quota"}
    assert changed["Quota"] != result["state"]
    responses = {r[2]: r[1] for r in result["resync"]["methodResponses"]}
    assert responses["c"]["newState"] == changed["Quota"]
    assert (responses["c"]["updated"], responses["c"]["updatedProperties"]) == (
        ["storage"],
        ["used"],
    )
    assert responses["g"]["list"][0]["id"] == "storage"
    assert responses["g"]["list"][0]["used"] > 0
