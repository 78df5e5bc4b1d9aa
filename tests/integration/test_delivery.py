"""
Mail delivered by LMTP to the real server shows up through the JMAP API.
"""

from __future__ import annotations

import json
import smtplib
from typing import Any

import pytest_twisted
import treq
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RunningServer
from tests.mailfactory import message

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


async def jmap(server: RunningServer, calls: list[Any], auth: tuple[str, str]) -> list[Any]:
    response = await treq.post(
        server.base + "/jmap/api/",
        data=json.dumps({"using": USING, "methodCalls": calls}).encode(),
        headers={"Content-Type": "application/json"},
        auth=auth,
    )
    assert response.code == 200
    return json.loads(await response.content())["methodResponses"]


def lmtp_send(port: int, recipients: list[str], data: bytes) -> dict[str, Any]:
    with smtplib.LMTP("127.0.0.1", port) as client:
        return client.sendmail("sender@elsewhere.test", recipients, data)


@pytest_twisted.ensureDeferred
async def test_lmtp_delivery_reaches_query_get_and_changes(server: RunningServer) -> None:
    """
    A message delivered with smtplib.LMTP is found by Email/query, read by
    Email/get, and Email/changes from the state before the delivery lists
    exactly it; an unknown recipient is refused while the known one gets it.
    """
    await server.add_user("alice", "pw")
    auth = ("alice", "pw")
    session = json.loads(
        await (await treq.get(server.base + "/.well-known/jmap", auth=auth)).content()
    )
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    before = await jmap(server, [["Email/get", {"accountId": account, "ids": []}, "0"]], auth)
    state = before[0][1]["state"]
    assert server.lmtp_port is not None
    raw = message(subject="Delivered by LMTP", to="alice@example.com", message_id="lmtp1@x")
    try:
        refused = await deferToThread(
            lmtp_send, server.lmtp_port, ["alice@example.com", "nobody@example.com"], raw
        )
    except smtplib.SMTPRecipientsRefused:  # pragma: no cover - both refused
        raise AssertionError("the local recipient was refused") from None
    assert list(refused) == ["nobody@example.com"]
    responses = await jmap(
        server,
        [
            ["Email/changes", {"accountId": account, "sinceState": state}, "c"],
            [
                "Email/query",
                {
                    "accountId": account,
                    "filter": {"text": "LMTP"},
                    "sort": [{"property": "receivedAt", "isAscending": False}],
                },
                "q",
            ],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "mailboxIds", "header:Return-Path", "messageId"],
                },
                "g",
            ],
            [
                "Mailbox/get",
                {"accountId": account, "ids": None, "properties": ["role", "totalEmails"]},
                "m",
            ],
        ],
        auth,
    )
    changes, query, got, mailboxes = (r[1] for r in responses)
    assert len(changes["created"]) == 1
    assert changes["updated"] == [] and changes["destroyed"] == []
    assert query["ids"] == changes["created"]
    email = got["list"][0]
    assert email["subject"] == "Delivered by LMTP"
    assert email["messageId"] == ["lmtp1@x"]
    assert "sender@elsewhere.test" in email["header:Return-Path"]
    inbox = next(m for m in mailboxes["list"] if m["role"] == "inbox")
    assert email["mailboxIds"] == {inbox["id"]: True}
    assert inbox["totalEmails"] == 1
