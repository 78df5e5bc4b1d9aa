"""
Mailbox sharing seen through the HTTP API: the sharee's session lists the
owner's account as a view with mail only, and downloads and uploads
follow the sharee's rights; in memory through StubTreq.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.interfaces import IMailWriter
from jmap_twisted.records import EmailRecord
from jmap_twisted.testing import message
from tests.http.test_resources import BASE, CORE, MAIL, Harness

OWNER = "urn:ietf:params:jmap:principals:owner"


@pytest.fixture
def harness() -> Harness:
    return Harness()


def bob(harness: Harness) -> dict[str, str]:
    return harness.basic("bob", "hunter2")


async def session(harness: Harness) -> Any:
    response = await harness.treq.get(BASE + "/.well-known/jmap", headers=bob(harness))
    assert response.code == 200
    return json.loads(await response.content())


async def alices_mail(harness: Harness) -> tuple[dict[str, str], EmailRecord, EmailRecord]:
    """
    Alice's role mailboxes, an email in her archive and one in her inbox.
    """
    account = harness.alice_account
    await harness.mail.setup_account(account)
    mailboxes = await harness.mail.read(account, lambda r: r.mailboxes())
    roles = {m.role: m.id for m in mailboxes if m.role}

    def deliver(w: IMailWriter) -> tuple[EmailRecord, EmailRecord]:
        archived = w.add_email(message(subject="archived"), [roles["archive"]], [], 0.0)
        private = w.add_email(message(subject="private"), [roles["inbox"]], [], 0.0)
        return archived, private

    archived, private = await harness.mail.write(account, deliver)
    return roles, archived, private


async def share(harness: Harness, mailbox: str, letters: str) -> None:
    await harness.directory.set_rights(
        harness.alice_account, mailbox, harness.bob.id, letters, harness.alice.id
    )


async def download(harness: Harness, account: str, blob_id: str) -> tuple[int, bytes]:
    response = await harness.treq.get(
        BASE + f"/jmap/download/{account}/{blob_id}/m.eml", headers=bob(harness)
    )
    return response.code, await response.content()


@pytest_twisted.ensureDeferred
async def test_sharee_session_lists_the_owners_account_with_mail_only(harness: Harness) -> None:
    """
    Once alice shares a mailbox with bob, his session lists her account
    after his own: not personal, read-only while no mailbox lets him
    change anything, with the mail capability (no top-level mailboxes)
    and her principal only; a right to add emails makes it writable, with
    a new session state.  Her identities are not his to read.
    """
    roles, _, _ = await alices_mail(harness)
    await share(harness, roles["archive"], "lr")
    before = await session(harness)
    assert list(before["accounts"]) == [harness.bob_account, harness.alice_account]
    view = before["accounts"][harness.alice_account]
    assert (view["name"], view["isPersonal"], view["isReadOnly"]) == ("alice", False, True)
    assert set(view["accountCapabilities"]) == {MAIL, OWNER}
    assert view["accountCapabilities"][MAIL]["mayCreateTopLevelMailbox"] is False
    assert view["accountCapabilities"][OWNER] == {
        "accountIdForPrincipal": harness.bob_account,
        "principalId": harness.alice.id,
    }
    assert set(before["primaryAccounts"].values()) == {harness.bob_account}

    await share(harness, roles["archive"], "lri")
    after = await session(harness)
    assert after["accounts"][harness.alice_account]["isReadOnly"] is False
    assert after["state"] != before["state"]

    code, body = await harness.api(
        {
            "using": [CORE, MAIL, "urn:ietf:params:jmap:submission"],
            "methodCalls": [["Identity/get", {"accountId": harness.alice_account}, "c0"]],
        },
        bob(harness),
    )
    assert code == 200
    ((name, error, _),) = body["methodResponses"]
    assert (name, error["type"]) == ("error", "accountNotSupportedByMethod")


@pytest_twisted.ensureDeferred
async def test_sharee_downloads_only_what_they_may_read(harness: Harness) -> None:
    """
    Bob downloads an email of the mailbox alice shared with him (l and r);
    an email of her unshared inbox answers 404, like a blob that does not
    exist, though alice downloads it.
    """
    roles, archived, private = await alices_mail(harness)
    await share(harness, roles["archive"], "lr")
    assert await download(harness, harness.alice_account, archived.blob_id) == (
        200,
        message(subject="archived"),
    )
    code, _ = await download(harness, harness.alice_account, private.blob_id)
    assert code == 404
    response = await harness.treq.get(
        BASE + f"/jmap/download/{harness.alice_account}/{private.blob_id}/m.eml",
        headers=harness.bearer(),
    )
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_sharee_uploads_with_the_right_to_add(harness: Harness) -> None:
    """
    Uploading for alice's account is refused (403) while bob may not add
    emails there; with i on a shared mailbox it is accepted for her
    account, kept in his own, and he imports it into that mailbox.
    """
    roles, _, _ = await alices_mail(harness)
    await share(harness, roles["archive"], "lr")
    url = BASE + f"/jmap/upload/{harness.alice_account}/"
    raw = message(subject="uploaded")
    refused = await harness.treq.post(url, data=raw, headers=bob(harness))
    assert refused.code == 403

    await share(harness, roles["archive"], "lri")
    response = await harness.treq.post(url, data=raw, headers=bob(harness))
    assert response.code == 201
    blob = json.loads(await response.content())
    assert blob["accountId"] == harness.alice_account
    assert await harness.blobs.get(harness.alice_account, blob["blobId"]) is None
    assert await harness.blobs.get(harness.bob_account, blob["blobId"]) is not None

    emails = {"c": {"blobId": blob["blobId"], "mailboxIds": {roles["archive"]: True}}}
    code, body = await harness.api(
        {
            "using": [CORE, MAIL],
            "methodCalls": [
                ["Email/import", {"accountId": harness.alice_account, "emails": emails}, "c0"]
            ],
        },
        bob(harness),
    )
    assert code == 200
    ((name, result, _),) = body["methodResponses"]
    assert name == "Email/import"
    assert result["created"]["c"]["blobId"] == blob["blobId"]
