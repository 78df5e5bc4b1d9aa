"""
Account delegation seen through the HTTP API: the delegate's session and
requests, in memory through StubTreq.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from tests.http.test_resources import BASE, CORE, MAIL, Harness


@pytest.fixture
def harness() -> Harness:
    return Harness()


def bob(harness: Harness) -> dict[str, str]:
    return harness.basic("bob", "hunter2")


async def session(harness: Harness, headers: dict[str, str]) -> Any:
    response = await harness.treq.get(BASE + "/.well-known/jmap", headers=headers)
    assert response.code == 200
    return json.loads(await response.content())


async def mailbox_get(harness: Harness, account_id: str, headers: dict[str, str]) -> Any:
    code, body = await harness.api(
        {
            "using": [CORE, MAIL],
            "methodCalls": [["Mailbox/get", {"accountId": account_id, "ids": None}, "c0"]],
        },
        headers,
    )
    assert code == 200
    ((name, arguments, call_id),) = body["methodResponses"]
    assert call_id == "c0"
    return name, arguments


@pytest_twisted.ensureDeferred
async def test_delegated_account_in_session_and_requests(harness: Harness) -> None:
    """
    Once alice delegates her account to bob, bob's session lists it after
    his own, named after her and not personal, while his primary accounts
    stay his own; his Mailbox/get on her account returns her mailboxes.
    """
    await harness.directory.delegate("alice", "bob")
    bobs = await session(harness, bob(harness))
    assert list(bobs["accounts"]) == [harness.bob_account, harness.alice_account]
    alices = bobs["accounts"][harness.alice_account]
    assert (alices["name"], alices["isPersonal"], alices["isReadOnly"]) == ("alice", False, False)
    assert bobs["accounts"][harness.bob_account]["isPersonal"] is True
    assert set(bobs["primaryAccounts"].values()) == {harness.bob_account}

    name, as_bob = await mailbox_get(harness, harness.alice_account, bob(harness))
    assert name == "Mailbox/get"
    assert as_bob["accountId"] == harness.alice_account
    _, as_alice = await mailbox_get(harness, harness.alice_account, harness.bearer())
    assert as_bob["list"] == as_alice["list"]
    assert "inbox" in {mailbox["role"] for mailbox in as_bob["list"]}
    _, own = await mailbox_get(harness, harness.bob_account, bob(harness))
    assert {m["id"] for m in own["list"]}.isdisjoint(m["id"] for m in as_bob["list"])


@pytest_twisted.ensureDeferred
async def test_revoked_delegation_applies_to_the_next_request(harness: Harness) -> None:
    """
    After the delegation is revoked, bob's very next request on alice's
    account gets accountNotFound, and his session no longer lists it, with
    a new state; his own account keeps working.
    """
    await harness.directory.delegate("alice", "bob")
    before = await session(harness, bob(harness))
    name, _ = await mailbox_get(harness, harness.alice_account, bob(harness))
    assert name == "Mailbox/get"

    assert await harness.directory.revoke_delegation("alice", "bob") is True
    name, error = await mailbox_get(harness, harness.alice_account, bob(harness))
    assert (name, error["type"]) == ("error", "accountNotFound")
    after = await session(harness, bob(harness))
    assert list(after["accounts"]) == [harness.bob_account]
    assert after["state"] != before["state"]
    name, _ = await mailbox_get(harness, harness.bob_account, bob(harness))
    assert name == "Mailbox/get"


@pytest_twisted.ensureDeferred
async def test_undelegated_account_not_found(harness: Harness) -> None:
    """
    Without a delegation, another user's account is accountNotFound and is
    not in the session.
    """
    name, error = await mailbox_get(harness, harness.alice_account, bob(harness))
    assert (name, error["type"]) == ("error", "accountNotFound")
    assert list((await session(harness, bob(harness)))["accounts"]) == [harness.bob_account]
