"""
Quotas (RFC 9425): the Quota methods and capability, and ``overQuota``
from the methods that store emails (RFC 8620 §5.3), on every backend.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from jmap_twisted.core.request import parse_request
from jmap_twisted.core.session import session_object
from jmap_twisted.records import AccountQuota
from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, CORE, MAIL, SHARED, HarnessFactory, MailHarness

QUOTA = "urn:ietf:params:jmap:quota"


async def request(
    h: MailHarness, calls: list[Any], using: tuple[str, ...] = (CORE, MAIL, QUOTA)
) -> Any:
    """
    The method responses to ``calls`` under the capabilities ``using``.
    """
    body = {"using": list(using), "methodCalls": calls}
    parsed = parse_request(body, h.engine.registry.capabilities, 16)
    return (await h.engine.execute(h.principal, parsed))["methodResponses"]


async def call(h: MailHarness, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
    """
    One call in the account; its response name and arguments.
    """
    response = await request(h, [[name, {"accountId": ACCOUNT, **arguments}, "c"]], **kwargs)
    return response[0][0], response[0][1]


async def ok(h: MailHarness, name: str, arguments: dict[str, Any]) -> Any:
    response_name, result = await call(h, name, arguments)
    assert response_name == name, result
    return result


async def set_quota(
    h: MailHarness, storage: int | None, messages: int | None, account: str = ACCOUNT
) -> AccountQuota:
    await h.store.setup_account(account)
    return await h.store.write(account, lambda w: w.set_quota(storage, messages))


@pytest_twisted.ensureDeferred
async def test_session_offers_the_quota_capability_to_every_account(
    make_harness: HarnessFactory,
) -> None:
    """
    The session lists urn:ietf:params:jmap:quota with an empty object, and
    so does each account's accountCapabilities (RFC 9425 §2).
    """
    h = await make_harness()
    session = session_object(h.principal, h.engine.registry, "https://jmap.test/jmap")
    assert session["capabilities"][QUOTA] == {}
    for account_id in (ACCOUNT, SHARED):
        assert session["accounts"][account_id]["accountCapabilities"][QUOTA] == {}


@pytest_twisted.ensureDeferred
async def test_get_shows_each_limit_with_its_usage(make_harness: HarnessFactory) -> None:
    """
    An account without limits has no Quota; with limits, Quota/get lists
    a storage quota (octets) and a message quota (count) with every
    property, used following deliveries; unknown ids are notFound and
    properties can be picked.
    """
    h = await make_harness()
    empty = await ok(h, "Quota/get", {"ids": None})
    assert (empty["list"], empty["notFound"]) == ([], [])
    await set_quota(h, 10_000, 5)
    raw = message(subject="counted")
    await h.deliver(raw)
    result = await ok(h, "Quota/get", {"ids": None})
    by_id = {q["id"]: q for q in result["list"]}
    assert by_id["storage"] == {
        "id": "storage",
        "resourceType": "octets",
        "used": len(raw),
        "hardLimit": 10_000,
        "scope": "account",
        "name": "Mail storage of alice",
        "types": ["Mail"],
        "warnLimit": None,
        "softLimit": None,
        "description": "The total size of the account's emails, each counted in full.",
    }
    assert (by_id["messages"]["resourceType"], by_id["messages"]["used"]) == ("count", 1)
    assert by_id["messages"]["hardLimit"] == 5
    assert result["state"] == await h.store.read(ACCOUNT, lambda r: r.state("Quota"))
    some = await ok(h, "Quota/get", {"ids": ["messages", "nope"], "properties": ["used"]})
    assert some["list"] == [{"id": "messages", "used": 1}]
    assert some["notFound"] == ["nope"]
    name, error = await call(h, "Quota/get", {"properties": ["limit"]})
    assert (name, error["type"]) == ("error", "invalidArguments")


@pytest_twisted.ensureDeferred
async def test_quotas_need_their_capability_and_a_recognised_type(
    make_harness: HarnessFactory,
) -> None:
    """
    Without the quota capability in ``using`` the methods are unknown;
    without the mail capability the client recognises none of the types,
    so it is shown no Quota (RFC 9425 §4.1).
    """
    h = await make_harness()
    await set_quota(h, 10_000, None)
    name, error = await call(h, "Quota/get", {"ids": None}, using=(CORE, MAIL))
    assert (name, error["type"]) == ("error", "unknownMethod")
    name, result = await call(h, "Quota/get", {"ids": ["storage"]}, using=(CORE, QUOTA))
    assert (name, result["list"], result["notFound"]) == ("Quota/get", [], ["storage"])
    name, result = await call(h, "Quota/query", {}, using=(CORE, QUOTA))
    assert result["ids"] == []


@pytest_twisted.ensureDeferred
async def test_changes_say_when_only_used_changed(make_harness: HarnessFactory) -> None:
    """
    A delivery updates the quotas with updatedProperties ["used"], which a
    back-reference can feed to Quota/get; a change of limit gives null;
    limits set and removed are created and destroyed.
    """
    h = await make_harness()
    before = (await ok(h, "Quota/get", {"ids": []}))["state"]
    await set_quota(h, 10_000, None)
    created = await ok(h, "Quota/changes", {"sinceState": before})
    assert (created["created"], created["updatedProperties"]) == (["storage"], None)
    state = created["newState"]
    await h.deliver(message())
    responses = await request(
        h,
        [
            ["Quota/changes", {"accountId": ACCOUNT, "sinceState": state}, "0"],
            [
                "Quota/get",
                {
                    "accountId": ACCOUNT,
                    "#ids": {"resultOf": "0", "name": "Quota/changes", "path": "/updated"},
                    "#properties": {
                        "resultOf": "0",
                        "name": "Quota/changes",
                        "path": "/updatedProperties",
                    },
                },
                "1",
            ],
        ],
    )
    changes, got = responses[0][1], responses[1][1]
    assert (changes["updated"], changes["updatedProperties"]) == (["storage"], ["used"])
    assert got["list"] == [{"id": "storage", "used": len(message())}]
    assert got["state"] == changes["newState"]
    await set_quota(h, 20_000, 3)
    changed = await ok(h, "Quota/changes", {"sinceState": changes["newState"]})
    assert (changed["created"], changed["updated"]) == (["messages"], ["storage"])
    assert changed["updatedProperties"] is None
    await set_quota(h, None, None)
    gone = await ok(h, "Quota/changes", {"sinceState": changed["newState"]})
    assert sorted(gone["destroyed"]) == ["messages", "storage"]
    name, error = await call(h, "Quota/changes", {"sinceState": "nonsense"})
    assert (name, error["type"]) == ("error", "cannotCalculateChanges")


@pytest_twisted.ensureDeferred
async def test_query_filters_and_sorts(make_harness: HarnessFactory) -> None:
    """
    Quota/query filters by name (contained, any case), scope,
    resourceType and type, with operators; sorts by name or used; and
    refuses other filters and sorts.
    """
    h = await make_harness()
    await set_quota(h, 10_000, 5)
    for n in range(3):
        await h.deliver(message(subject=f"m{n}"))

    async def ids(arguments: dict[str, Any]) -> list[str]:
        return list((await ok(h, "Quota/query", arguments))["ids"])

    assert await ids({}) == ["messages", "storage"]
    assert await ids({"filter": {"name": "STORAGE"}}) == ["storage"]
    assert await ids({"filter": {"resourceType": "count"}}) == ["messages"]
    assert await ids({"filter": {"scope": "account", "type": "Mail"}}) == ["messages", "storage"]
    assert await ids({"filter": {"type": "Calendar"}}) == []
    assert await ids({"filter": {"scope": "domain"}}) == []
    assert await ids(
        {"filter": {"operator": "NOT", "conditions": [{"resourceType": "octets"}]}}
    ) == ["messages"]
    assert await ids({"sort": [{"property": "used", "isAscending": False}]}) == [
        "storage",
        "messages",
    ]
    assert await ids({"sort": [{"property": "name"}]}) == ["storage", "messages"]
    window = await ok(h, "Quota/query", {"position": 1, "calculateTotal": True})
    assert (window["ids"], window["total"], window["canCalculateChanges"]) == (
        ["storage"],
        2,
        True,
    )
    assert window["queryState"] == (await ok(h, "Quota/get", {"ids": []}))["state"]
    for arguments, error_type in (
        ({"sort": [{"property": "hardLimit"}]}, "unsupportedSort"),
        ({"filter": {"hardLimit": 3}}, "unsupportedFilter"),
        ({"filter": {"name": 3}}, "invalidArguments"),
        ({"filter": {"operator": "XOR", "conditions": []}}, "invalidArguments"),
        ({"bogus": True}, "invalidArguments"),
    ):
        name, error = await call(h, "Quota/query", arguments)
        assert (name, error["type"]) == ("error", error_type), arguments


@pytest_twisted.ensureDeferred
async def test_query_changes_follow_usage(make_harness: HarnessFactory) -> None:
    """
    After usage changes, Quota/queryChanges from the old queryState lists
    the quotas as removed and added at their new index.
    """
    h = await make_harness()
    await set_quota(h, 10_000, 5)
    sort = [{"property": "used"}]
    first = await ok(h, "Quota/query", {"sort": sort})
    assert first["ids"] == ["messages", "storage"]
    await h.deliver(message())
    changes = await ok(
        h, "Quota/queryChanges", {"sort": sort, "sinceQueryState": first["queryState"]}
    )
    assert sorted(changes["removed"]) == ["messages", "storage"]
    assert changes["added"] == [{"id": "messages", "index": 0}, {"id": "storage", "index": 1}]
    assert changes["newQueryState"] == (await ok(h, "Quota/query", {"sort": sort}))["queryState"]


@pytest_twisted.ensureDeferred
async def test_import_set_and_copy_answer_over_quota(make_harness: HarnessFactory) -> None:
    """
    Email/import, Email/set and Email/copy store the emails that fit and
    answer overQuota for the others; destroying mail makes room again.
    """
    h = await make_harness()
    inbox = (await h.roles())["inbox"]
    kept = await h.deliver(message(subject="already here"))
    await set_quota(h, None, 2)
    blob = (await h.blobs.put(ACCOUNT, message(subject="imported"), "message/rfc822")).blob_id
    imported = await h.ok(
        "Email/import",
        {
            "emails": {
                "a": {"blobId": blob, "mailboxIds": {inbox: True}},
                "b": {"blobId": blob, "mailboxIds": {inbox: True}},
            }
        },
    )
    assert list(imported["created"]) == ["a"]
    assert imported["notCreated"]["b"]["type"] == "overQuota"
    assert "2" in imported["notCreated"]["b"]["description"]
    draft = {"mailboxIds": {inbox: True}, "subject": "draft", "bodyValues": {}}
    created = await h.ok("Email/set", {"create": {"d": draft}})
    assert created["notCreated"]["d"]["type"] == "overQuota"

    source = await h.deliver(message(subject="to copy"), account=SHARED)
    copy = {
        "fromAccountId": SHARED,
        "create": {"k": {"id": source.id, "mailboxIds": {inbox: True}}},
    }
    copied = await h.ok("Email/copy", copy)
    assert copied["notCreated"]["k"]["type"] == "overQuota"

    await h.ok("Email/set", {"destroy": [kept.id]})
    copied = await h.ok("Email/copy", copy)
    assert list(copied["created"]) == ["k"]
    await set_quota(h, 1, None)
    created = await h.ok("Email/set", {"create": {"d": draft}})
    assert created["notCreated"]["d"]["type"] == "overQuota"
    assert "octets" in created["notCreated"]["d"]["description"]
