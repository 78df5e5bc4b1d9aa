"""
``Mailbox.shareWith`` (RFC 9670 §4): shown to those who administer the
account's mailboxes, set whole or patched through ``Mailbox/set``, kept in
the directory, recorded in the owner's change log and notified to the
sharee.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from jmap_twisted import rights
from jmap_twisted.records import MailboxShare
from jmap_twisted.sharing import Sharing
from tests.methods.harness import CORE, MAIL, HarnessFactory
from tests.methods.sharingharness import SharingHarness, sharing_harness

NONE = dict.fromkeys(rights.RIGHTS_PROPERTIES, False)


def granting(**given: bool) -> dict[str, bool]:
    """
    A MailboxRights object with the given rights true, the others false.
    """
    return {**NONE, **given}


async def shares(h: SharingHarness, owner: str = "alice") -> list[tuple[str, str, str]]:
    """
    The directory's shares of a user's account: (mailbox, sharee, letters).
    """
    found = await h.directory.shares_of_account(h.accounts[owner].id)
    return [(s.mailbox_id, s.user_id, s.rights) for s in found]


async def share_with(h: SharingHarness, mailbox: str, who: str = "alice") -> Any:
    """
    A mailbox's shareWith as a user reads it in alice's account.
    """
    got = await h.ok(
        who,
        "Mailbox/get",
        {"ids": [mailbox], "properties": ["shareWith"]},
        account=h.accounts["alice"].id,
    )
    return got["list"][0]["shareWith"]


async def update(h: SharingHarness, mailbox: str, patch: dict[str, Any]) -> dict[str, Any]:
    """
    Alice's Mailbox/set updating one of her mailboxes, a second after the
    previous call.
    """
    h.clock.advance(1)
    return await h.ok("alice", "Mailbox/set", {"update": {mailbox: patch}})


@pytest_twisted.ensureDeferred
async def test_share_by_patch_shows_stores_and_notifies(make_harness: HarnessFactory) -> None:
    """
    Patching ``shareWith/<bob>`` shares the mailbox with bob: the
    directory holds the letters, Mailbox/get shows the rights as granted,
    the owner's Mailbox changes list the mailbox updated, and bob's own
    account holds a ShareNotification saying who shared what.
    """
    h = await sharing_harness(make_harness)
    bob = h.users["bob"].id
    inbox = await h.mailbox("alice", "inbox")
    assert await share_with(h, inbox) is None
    before = (await h.ok("alice", "Mailbox/get", {"ids": []}))["state"]

    result = await update(h, inbox, {f"shareWith/{bob}": granting(mayReadItems=True)})

    assert result["updated"] == {inbox: None}
    assert await shares(h) == [(inbox, bob, "lr")]
    assert await share_with(h, inbox) == {bob: granting(mayReadItems=True)}
    changes = await h.ok("alice", "Mailbox/changes", {"sinceState": before})
    assert changes["updated"] == [inbox]
    assert result["newState"] == changes["newState"]
    notes = await h.ok("bob", "ShareNotification/get", {"ids": None})
    (note,) = notes["list"]
    assert note["changedBy"] == {"name": "alice", "email": None, "principalId": h.users["alice"].id}
    assert (note["objectType"], note["objectAccountId"], note["objectId"], note["name"]) == (
        "Mailbox",
        h.accounts["alice"].id,
        inbox,
        "Inbox",
    )
    assert note["oldRights"] == NONE
    assert note["newRights"] == granting(mayReadItems=True)


@pytest_twisted.ensureDeferred
async def test_patch_one_right_then_replace_then_unshare(make_harness: HarnessFactory) -> None:
    """
    ``shareWith/<p>/<right>`` adds or removes that right's letters only;
    a whole value replaces every share of the mailbox (a principal left
    out is unshared); ``null`` unshares everyone.  Each change notifies
    the sharee concerned.
    """
    h = await sharing_harness(make_harness)
    bob, carol = h.users["bob"].id, h.users["carol"].id
    archive = await h.mailbox("alice", "archive")
    await update(h, archive, {f"shareWith/{bob}": granting(mayReadItems=True, maySetSeen=True)})

    await update(h, archive, {f"shareWith/{bob}/mayAddItems": True})
    assert await shares(h) == [(archive, bob, "lrsi")]
    await update(h, archive, {f"shareWith/{bob}/maySetSeen": False})
    assert await shares(h) == [(archive, bob, "lri")]

    await update(h, archive, {"shareWith": {carol: granting(mayReadItems=True, mayAdmin=True)}})
    assert await shares(h) == [(archive, carol, "lra")]
    assert await share_with(h, archive) == {carol: granting(mayReadItems=True, mayAdmin=True)}

    await update(h, archive, {"shareWith": None})
    assert await shares(h) == []
    assert await share_with(h, archive) is None
    bobs = await h.ok("bob", "ShareNotification/get", {"ids": None})
    assert len(bobs["list"]) == 4, "shared, two changes, unshared"
    last = max(bobs["list"], key=lambda n: n["id"])
    assert last["newRights"] == NONE
    assert last["oldRights"] == granting(mayReadItems=True, mayAddItems=True)
    carols = await h.ok("carol", "ShareNotification/get", {"ids": None})
    assert len(carols["list"]) == 2


@pytest_twisted.ensureDeferred
async def test_refused_share_leaves_the_whole_update_undone(make_harness: HarnessFactory) -> None:
    """
    The owner, an unknown principal, a right that does not exist or a
    value that is not a boolean make the update invalidProperties on
    shareWith; its other properties are not applied, nothing is shared,
    and the other updates of the call go through.
    """
    h = await sharing_harness(make_harness)
    alice, bob = h.users["alice"].id, h.users["bob"].id
    inbox = await h.mailbox("alice", "inbox")
    archive = await h.mailbox("alice", "archive")
    refused = [
        {f"shareWith/{alice}": granting(mayReadItems=True)},
        {"shareWith": {"Unobody": granting(mayReadItems=True)}},
        {f"shareWith/{bob}/mayFly": True},
        {f"shareWith/{bob}": {"mayReadItems": "yes"}},
        {f"shareWith/{bob}/mayReadItems": 1},
        {"shareWith": [bob]},
    ]
    for patch in refused:
        result = await h.ok(
            "alice",
            "Mailbox/set",
            {"update": {archive: {"name": "Renamed", **patch}, inbox: {"sortOrder": 7}}},
        )
        assert result["notUpdated"][archive]["type"] == "invalidProperties", patch
        assert result["notUpdated"][archive]["properties"] == ["shareWith"]
        assert result["updated"] == {inbox: None}
    got = await h.ok("alice", "Mailbox/get", {"ids": [archive], "properties": ["name"]})
    assert got["list"][0]["name"] == "Archive"
    assert await shares(h) == []
    overlapping = await update(
        h, archive, {"shareWith": None, f"shareWith/{bob}": granting(mayReadItems=True)}
    )
    assert overlapping["notUpdated"][archive]["type"] == "invalidPatch"


@pytest_twisted.ensureDeferred
async def test_unchanged_value_keeps_letters_no_right_stands_for(
    make_harness: HarnessFactory,
) -> None:
    """
    A share of lookup alone (``l``, as an administrator may give) shows
    every right false; writing the value back unchanged keeps it, where
    the same value for a new principal shares nothing.
    """
    h = await sharing_harness(make_harness)
    bob, carol = h.users["bob"].id, h.users["carol"].id
    inbox = await h.mailbox("alice", "inbox")
    await Sharing(h.directory, h.store, h.clock).set_rights(
        h.accounts["alice"], inbox, bob, "l", None
    )
    value = await share_with(h, inbox)
    assert value == {bob: NONE}

    await update(h, inbox, {"shareWith": {**value, carol: NONE}})
    assert await shares(h) == [(inbox, bob, "l")]


@pytest_twisted.ensureDeferred
async def test_create_with_share_and_destroy_forgets(make_harness: HarnessFactory) -> None:
    """
    A mailbox created with shareWith is shared once created; destroying a
    shared mailbox drops its shares.
    """
    h = await sharing_harness(make_harness)
    bob = h.users["bob"].id
    created = await h.ok(
        "alice",
        "Mailbox/set",
        {"create": {"t": {"name": "Team", "shareWith": {bob: granting(mayReadItems=True)}}}},
    )
    team = created["created"]["t"]["id"]
    assert "shareWith" not in created["created"]["t"]
    assert await shares(h) == [(team, bob, "lr")]

    destroyed = await h.ok("alice", "Mailbox/set", {"destroy": [team]})
    assert destroyed["destroyed"] == [team]
    assert await shares(h) == []


@pytest_twisted.ensureDeferred
async def test_delegate_sees_and_changes_share_with(make_harness: HarnessFactory) -> None:
    """
    A delegate of the account administers its mailboxes: they see
    shareWith and may change it; the notification names them.
    """
    h = await sharing_harness(make_harness)
    bob = h.users["bob"].id
    await h.directory.delegate("alice", "carol")
    inbox = await h.mailbox("alice", "inbox")
    await h.ok(
        "carol",
        "Mailbox/set",
        {"update": {inbox: {f"shareWith/{bob}": granting(mayReadItems=True)}}},
        account=h.accounts["alice"].id,
    )
    assert await share_with(h, inbox, who="carol") == {bob: granting(mayReadItems=True)}
    (note,) = (await h.ok("bob", "ShareNotification/get", {"ids": None}))["list"]
    assert note["changedBy"]["principalId"] == h.users["carol"].id


@pytest_twisted.ensureDeferred
async def test_share_with_needs_the_principals_capability(make_harness: HarnessFactory) -> None:
    """
    Without urn:ietf:params:jmap:principals in ``using``, Mailbox objects
    have no shareWith: it is neither listed nor accepted.
    """
    h = await sharing_harness(make_harness)
    inbox = await h.mailbox("alice", "inbox")
    plain = (CORE, MAIL)
    got = await h.ok("alice", "Mailbox/get", {"ids": [inbox]}, using=plain)
    assert "shareWith" not in got["list"][0]
    with_sharing = await h.ok("alice", "Mailbox/get", {"ids": [inbox]})
    assert with_sharing["list"][0]["shareWith"] is None
    name, error = await h.call(
        "alice", "Mailbox/get", {"ids": [inbox], "properties": ["shareWith"]}, using=plain
    )
    assert (name, error["type"]) == ("error", "invalidArguments")
    result = await h.ok(
        "alice",
        "Mailbox/set",
        {"update": {inbox: {"shareWith": {h.users["bob"].id: granting(mayReadItems=True)}}}},
        using=plain,
    )
    assert result["notUpdated"][inbox]["type"] == "invalidProperties"
    assert await shares(h) == []


@pytest_twisted.ensureDeferred
async def test_sharing_service_refuses_bad_requests(make_harness: HarnessFactory) -> None:
    """
    The sharing service checks what the directory cannot: the mailbox
    exists in the owner's account; it refuses the owner and unknown
    letters; giving the rights held already changes and notifies nothing.
    """
    from jmap_twisted.errors import NoSuchUser
    from jmap_twisted.sharing import SharingRefused

    h = await sharing_harness(make_harness)
    sharing = Sharing(h.directory, h.store, h.clock)
    alice, bob = h.accounts["alice"], h.users["bob"].id
    inbox = await h.mailbox("alice", "inbox")
    bobs_inbox = await h.mailbox("bob", "inbox")
    for mailbox, user, letters, error in [
        (bobs_inbox, bob, "lr", SharingRefused),
        (inbox, h.users["alice"].id, "lr", SharingRefused),
        (inbox, "Unobody", "lr", NoSuchUser),
        (inbox, bob, "lrz", ValueError),
    ]:
        try:
            await sharing.set_rights(alice, mailbox, user, letters, None)
        except error:
            pass
        else:
            raise AssertionError(f"{mailbox} {user} {letters} was accepted")
    assert await shares(h) == []
    first = await sharing.set_rights(alice, inbox, bob, "rl", None)
    again = await sharing.set_rights(alice, inbox, bob, "lr", None)
    assert (first.old, first.new, first.changed) == ("", "lr", True)
    assert again.changed is False
    notes = await h.ok("bob", "ShareNotification/get", {"ids": None})
    assert len(notes["list"]) == 1
    assert notes["list"][0]["changedBy"] == {
        "name": "Administrator",
        "email": None,
        "principalId": None,
    }
    assert await h.directory.shares_of_account(alice.id) == [
        MailboxShare(alice.id, inbox, bob, "lr", True)
    ]
