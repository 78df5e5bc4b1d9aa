"""
Email methods (RFC 8621 §4) over the in-memory store.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, SHARED, HarnessFactory, MailHarness

MULTIPART = (
    b"From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.com>\r\n"
    b"To: Bob <bob@example.com>, carol@example.com\r\n"
    b"Subject: =?UTF-8?B?UsOpc3Vtw6k=?= attached\r\n"
    b"Date: Wed, 25 Nov 2026 08:30:00 +0100\r\n"
    b"Message-ID: <multi@example.com>\r\n"
    b"List-Unsubscribe: <https://example.com/unsub>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Please find my r\xc3\xa9sum\xc3\xa9 attached.\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Please find my <b>r\xc3\xa9sum\xc3\xa9</b> attached.</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="cv.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--\r\n"
)


async def upload(h: MailHarness, data: bytes, account: str = ACCOUNT) -> str:
    info = await h.blobs.put(account, data, "message/rfc822")
    return info.blob_id


@pytest_twisted.ensureDeferred
async def test_delivered_mail_found_by_query_get_and_changes(make_harness: HarnessFactory) -> None:
    """
    A delivered message shows up through Email/query and Email/get, and
    Email/changes from the state before the delivery lists exactly it.
    """
    h = await make_harness()
    await h.deliver(message(subject="earlier"))
    before = (await h.ok("Email/get", {"ids": []}))["state"]
    email = await h.deliver(MULTIPART)
    inbox = (await h.roles())["inbox"]
    query = await h.ok(
        "Email/query",
        {
            "filter": {"inMailbox": inbox},
            "sort": [{"property": "receivedAt", "isAscending": False}],
            "limit": 1,
            "calculateTotal": True,
        },
    )
    assert query["ids"] == [email.id]
    assert query["total"] == 2
    changes = await h.ok("Email/changes", {"sinceState": before})
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([email.id], [], [])
    assert changes["newState"] == query["queryState"]
    got = (await h.ok("Email/get", {"ids": [email.id], "fetchTextBodyValues": True}))["list"][0]
    assert got["subject"] == "Résumé attached"
    assert got["from"] == [{"name": "Renée", "email": "renee@example.com"}]
    assert got["to"] == [
        {"name": "Bob", "email": "bob@example.com"},
        {"name": None, "email": "carol@example.com"},
    ]
    assert got["sentAt"] == "2026-11-25T08:30:00+01:00"
    assert got["messageId"] == ["multi@example.com"]
    assert got["mailboxIds"] == {inbox: True}
    assert got["keywords"] == {}
    assert got["hasAttachment"] is True
    assert got["preview"].startswith("Please find my résumé")
    assert [p["type"] for p in got["textBody"]] == ["text/plain"]
    assert [p["type"] for p in got["htmlBody"]] == ["text/html"]
    assert [(p["name"], p["type"]) for p in got["attachments"]] == [("cv.pdf", "application/pdf")]
    text_part = got["textBody"][0]["partId"]
    assert got["bodyValues"][text_part]["value"].startswith("Please find my résumé")
    assert got["receivedAt"].endswith("Z")
    assert got["threadId"] == email.thread_id


@pytest_twisted.ensureDeferred
async def test_header_forms_and_body_structure(make_harness: HarnessFactory) -> None:
    """
    header:…:as… properties parse each form; bodyStructure nests parts;
    attachment parts have downloadable blob ids.
    """
    h = await make_harness()
    email = await h.deliver(MULTIPART)
    got = (
        await h.ok(
            "Email/get",
            {
                "ids": [email.id],
                "properties": [
                    "header:Subject:asText",
                    "header:From:asAddresses",
                    "header:List-Unsubscribe:asURLs",
                    "header:Message-ID:asMessageIds",
                    "header:Date:asDate",
                    "header:X-Missing",
                    "header:To:all",
                    "bodyStructure",
                ],
                "bodyProperties": ["partId", "type", "subParts", "blobId", "size"],
            },
        )
    )["list"][0]
    assert got["header:Subject:asText"] == "Résumé attached"
    assert got["header:From:asAddresses"] == [{"name": "Renée", "email": "renee@example.com"}]
    assert got["header:List-Unsubscribe:asURLs"] == ["https://example.com/unsub"]
    assert got["header:Message-ID:asMessageIds"] == ["multi@example.com"]
    assert got["header:Date:asDate"] == "2026-11-25T08:30:00+01:00"
    assert got["header:X-Missing"] is None
    assert len(got["header:To:all"]) == 1
    structure = got["bodyStructure"]
    assert structure["type"] == "multipart/mixed"
    assert [p["type"] for p in structure["subParts"]] == [
        "multipart/alternative",
        "application/pdf",
    ]
    pdf = structure["subParts"][1]
    assert pdf["size"] == 9
    assert await h.resolver.download(h.principal, ACCOUNT, pdf["blobId"]) == (
        b"%PDF-1.4\n",
        "application/pdf",
    )
    assert await h.resolver.download(h.principal, ACCOUNT, email.blob_id) == (
        MULTIPART,
        "message/rfc822",
    )
    assert await h.resolver.download(h.principal, SHARED, pdf["blobId"]) is None
    _, error = await h.call("Email/get", {"ids": [email.id], "properties": ["header:From:asBogus"]})
    assert error["type"] == "invalidArguments"


@pytest_twisted.ensureDeferred
async def test_set_keywords_and_mailboxes_by_patch(make_harness: HarnessFactory) -> None:
    """
    Keywords and mailboxIds change by whole value or by patch path; other
    properties are immutable; bad values are invalidProperties; a patch
    that overlaps is invalidPatch.
    """
    h = await make_harness()
    email = await h.deliver(message())
    roles = await h.roles()
    result = await h.ok(
        "Email/set",
        {
            "update": {
                email.id: {
                    "keywords/$seen": True,
                    "keywords/$Flagged": True,
                    f"mailboxIds/{roles['archive']}": True,
                }
            }
        },
    )
    assert result["updated"] == {email.id: None}
    got = (await h.ok("Email/get", {"ids": [email.id], "properties": ["keywords", "mailboxIds"]}))[
        "list"
    ][0]
    assert got["keywords"] == {"$seen": True, "$flagged": True}
    assert got["mailboxIds"] == {roles["inbox"]: True, roles["archive"]: True}
    result = await h.ok(
        "Email/set",
        {
            "update": {
                email.id: {"mailboxIds": {roles["trash"]: True}, "keywords/$seen": None},
            }
        },
    )
    got = (await h.ok("Email/get", {"ids": [email.id], "properties": ["keywords", "mailboxIds"]}))[
        "list"
    ][0]
    assert got == {
        "id": email.id,
        "keywords": {"$flagged": True},
        "mailboxIds": {roles["trash"]: True},
    }
    result = await h.ok(
        "Email/set",
        {
            "update": {
                email.id: {"subject": "new"},
                "nope": {"keywords": {}},
            }
        },
    )
    assert result["notUpdated"][email.id]["type"] == "invalidProperties"
    assert result["notUpdated"]["nope"]["type"] == "notFound"
    for patch, expected in (
        ({"mailboxIds": {}}, "invalidProperties"),
        ({"mailboxIds": {"nope": True}}, "invalidProperties"),
        ({"keywords": {"bad keyword": True}}, "invalidProperties"),
        ({"keywords/a(b": True}, "invalidProperties"),
        ({"keywords": {}, "keywords/$seen": True}, "invalidPatch"),
        ({"keywords/$seen": False}, "invalidPatch"),
        ({"keywords": {f"k{i}": True for i in range(101)}}, "tooManyKeywords"),
    ):
        result = await h.ok("Email/set", {"update": {email.id: patch}})
        assert result["notUpdated"][email.id]["type"] == expected, patch


@pytest_twisted.ensureDeferred
async def test_bulk_update_is_one_state_change(make_harness: HarnessFactory) -> None:
    """
    Flagging 50 emails in one Email/set is one operation: one commit, and
    Email/changes pages through it with maxChanges.
    """
    h = await make_harness()
    ids = [(await h.deliver(message(subject=f"m{i}"))).id for i in range(50)]
    commits: list[Any] = []
    h.store.subscribe(commits.append)
    state = (await h.ok("Email/get", {"ids": []}))["state"]
    result = await h.ok("Email/set", {"update": {i: {"keywords/$flagged": True} for i in ids}})
    assert len(result["updated"]) == 50
    assert len(commits) == 1
    seen: list[str] = []
    while True:
        page = await h.ok("Email/changes", {"sinceState": state, "maxChanges": 20})
        seen += page["updated"]
        state = page["newState"]
        if not page["hasMoreChanges"]:
            break
    assert sorted(seen) == sorted(ids)


@pytest_twisted.ensureDeferred
async def test_create_draft_destroy_and_thread(make_harness: HarnessFactory) -> None:
    """
    Email/set creates a draft from JMAP properties (server-set properties
    returned, createdIds usable in the same request), Thread/get lists it,
    and destroy removes it.
    """
    h = await make_harness()
    drafts = (await h.roles())["drafts"]
    responses = await h.request(
        [
            [
                "Email/set",
                {
                    "accountId": ACCOUNT,
                    "create": {
                        "d1": {
                            "mailboxIds": {drafts: True},
                            "keywords": {"$draft": True, "$seen": True},
                            "from": [{"name": "Alice", "email": "alice@example.com"}],
                            "to": [{"name": None, "email": "bob@example.com"}],
                            "subject": "Lunch?",
                            "bodyValues": {"b": {"value": "Noon at the usual place?"}},
                            "textBody": [{"partId": "b", "type": "text/plain"}],
                        }
                    },
                },
                "0",
            ],
            [
                "Email/get",
                {
                    "accountId": ACCOUNT,
                    "ids": ["#d1"],
                    "properties": ["subject", "threadId", "keywords", "preview"],
                },
                "1",
            ],
            [
                "Thread/get",
                {
                    "accountId": ACCOUNT,
                    "#ids": {"resultOf": "1", "name": "Email/get", "path": "/list/*/threadId"},
                },
                "2",
            ],
        ],
        created_ids={},
    )
    created = responses[0][1]["created"]["d1"]
    assert set(created) == {"id", "blobId", "threadId", "size"}
    got = responses[1][1]["list"][0]
    assert got["subject"] == "Lunch?"
    assert got["keywords"] == {"$draft": True, "$seen": True}
    assert got["preview"] == "Noon at the usual place?"
    assert responses[2][1]["list"] == [{"id": created["threadId"], "emailIds": [created["id"]]}]
    result = await h.ok("Email/set", {"destroy": [created["id"], "nope"]})
    assert result["destroyed"] == [created["id"]]
    assert result["notDestroyed"] == {"nope": {"type": "notFound"}}
    invalid = await h.ok("Email/set", {"create": {"bad": {"mailboxIds": {}, "subject": "x"}}})
    assert invalid["notCreated"]["bad"]["type"] == "invalidProperties"


@pytest_twisted.ensureDeferred
async def test_import_copy_and_parse(make_harness: HarnessFactory) -> None:
    """
    An uploaded message imports into mailboxes; Email/parse reads a blob
    without storing it; Email/copy puts a copy into another account and can
    destroy the original.
    """
    h = await make_harness()
    blob = await upload(h, MULTIPART)
    inbox = (await h.roles())["inbox"]
    result = await h.ok(
        "Email/import",
        {
            "emails": {
                "i1": {
                    "blobId": blob,
                    "mailboxIds": {inbox: True},
                    "keywords": {"$seen": True},
                    "receivedAt": "2026-01-02T03:04:05Z",
                }
            }
        },
    )
    imported = result["created"]["i1"]
    got = (
        await h.ok(
            "Email/get",
            {"ids": [imported["id"]], "properties": ["receivedAt", "subject", "keywords"]},
        )
    )["list"][0]
    assert got["receivedAt"] == "2026-01-02T03:04:05Z"
    assert got["keywords"] == {"$seen": True}
    bad = await h.ok(
        "Email/import", {"emails": {"x": {"blobId": "Gnope", "mailboxIds": {inbox: True}}}}
    )
    # RFC 8621 §4.8: an unknown blobId is invalidProperties, not blobNotFound.
    assert bad["notCreated"]["x"]["type"] == "invalidProperties"
    assert bad["notCreated"]["x"]["properties"] == ["blobId"]

    parsed = await h.ok(
        "Email/parse",
        {"blobIds": [blob, "Gnope"], "properties": ["subject", "blobId", "id", "attachments"]},
    )
    assert parsed["parsed"][blob]["subject"] == "Résumé attached"
    assert parsed["parsed"][blob]["id"] is None
    assert parsed["parsed"][blob]["blobId"] == blob
    assert parsed["notFound"] == ["Gnope"]

    shared_inbox = (await h.roles(SHARED))["inbox"]
    responses = await h.request(
        [
            [
                "Email/copy",
                {
                    "fromAccountId": ACCOUNT,
                    "accountId": SHARED,
                    "create": {"k": {"id": imported["id"], "mailboxIds": {shared_inbox: True}}},
                    "onSuccessDestroyOriginal": True,
                },
                "0",
            ]
        ]
    )
    assert [r[0] for r in responses] == ["Email/copy", "Email/set"]
    copy = responses[0][1]["created"]["k"]
    assert responses[1][1]["destroyed"] == [imported["id"]]
    in_shared = await h.ok(
        "Email/get",
        {"ids": [copy["id"]], "properties": ["subject", "keywords", "receivedAt"]},
        SHARED,
    )
    assert in_shared["list"][0]["subject"] == "Résumé attached"
    assert in_shared["list"][0]["receivedAt"] == "2026-01-02T03:04:05Z"


@pytest_twisted.ensureDeferred
async def test_query_filters_sorts_and_query_changes(make_harness: HarnessFactory) -> None:
    """
    Email/query validates filters and sorts, supports anchors, and
    Email/queryChanges reports what moved since a query state.
    """
    h = await make_harness()
    a = await h.deliver(message(subject="apples", sender="Zed <z@example.com>"), at=100.0)
    b = await h.deliver(message(subject="bananas", sender="Amy <a@example.com>"), at=200.0)
    c = await h.deliver(message(subject="cherries", sender="Max <m@example.com>"), at=300.0)
    by_from = await h.ok("Email/query", {"sort": [{"property": "from"}]})
    assert by_from["ids"] == [b.id, c.id, a.id]
    anchored = await h.ok(
        "Email/query",
        {"sort": [{"property": "receivedAt"}], "anchor": b.id, "anchorOffset": 1, "limit": 5},
    )
    assert anchored["ids"] == [c.id] and anchored["position"] == 2
    negative = await h.ok("Email/query", {"sort": [{"property": "receivedAt"}], "position": -1})
    assert negative["ids"] == [c.id] and negative["position"] == 2
    missing = await h.call("Email/query", {"anchor": "nope"})
    assert missing[1]["type"] == "anchorNotFound"
    for bad, error in (
        ({"filter": {"bogus": 1}}, "unsupportedFilter"),
        ({"filter": {"before": "yesterday"}}, "invalidArguments"),
        ({"sort": [{"property": "preview"}]}, "unsupportedSort"),
        ({"sort": [{"property": "hasKeyword"}]}, "invalidArguments"),
        ({"filter": {"operator": "XOR", "conditions": []}}, "invalidArguments"),
    ):
        assert (await h.call("Email/query", bad))[1]["type"] == error, bad
    text = await h.ok("Email/query", {"filter": {"text": "banana"}})
    assert text["ids"] == [b.id]
    snippets = await h.ok(
        "SearchSnippet/get", {"filter": {"text": "banana"}, "emailIds": [b.id, "nope"]}
    )
    assert snippets["list"][0]["subject"] == "<mark>banana</mark>s"
    assert snippets["notFound"] == ["nope"]

    state = (await h.ok("Email/query", {"sort": [{"property": "receivedAt"}]}))["queryState"]
    d = await h.deliver(message(subject="dates"), at=50.0)
    await h.ok("Email/set", {"destroy": [a.id]})
    changes = await h.ok(
        "Email/queryChanges", {"sinceQueryState": state, "sort": [{"property": "receivedAt"}]}
    )
    assert changes["removed"] == [a.id]
    assert changes["added"] == [{"id": d.id, "index": 0}]
    assert changes["oldQueryState"] == state
    assert (await h.call("Email/queryChanges", {"sinceQueryState": "bogus"}))[1][
        "type"
    ] == "cannotCalculateChanges"


def test_parse_cache_is_bounded_by_octets() -> None:
    """
    The parsed-message cache holds at most its octet budget and does not
    keep messages larger than a quarter of it.
    """
    from jmap_twisted.methods.email import ParseCache

    cache = ParseCache(size=100, octets=4000)
    for index in range(10):
        cache.get(f"b{index}", message(body="x" * 900, subject=str(index)))
    held = cache._local.held
    assert held <= 4000
    assert len(cache._local.entries) < 10
    cache.get("big", message(body="y" * 2000))
    assert "big" not in cache._local.entries


@pytest_twisted.ensureDeferred
async def test_query_filter_size_is_bounded(make_harness: HarnessFactory) -> None:
    """
    An Email/query filter of more than MAX_FILTER_CONDITIONS conditions (a
    50×50 OR of ANDs, 2,500 conditions in one OR, or one long
    inMailboxOtherThan) answers
    ``unsupportedFilter`` with a description, before reaching the store; a
    filter at the limit runs.
    """
    from jmap_twisted.methods.email_query import MAX_FILTER_CONDITIONS

    h = await make_harness()
    a = await h.deliver(message(subject="apples"))
    inner = [{"subject": f"s{i}"} for i in range(50)]
    huge = {"operator": "OR", "conditions": [{"operator": "AND", "conditions": inner}] * 50}
    long_list = {"inMailboxOtherThan": ["m" + str(i) for i in range(MAX_FILTER_CONDITIONS + 1)]}
    flat = {"operator": "OR", "conditions": [{"hasKeyword": f"k{i}"} for i in range(2500)]}
    for bad in (huge, flat, long_list):
        for method in ("Email/query", "Email/queryChanges", "SearchSnippet/get"):
            extra = {"sinceQueryState": "0"} if method == "Email/queryChanges" else {}
            if method == "SearchSnippet/get":
                extra = {"emailIds": [a.id]}
            error = (await h.call(method, {"filter": bad, **extra}))[1]
            assert error["type"] == "unsupportedFilter", (method, error)
            assert str(MAX_FILTER_CONDITIONS) in error["description"]
    at_limit = {
        "operator": "OR",
        "conditions": [{"subject": "apples"}]
        + [{"subject": f"s{i}"} for i in range(MAX_FILTER_CONDITIONS - 2)],
    }
    assert (await h.ok("Email/query", {"filter": at_limit}))["ids"] == [a.id]


@pytest_twisted.ensureDeferred
async def test_filter_values_that_are_not_conditions(make_harness: HarnessFactory) -> None:
    """
    ``inMailboxOtherThan: []`` means in any mailbox (on every store, where
    an empty ``NOT IN ()`` is not SQL PostgreSQL takes); a ``null`` size is
    ``invalidArguments``, not a comparison with nothing.
    """
    h = await make_harness()
    a = await h.deliver(message(subject="apples"))
    assert (await h.ok("Email/query", {"filter": {"inMailboxOtherThan": []}}))["ids"] == [a.id]
    for name in ("minSize", "maxSize"):
        error = (await h.call("Email/query", {"filter": {name: None}}))[1]
        assert error["type"] == "invalidArguments", error


@pytest_twisted.ensureDeferred
async def test_email_get_shows_every_change_to_an_email_asked_for_again(
    make_harness: HarnessFactory,
) -> None:
    """
    Asking again for the same list properties of the same emails (as a
    client showing a mailbox does) shows every change made to them in
    between, each answer with the state it was read at; asking for other
    properties answers those.
    """
    h = await make_harness()
    kept = await h.deliver(message(subject="kept"))
    changed = await h.deliver(message(subject="changed"))
    properties = ["keywords", "mailboxIds", "subject", "from", "receivedAt"]
    ids = [kept.id, changed.id, "Mnonexistent"]
    first = await h.ok("Email/get", {"ids": ids, "properties": properties})
    again = await h.ok("Email/get", {"ids": ids, "properties": properties})
    assert again == first
    assert first["notFound"] == ["Mnonexistent"]
    roles = await h.roles()
    await h.ok(
        "Email/set",
        {"update": {changed.id: {"keywords/$seen": True, "mailboxIds": {roles["trash"]: True}}}},
    )
    after = await h.ok("Email/get", {"ids": ids, "properties": properties})
    assert after["state"] != first["state"]
    by_id = {item["id"]: item for item in after["list"]}
    assert by_id[changed.id]["keywords"] == {"$seen": True}
    assert by_id[changed.id]["mailboxIds"] == {roles["trash"]: True}
    assert by_id[kept.id] == {item["id"]: item for item in first["list"]}[kept.id]
    await h.ok("Email/set", {"destroy": [kept.id]})
    gone = await h.ok("Email/get", {"ids": ids, "properties": properties})
    assert [item["id"] for item in gone["list"]] == [changed.id]
    assert gone["notFound"] == [kept.id, "Mnonexistent"]
    other = await h.ok("Email/get", {"ids": [changed.id], "properties": ["subject", "size"]})
    assert set(other["list"][0]) == {"id", "subject", "size"}
