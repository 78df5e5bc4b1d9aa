"""
Mailbox methods (RFC 8621 §2).
"""

from __future__ import annotations

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import HarnessFactory


@pytest_twisted.ensureDeferred
async def test_get_lists_role_mailboxes_with_counts_and_rights(
    make_harness: HarnessFactory,
) -> None:
    """
    A new account's Mailbox/get lists the six role mailboxes with every
    property, zero counts and full rights (the inbox cannot be deleted).
    """
    h = await make_harness()
    result = await h.ok("Mailbox/get", {"ids": None})
    assert sorted(m["role"] for m in result["list"]) == sorted(
        ["inbox", "drafts", "sent", "archive", "junk", "trash"]
    )
    inbox = next(m for m in result["list"] if m["role"] == "inbox")
    assert set(inbox) == {
        "id",
        "name",
        "parentId",
        "role",
        "sortOrder",
        "totalEmails",
        "unreadEmails",
        "totalThreads",
        "unreadThreads",
        "myRights",
        "isSubscribed",
    }
    assert inbox["name"] == "Inbox" and inbox["totalEmails"] == 0
    assert inbox["myRights"]["mayDelete"] is False
    assert result["notFound"] == []
    some = await h.ok("Mailbox/get", {"ids": [inbox["id"], "nope"], "properties": ["name"]})
    assert some["list"] == [{"id": inbox["id"], "name": "Inbox"}]
    assert some["notFound"] == ["nope"]
    name, error = await h.call("Mailbox/get", {"properties": ["bogus"]})
    assert (name, error["type"]) == ("error", "invalidArguments")


@pytest_twisted.ensureDeferred
async def test_delivery_shows_in_counts_and_changes_are_counts_only(
    make_harness: HarnessFactory,
) -> None:
    """
    After a delivery, Mailbox/changes lists the inbox as updated with
    updatedProperties naming only the counts, and Mailbox/get shows them.
    """
    h = await make_harness()
    state = (await h.ok("Mailbox/get", {"ids": []}))["state"]
    await h.deliver(message())
    changes = await h.ok("Mailbox/changes", {"sinceState": state})
    roles = await h.roles()
    assert changes["updated"] == [roles["inbox"]]
    assert changes["updatedProperties"] == [
        "totalEmails",
        "unreadEmails",
        "totalThreads",
        "unreadThreads",
    ]
    inbox = (await h.ok("Mailbox/get", {"ids": [roles["inbox"]]}))["list"][0]
    assert (
        inbox["totalEmails"],
        inbox["unreadEmails"],
        inbox["totalThreads"],
        inbox["unreadThreads"],
    ) == (1, 1, 1, 1)


@pytest_twisted.ensureDeferred
async def test_set_create_nested_with_creation_references(make_harness: HarnessFactory) -> None:
    """
    Mailboxes can be created under mailboxes created in the same call by
    ``#creationId``, in any order; server-set properties come back.
    """
    h = await make_harness()
    result = await h.ok(
        "Mailbox/set",
        {"create": {"child": {"name": "2026", "parentId": "#top"}, "top": {"name": "Projects"}}},
    )
    assert set(result["created"]) == {"child", "top"}
    top_id = result["created"]["top"]["id"]
    assert result["created"]["top"]["totalEmails"] == 0
    assert result["created"]["top"]["myRights"]["mayRename"] is True
    child = (await h.ok("Mailbox/get", {"ids": [result["created"]["child"]["id"]]}))["list"][0]
    assert child["parentId"] == top_id
    assert result["oldState"] != result["newState"]


@pytest_twisted.ensureDeferred
async def test_set_rejects_invalid_mailboxes(make_harness: HarnessFactory) -> None:
    """
    Duplicate sibling names, unknown roles, a second inbox, server-set
    properties, empty names and unknown parents are invalidProperties
    naming the property.
    """
    h = await make_harness()
    result = await h.ok(
        "Mailbox/set",
        {
            "create": {
                "dup": {"name": "Inbox"},
                "role": {"name": "X", "role": "bogus"},
                "inbox2": {"name": "Y", "role": "inbox"},
                "server": {"name": "Z", "totalEmails": 3},
                "empty": {"name": ""},
                "parent": {"name": "W", "parentId": "nope"},
            }
        },
    )
    errors = result["notCreated"]
    assert {k: v["properties"] for k, v in errors.items()} == {
        "dup": ["name"],
        "role": ["role"],
        "inbox2": ["role"],
        "server": ["totalEmails"],
        "empty": ["name"],
        "parent": ["parentId"],
    }
    assert all(v["type"] == "invalidProperties" for v in errors.values())
    assert result["created"] is None


@pytest_twisted.ensureDeferred
async def test_update_rename_move_and_cycles(make_harness: HarnessFactory) -> None:
    """
    Renaming and moving work by patch; making a mailbox its own ancestor is
    refused; unknown ids are notFound; the inbox keeps its role.
    """
    h = await make_harness()
    made = await h.ok(
        "Mailbox/set", {"create": {"a": {"name": "A"}, "b": {"name": "B", "parentId": "#a"}}}
    )
    a, b = made["created"]["a"]["id"], made["created"]["b"]["id"]
    inbox = (await h.roles())["inbox"]
    result = await h.ok(
        "Mailbox/set",
        {
            "update": {
                b: {"name": "Bee", "parentId": None},
                a: {"parentId": b},
                "nope": {"name": "x"},
                inbox: {"role": None},
            }
        },
    )
    assert b in result["updated"]
    assert result["notUpdated"]["nope"]["type"] == "notFound"
    assert result["notUpdated"][inbox]["type"] == "forbidden"
    # a under b is fine now that b is top-level; b under a would be a cycle
    assert a in result["updated"]
    cycle = await h.ok("Mailbox/set", {"update": {b: {"parentId": a}}})
    assert cycle["notUpdated"][b]["properties"] == ["parentId"]
    got = {m["id"]: m for m in (await h.ok("Mailbox/get", {"ids": [a, b]}))["list"]}
    assert got[b]["name"] == "Bee" and got[b]["parentId"] is None and got[a]["parentId"] == b


@pytest_twisted.ensureDeferred
async def test_destroy_rules(make_harness: HarnessFactory) -> None:
    """
    A mailbox with children is mailboxHasChild, with email mailboxHasEmail
    unless onDestroyRemoveEmails, which destroys emails only in it and
    removes it from emails also elsewhere.
    """
    h = await make_harness()
    made = await h.ok(
        "Mailbox/set", {"create": {"p": {"name": "P"}, "c": {"name": "C", "parentId": "#p"}}}
    )
    parent, child = made["created"]["p"]["id"], made["created"]["c"]["id"]
    inbox = (await h.roles())["inbox"]
    only = await h.ok(
        "Email/set",
        {"create": {"x": {"mailboxIds": {child: True}, "subject": "only here"}}},
    )
    both = await h.ok(
        "Email/set",
        {"create": {"y": {"mailboxIds": {child: True, inbox: True}, "subject": "both"}}},
    )
    result = await h.ok("Mailbox/set", {"destroy": [parent, child]})
    assert result["notDestroyed"][parent]["type"] == "mailboxHasChild"
    assert result["notDestroyed"][child]["type"] == "mailboxHasEmail"
    result = await h.ok("Mailbox/set", {"destroy": [child], "onDestroyRemoveEmails": True})
    assert result["destroyed"] == [child]
    emails = await h.ok(
        "Email/get",
        {
            "ids": [only["created"]["x"]["id"], both["created"]["y"]["id"]],
            "properties": ["mailboxIds"],
        },
    )
    assert emails["notFound"] == [only["created"]["x"]["id"]]
    assert emails["list"][0]["mailboxIds"] == {inbox: True}
    result = await h.ok("Mailbox/set", {"destroy": [parent, "nope"]})
    assert result["destroyed"] == [parent]
    assert result["notDestroyed"]["nope"]["type"] == "notFound"


@pytest_twisted.ensureDeferred
async def test_if_in_state(make_harness: HarnessFactory) -> None:
    """
    A stale ifInState is stateMismatch and changes nothing.
    """
    h = await make_harness()
    name, error = await h.call("Mailbox/set", {"ifInState": "999", "create": {"a": {"name": "A"}}})
    assert (name, error["type"]) == ("error", "stateMismatch")


@pytest_twisted.ensureDeferred
async def test_query_sort_and_tree(make_harness: HarnessFactory) -> None:
    """
    Mailbox/query filters and sorts; sortAsTree puts children right after
    their parent; queryChanges reports new mailboxes with their index.
    """
    h = await make_harness()
    made = await h.ok(
        "Mailbox/set",
        {
            "create": {
                "z": {"name": "Zeta", "sortOrder": 20},
                "k": {"name": "Kid", "parentId": "#z", "sortOrder": 1},
            }
        },
    )
    query = await h.ok(
        "Mailbox/query", {"filter": {"hasAnyRole": False}, "sort": [{"property": "name"}]}
    )
    assert query["ids"] == [made["created"]["k"]["id"], made["created"]["z"]["id"]]
    tree = await h.ok(
        "Mailbox/query",
        {"sort": [{"property": "sortOrder"}, {"property": "name"}], "sortAsTree": True},
    )
    ids = tree["ids"]
    assert ids.index(made["created"]["k"]["id"]) == ids.index(made["created"]["z"]["id"]) + 1
    _, error = await h.call("Mailbox/query", {"sort": [{"property": "totalEmails"}]})
    assert error["type"] == "unsupportedSort"
    _, error = await h.call("Mailbox/query", {"filter": {"bogus": 1}})
    assert error["type"] == "unsupportedFilter"
    before = (await h.ok("Mailbox/query", {}))["queryState"]
    added = await h.ok("Mailbox/set", {"create": {"n": {"name": "New"}}})
    changes = await h.ok("Mailbox/queryChanges", {"sinceQueryState": before})
    new_id = added["created"]["n"]["id"]
    current = (await h.ok("Mailbox/query", {}))["ids"]
    assert changes["added"] == [{"id": new_id, "index": current.index(new_id)}]
    assert changes["removed"] == []
