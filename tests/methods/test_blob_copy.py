"""
``Blob/copy`` (RFC 8620 §6.3) on every mail store backend.
"""

from __future__ import annotations

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, SHARED, HarnessFactory


@pytest_twisted.ensureDeferred
async def test_blob_copy_makes_an_upload_usable_in_the_target_account(
    make_harness: HarnessFactory,
) -> None:
    """
    An uploaded blob copied to another account reads there with its octets
    and type and can be imported there; an unknown blob is reported in
    notCopied as blobNotFound, with a description, and copies nothing.
    """
    h = await make_harness()
    raw = message(subject="carried over")
    blob_id = (await h.blobs.put(ACCOUNT, raw, "message/rfc822")).blob_id
    assert await h.resolver.download(h.principal, SHARED, blob_id) is None
    result = await h.ok(
        "Blob/copy",
        {"fromAccountId": ACCOUNT, "blobIds": [blob_id, "Gnope", blob_id]},
        account=SHARED,
    )
    assert (result["fromAccountId"], result["accountId"]) == (ACCOUNT, SHARED)
    assert list(result["copied"]) == [blob_id]
    copy = result["copied"][blob_id]
    assert result["notCopied"]["Gnope"]["type"] == "blobNotFound"
    assert result["notCopied"]["Gnope"]["description"]
    assert await h.resolver.download(h.principal, SHARED, copy) == (raw, "message/rfc822")
    inbox = (await h.roles(SHARED))["inbox"]
    imported = await h.ok(
        "Email/import",
        {"emails": {"i": {"blobId": copy, "mailboxIds": {inbox: True}}}},
        account=SHARED,
    )
    assert imported["created"]["i"]["blobId"] == copy


@pytest_twisted.ensureDeferred
async def test_blob_copy_of_stored_messages_and_their_parts(make_harness: HarnessFactory) -> None:
    """
    The blob of a stored message, and the blob of one of its parts, copy
    with the octets they read as in the source account.
    """
    h = await make_harness()
    email = await h.deliver(message(subject="kept"))
    got = await h.ok("Email/get", {"ids": [email.id], "properties": ["textBody"]})
    part_blob = got["list"][0]["textBody"][0]["blobId"]
    result = await h.ok(
        "Blob/copy", {"fromAccountId": ACCOUNT, "blobIds": [email.blob_id, part_blob]}, SHARED
    )
    assert result["notCopied"] is None
    for blob_id in (email.blob_id, part_blob):
        data, _ = await h.resolver.download(h.principal, ACCOUNT, blob_id)
        copied = await h.resolver.download(h.principal, SHARED, result["copied"][blob_id])
        assert copied is not None and copied[0] == data
    empty = await h.ok("Blob/copy", {"fromAccountId": ACCOUNT, "blobIds": []}, SHARED)
    assert (empty["copied"], empty["notCopied"]) == (None, None)


@pytest_twisted.ensureDeferred
async def test_blob_copy_names_the_account_it_cannot_use(make_harness: HarnessFactory) -> None:
    """
    An inaccessible fromAccountId is fromAccountNotFound, an inaccessible
    accountId accountNotFound, and malformed arguments invalidArguments,
    each with a description; Email/copy answers fromAccountNotFound too.
    """
    h = await make_harness()
    cases = [
        ({"fromAccountId": "nobody", "blobIds": []}, SHARED, "fromAccountNotFound"),
        ({"fromAccountId": ACCOUNT, "blobIds": []}, "nobody", "accountNotFound"),
        ({"blobIds": []}, SHARED, "invalidArguments"),
        ({"fromAccountId": ACCOUNT, "blobIds": "G1"}, SHARED, "invalidArguments"),
        ({"fromAccountId": ACCOUNT, "blobIds": [1]}, SHARED, "invalidArguments"),
        ({"fromAccountId": ACCOUNT, "blobIds": [], "extra": 1}, SHARED, "invalidArguments"),
    ]
    for arguments, account, error in cases:
        name, response = await h.call("Blob/copy", arguments, account)
        assert (name, response["type"]) == ("error", error), arguments
        assert response["description"], arguments
    name, response = await h.call(
        "Email/copy", {"fromAccountId": "nobody", "create": {}}, account=SHARED
    )
    assert (name, response["type"]) == ("error", "fromAccountNotFound")
    assert response["description"]
