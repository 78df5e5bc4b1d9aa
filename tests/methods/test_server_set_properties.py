"""
RFC 8620 §5.3: a ``/set`` update may include server-set properties when
their values are the current ones (a client may send back the object it
read); any other value for one is ``invalidProperties``.  Immutable
properties repeated unchanged change nothing and are accepted too, except
an Email's header and body properties, which cannot be in a patch.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import HarnessFactory


def invalid(result: dict[str, Any], object_id: str, properties: list[str]) -> str:
    """
    The description of the invalidProperties SetError of ``object_id``,
    which names exactly ``properties``.
    """
    error = result["notUpdated"][object_id]
    assert error["type"] == "invalidProperties", error
    assert error["properties"] == properties, error
    assert error["description"], error
    return str(error["description"])


@pytest_twisted.ensureDeferred
async def test_mailbox_sent_back_with_its_counts_updates(make_harness: HarnessFactory) -> None:
    """
    A Mailbox sent back as read (counts, myRights, id) with a new name is
    renamed; a count or right that differs from the current one is
    invalidProperties naming it, and changes nothing.
    """
    h = await make_harness()
    await h.deliver(message(subject="counted"))
    inbox = (await h.roles())["inbox"]
    archive = (await h.roles())["archive"]
    mailbox = (await h.ok("Mailbox/get", {"ids": [inbox]}))["list"][0]
    assert mailbox["totalEmails"] == mailbox["unreadEmails"] == 1
    result = await h.ok("Mailbox/set", {"update": {inbox: mailbox}})
    assert result["updated"] == {inbox: None}
    renamed = (await h.ok("Mailbox/get", {"ids": [archive]}))["list"][0] | {"name": "Old"}
    result = await h.ok(
        "Mailbox/set",
        {"update": {archive: renamed | {"myRights/mayDelete": renamed["myRights"]["mayDelete"]}}},
    )
    assert result["updated"] == {archive: None}
    got = (await h.ok("Mailbox/get", {"ids": [archive], "properties": ["name"]}))["list"][0]
    assert got["name"] == "Old"

    result = await h.ok(
        "Mailbox/set",
        {
            "update": {
                inbox: {"totalEmails": 2, "unreadThreads": 1, "name": "Post"},
                archive: {"myRights/mayDelete": False, "id": archive},
            }
        },
    )
    assert "totalEmails" in invalid(result, inbox, ["totalEmails"])
    invalid(result, archive, ["myRights/mayDelete"])
    result = await h.ok("Mailbox/set", {"update": {inbox: {"unreadEmails": True}}})
    invalid(result, inbox, ["unreadEmails"])  # true is not 1
    got = (await h.ok("Mailbox/get", {"ids": [inbox], "properties": ["name"]}))["list"][0]
    assert got["name"] == mailbox["name"]


@pytest_twisted.ensureDeferred
async def test_email_patch_may_repeat_server_set_values(make_harness: HarnessFactory) -> None:
    """
    An Email/set patch may repeat id, blobId, threadId, size, hasAttachment,
    preview and receivedAt with their current values; a different value is
    invalidProperties, and so is a header or body property (subject,
    bodyStructure), even unchanged: only keywords and mailboxIds change.
    """
    h = await make_harness()
    email = await h.deliver(message(subject="patched"))
    server_set = ["id", "blobId", "threadId", "size", "hasAttachment", "preview"]
    got = (
        await h.ok(
            "Email/get",
            {"ids": [email.id], "properties": [*server_set, "receivedAt", "subject"]},
        )
    )["list"][0]
    patch = {name: got[name] for name in [*server_set, "receivedAt"]}
    patch["keywords"] = {"$seen": True}
    result = await h.ok("Email/set", {"update": {email.id: patch}})
    assert result["updated"] == {email.id: None}
    keywords = (await h.ok("Email/get", {"ids": [email.id], "properties": ["keywords"]}))["list"]
    assert keywords[0]["keywords"] == {"$seen": True}

    changed = {"size": got["size"] + 1, "hasAttachment": not got["hasAttachment"]}
    result = await h.ok("Email/set", {"update": {email.id: changed | {"id": email.id}}})
    assert "server" in invalid(result, email.id, ["size", "hasAttachment"])
    for name, value in [("receivedAt", "2001-01-01T00:00:00Z"), ("subject", got["subject"])]:
        result = await h.ok("Email/set", {"update": {email.id: {name: value}}})
        assert "mmutable" in invalid(result, email.id, [name])


@pytest_twisted.ensureDeferred
async def test_identity_sent_back_as_read_updates(make_harness: HarnessFactory) -> None:
    """
    An Identity sent back as read (id, mayDelete) with a new name is
    updated; a different mayDelete is invalidProperties.
    """
    h = await make_harness()
    identity = (await h.ok("Identity/get", {}))["list"][0]
    result = await h.ok("Identity/set", {"update": {identity["id"]: identity | {"name": "Al"}}})
    assert result["updated"] == {identity["id"]: None}
    got = (await h.ok("Identity/get", {"ids": [identity["id"]]}))["list"][0]
    assert got == identity | {"name": "Al"}
    result = await h.ok("Identity/set", {"update": {identity["id"]: {"mayDelete": False}}})
    invalid(result, identity["id"], ["mayDelete"])


@pytest_twisted.ensureDeferred
async def test_email_submission_sent_back_as_read_updates(make_harness: HarnessFactory) -> None:
    """
    An EmailSubmission sent back as read is an update that changes
    nothing; canceling it is cannotUnsend; another deliveryStatus or
    emailId (server-set, immutable) is invalidProperties.
    """
    h = await make_harness()
    drafts = (await h.roles())["drafts"]
    email_id = (
        await h.ok(
            "Email/set",
            {
                "create": {
                    "d": {
                        "mailboxIds": {drafts: True},
                        "from": [{"email": "alice@example.com"}],
                        "to": [{"email": "bob@example.com"}],
                        "subject": "Sent",
                    }
                }
            },
        )
    )["created"]["d"]["id"]
    identity = (await h.ok("Identity/get", {}))["list"][0]["id"]
    created = await h.ok(
        "EmailSubmission/set", {"create": {"s": {"identityId": identity, "emailId": email_id}}}
    )
    submission_id = created["created"]["s"]["id"]
    submission = (await h.ok("EmailSubmission/get", {"ids": [submission_id]}))["list"][0]
    result = await h.ok("EmailSubmission/set", {"update": {submission_id: submission}})
    assert result["updated"] == {submission_id: None}
    after = (await h.ok("EmailSubmission/get", {"ids": [submission_id]}))["list"][0]
    assert after == submission
    result = await h.ok(
        "EmailSubmission/set",
        {"update": {submission_id: submission | {"undoStatus": "canceled"}}},
    )
    assert result["notUpdated"][submission_id]["type"] == "cannotUnsend"
    result = await h.ok(
        "EmailSubmission/set",
        {"update": {submission_id: {"deliveryStatus": {}, "emailId": "other"}}},
    )
    invalid(result, submission_id, ["deliveryStatus", "emailId"])
