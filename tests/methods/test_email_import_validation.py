"""
``Email/import`` refuses what RFC 8621 §4.8 calls invalid: a ``blobId``,
``mailboxIds`` or ``keywords`` that is "missing, wrong type, id not found"
is ``invalidProperties`` naming it, whatever JSON the client sent.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, HarnessFactory, MailHarness

MISSING = object()
#: One value of every JSON type, and the empty and odd ones of each.
JSON_VALUES: list[Any] = [MISSING, None, True, False, 0, -1, 1.5, "", "x", [], ["x"], {}, {"x": 1}]


async def import_each(
    h: MailHarness, field: str, values: list[Any], valid: dict[str, Any]
) -> dict[str, Any]:
    """
    One Email/import with a creation per value of ``field`` (the other
    properties as in ``valid``); its response, which must not be an error.
    """
    emails = {}
    for n, value in enumerate(values):
        item = {k: v for k, v in valid.items() if k != field}
        if value is not MISSING:
            item[field] = value
        emails[f"c{n}"] = item
    return await h.ok("Email/import", {"emails": emails})


def refused(result: dict[str, Any], field: str, count: int) -> list[int]:
    """
    The creations refused as invalidProperties naming exactly ``field``,
    with a description that names it too; any other refusal fails.
    """
    indices = []
    for n in range(count):
        error = (result["notCreated"] or {}).get(f"c{n}")
        if error is None:
            continue
        assert error["type"] == "invalidProperties", error
        assert error["properties"] == [field], error
        assert field in error["description"], error
        indices.append(n)
    return indices


async def valid_import(h: MailHarness) -> dict[str, Any]:
    blob_id = (await h.blobs.put(ACCOUNT, message(subject="imported"), "message/rfc822")).blob_id
    return {"blobId": blob_id, "mailboxIds": {(await h.roles())["inbox"]: True}}


@pytest_twisted.ensureDeferred
async def test_import_refuses_every_invalid_blob_id(make_harness: HarnessFactory) -> None:
    """
    A blobId that is missing, not an Id, or the id of no blob the account
    has, is invalidProperties naming blobId (RFC 8621 §4.8), never a
    server failure; the blob's own id imports.
    """
    h = await make_harness()
    valid = await valid_import(h)
    values = [*JSON_VALUES, "Gnope", "not an id!", valid["blobId"]]
    result = await import_each(h, "blobId", values, valid)
    assert refused(result, "blobId", len(values)) == list(range(len(values) - 1))
    assert list(result["created"]) == [f"c{len(values) - 1}"]


@pytest_twisted.ensureDeferred
async def test_import_refuses_every_invalid_mailbox_ids(make_harness: HarnessFactory) -> None:
    """
    mailboxIds must map at least one existing Mailbox id to true: anything
    else is invalidProperties naming mailboxIds.
    """
    h = await make_harness()
    valid = await valid_import(h)
    inbox = next(iter(valid["mailboxIds"]))
    values = [*JSON_VALUES, {"nope": True}, {inbox: False}, {inbox: 1}, {inbox: True, "#x": True}]
    values.append({inbox: True})
    result = await import_each(h, "mailboxIds", values, valid)
    assert refused(result, "mailboxIds", len(values)) == list(range(len(values) - 1))
    assert list(result["created"]) == [f"c{len(values) - 1}"]


@pytest_twisted.ensureDeferred
async def test_import_refuses_every_invalid_keywords(make_harness: HarnessFactory) -> None:
    """
    keywords may be omitted or null (no keywords), or map keywords to
    true; anything else is invalidProperties naming keywords.
    """
    h = await make_harness()
    valid = await valid_import(h)
    values = [*JSON_VALUES, {"$seen": False}, {"bad(keyword": True}, {"$seen": True}]
    result = await import_each(h, "keywords", values, valid)
    accepted = [0, 1, JSON_VALUES.index({}), len(values) - 1]
    refused_indices = refused(result, "keywords", len(values))
    assert refused_indices == [n for n in range(len(values)) if n not in accepted]
    assert sorted(result["created"]) == sorted(f"c{n}" for n in accepted)


@pytest_twisted.ensureDeferred
async def test_import_names_every_invalid_property_at_once(make_harness: HarnessFactory) -> None:
    """
    An EmailImport with several invalid properties names them all, each
    with its reason in the description.
    """
    h = await make_harness()
    result = await h.ok(
        "Email/import",
        {"emails": {"x": {"blobId": [], "mailboxIds": 1, "keywords": "x", "other": 1}}},
    )
    error = result["notCreated"]["x"]
    assert error["type"] == "invalidProperties"
    assert sorted(error["properties"]) == ["blobId", "keywords", "mailboxIds", "other"]
    for name in error["properties"]:
        assert f"{name}:" in error["description"]
