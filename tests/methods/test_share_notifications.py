"""
Share notifications (RFC 9670 §3): kept in the sharee's personal account,
read, queried and destroyed there, at most a hundred, and pushed.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from jmap_twisted.bus.changes import state_change_states
from jmap_twisted.bus.events import MailboxChanged
from jmap_twisted.methods.standard import utc_date
from jmap_twisted.push.listener import PUSH_TYPES
from jmap_twisted.records import StoreCommit
from jmap_twisted.sharing import MAX_NOTIFICATIONS, NOTIFICATION, Sharing
from tests.methods.harness import HarnessFactory
from tests.methods.sharingharness import SharingHarness, sharing_harness


async def share(h: SharingHarness, owner: str, role: str, sharee: str, letters: str) -> None:
    """
    The administrator shares a role mailbox of ``owner`` with ``sharee``,
    a second after the previous change.
    """
    h.clock.advance(1)
    mailbox = await h.mailbox(owner, role)
    sharing = Sharing(h.directory, h.store, h.clock)
    await sharing.set_rights(h.accounts[owner], mailbox, h.users[sharee].id, letters, None)


async def notifications(h: SharingHarness, who: str = "carol") -> list[dict[str, Any]]:
    return list((await h.ok(who, "ShareNotification/get", {"ids": None}))["list"])


@pytest_twisted.ensureDeferred
async def test_get_changes_and_destroy(make_harness: HarnessFactory) -> None:
    """
    A share adds a notification to the sharee's own account, with every
    property; ShareNotification/changes reports it created; the sharee may
    destroy it (reported destroyed) but neither create nor update one.
    """
    h = await sharing_harness(make_harness)
    state = (await h.ok("carol", "ShareNotification/get", {"ids": []}))["state"]
    await share(h, "alice", "inbox", "carol", "lrs")
    (note,) = await notifications(h)
    assert set(note) == {
        "id",
        "created",
        "changedBy",
        "objectType",
        "objectAccountId",
        "objectId",
        "oldRights",
        "newRights",
        "name",
    }
    assert note["created"] == utc_date(h.clock.seconds())
    assert note["newRights"]["maySetSeen"] is True
    assert note["newRights"]["maySubmit"] is False
    assert await notifications(h, "alice") == [], "the owner is not notified"
    changes = await h.ok("carol", "ShareNotification/changes", {"sinceState": state})
    assert changes["created"] == [note["id"]]

    result = await h.ok(
        "carol",
        "ShareNotification/set",
        {
            "create": {"n": {"name": "forged"}},
            "update": {note["id"]: {"name": "changed"}},
            "destroy": [note["id"], "Nnone"],
        },
    )
    assert result["notCreated"]["n"]["type"] == "forbidden"
    assert result["notUpdated"][note["id"]]["type"] == "forbidden"
    assert result["destroyed"] == [note["id"]]
    assert result["notDestroyed"] == {"Nnone": {"type": "notFound"}}
    assert await notifications(h) == []
    after = await h.ok("carol", "ShareNotification/changes", {"sinceState": changes["newState"]})
    assert after["destroyed"] == [note["id"]]
    assert after["newState"] == result["newState"]


@pytest_twisted.ensureDeferred
async def test_only_in_the_personal_account(make_harness: HarnessFactory) -> None:
    """
    A delegate does not read the owner's notifications: the methods answer
    accountNotSupportedByMethod in any account but the caller's own.
    """
    h = await sharing_harness(make_harness)
    await h.directory.delegate("carol", "bob")
    await share(h, "alice", "inbox", "carol", "lr")
    name, error = await h.call(
        "bob", "ShareNotification/get", {"ids": None}, account=h.accounts["carol"].id
    )
    assert (name, error["type"]) == ("error", "accountNotSupportedByMethod")


@pytest_twisted.ensureDeferred
async def test_query_filters_sorts_and_query_changes(make_harness: HarnessFactory) -> None:
    """
    ShareNotification/query filters on the creation time (after: at or
    after, before: strictly before), the object's type and account, and
    sorts by creation time either way; queryChanges places a new one.
    """
    h = await sharing_harness(make_harness)
    await share(h, "alice", "inbox", "carol", "lr")
    first_time = utc_date(h.clock.seconds())
    await share(h, "bob", "inbox", "carol", "lr")
    second_time = utc_date(h.clock.seconds())
    await share(h, "alice", "archive", "carol", "lr")
    notes = sorted(await notifications(h), key=lambda n: n["created"])
    first, second, third = (n["id"] for n in notes)

    async def query(arguments: dict[str, Any]) -> list[str]:
        return list((await h.ok("carol", "ShareNotification/query", arguments))["ids"])

    by_created = {"sort": [{"property": "created"}]}
    assert await query(by_created) == [first, second, third]
    assert await query({"sort": [{"property": "created", "isAscending": False}]}) == [
        third,
        second,
        first,
    ]
    assert await query({"filter": {"after": second_time}, **by_created}) == [second, third]
    assert await query({"filter": {"before": second_time}, **by_created}) == [first]
    assert await query({"filter": {"after": first_time, "before": second_time}}) == [first]
    alices = {"objectAccountId": h.accounts["alice"].id}
    assert await query({"filter": alices, **by_created}) == [first, third]
    assert await query({"filter": {"objectType": "Mailbox"}, **by_created}) == [
        first,
        second,
        third,
    ]
    assert await query({"filter": {"objectType": "Calendar"}}) == []
    for arguments, error in [
        ({"filter": {"after": "yesterday"}}, "invalidArguments"),
        ({"filter": {"objectId": first}}, "unsupportedFilter"),
        ({"sort": [{"property": "name"}]}, "unsupportedSort"),
    ]:
        name, answer = await h.call("carol", "ShareNotification/query", arguments)
        assert (name, answer["type"]) == ("error", error), arguments

    before = await h.ok("carol", "ShareNotification/query", by_created)
    await share(h, "bob", "archive", "carol", "lr")
    changes = await h.ok(
        "carol",
        "ShareNotification/queryChanges",
        {**by_created, "sinceQueryState": before["queryState"]},
    )
    fourth = max((n["id"] for n in await notifications(h)), key=str)
    assert changes["added"] == [{"id": fourth, "index": 3}]
    assert changes["removed"] == []


@pytest_twisted.ensureDeferred
async def test_at_most_a_hundred_kept(make_harness: HarnessFactory) -> None:
    """
    Past the limit, each new notification drops the oldest one.
    """
    h = await sharing_harness(make_harness)
    for n in range(MAX_NOTIFICATIONS + 2):
        await share(h, "alice", "inbox", "carol", "lr" if n % 2 == 0 else "lrs")
    kept = sorted(await notifications(h), key=lambda n: n["created"])
    assert len(kept) == MAX_NOTIFICATIONS
    assert kept[0]["newRights"]["maySetSeen"] is False, "the two oldest went"
    assert kept[0]["oldRights"]["maySetSeen"] is True
    assert kept[-1]["created"] == utc_date(h.clock.seconds())


@pytest_twisted.ensureDeferred
async def test_notifications_are_pushed(make_harness: HarnessFactory) -> None:
    """
    A notification commits in the sharee's account with the
    ShareNotification state, which push carries and clients may ask for.
    """
    h = await sharing_harness(make_harness)
    commits: list[StoreCommit] = []
    h.store.subscribe(commits.append)
    await share(h, "alice", "inbox", "carol", "lr")
    (commit,) = [c for c in commits if c.account_id == h.accounts["carol"].id]
    state = (await h.ok("carol", "ShareNotification/get", {"ids": []}))["state"]
    pushed = state_change_states(MailboxChanged.from_commit(commit))
    assert pushed == {NOTIFICATION: state}
    assert NOTIFICATION in PUSH_TYPES
