"""
Principals (RFC 9670 §2): the capabilities in the session, and the
``Principal`` methods over the directory's users.
"""

from __future__ import annotations

import pytest_twisted

from jmap_twisted.core.session import session_object
from tests.methods.harness import CORE, MAIL, HarnessFactory
from tests.methods.sharingharness import OWNER, PRINCIPALS, sharing_harness


@pytest_twisted.ensureDeferred
async def test_session_names_principals_and_owners(make_harness: HarnessFactory) -> None:
    """
    The session offers the principals capability (an empty object); the
    personal account holds the principals and names the user's own
    (``currentUserPrincipalId``); every account names the principal owning
    it and the account holding that principal; the owner capability is
    not a session capability.
    """
    h = await sharing_harness(make_harness)
    await h.directory.delegate("alice", "bob")
    session = session_object(await h.principal("bob"), h.registry, "https://jmap.example")
    bobs, alices = h.accounts["bob"].id, h.accounts["alice"].id
    assert session["capabilities"][PRINCIPALS] == {}
    assert OWNER not in session["capabilities"]
    assert session["primaryAccounts"][PRINCIPALS] == bobs
    own = session["accounts"][bobs]["accountCapabilities"]
    assert own[PRINCIPALS] == {"currentUserPrincipalId": h.users["bob"].id}
    assert own[OWNER] == {"accountIdForPrincipal": bobs, "principalId": h.users["bob"].id}
    delegated = session["accounts"][alices]["accountCapabilities"]
    assert PRINCIPALS not in delegated
    assert delegated[OWNER] == {"accountIdForPrincipal": bobs, "principalId": h.users["alice"].id}
    assert MAIL in delegated


@pytest_twisted.ensureDeferred
async def test_get_lists_every_user_as_an_individual(make_harness: HarnessFactory) -> None:
    """
    Principal/get gives one individual per user: name the username, email
    the username when it is an address, and the accounts of that principal
    the caller may access (as the session shows them), else null.
    """
    h = await sharing_harness(make_harness)
    dave = await h.add_user("dave@example.com")
    await h.directory.delegate("bob", "alice")
    got = await h.ok("alice", "Principal/get", {"ids": None})
    by_name = {p["name"]: p for p in got["list"]}
    assert set(by_name) == {"alice", "bob", "carol", "dave@example.com"}
    alice = by_name["alice"]
    assert alice == {
        "id": h.users["alice"].id,
        "type": "individual",
        "name": "alice",
        "description": None,
        "email": None,
        "timeZone": None,
        "capabilities": {MAIL: {}},
        "accounts": alice["accounts"],
    }
    session = session_object(await h.principal("alice"), h.registry, "https://jmap.example")
    assert alice["accounts"] == {
        h.accounts["alice"].id: session["accounts"][h.accounts["alice"].id]
    }
    assert by_name["bob"]["accounts"] == {
        h.accounts["bob"].id: session["accounts"][h.accounts["bob"].id]
    }
    assert by_name["carol"]["accounts"] is None
    assert by_name["dave@example.com"]["email"] == "dave@example.com"
    some = await h.ok("alice", "Principal/get", {"ids": [dave.id, "Unone"], "properties": ["name"]})
    assert some["list"] == [{"id": dave.id, "name": "dave@example.com"}]
    assert some["notFound"] == ["Unone"]


@pytest_twisted.ensureDeferred
async def test_principals_only_in_the_personal_account(make_harness: HarnessFactory) -> None:
    """
    Principal methods answer in the caller's personal account only
    (accountNotSupportedByMethod in a delegated one), and only to clients
    using the principals capability.
    """
    h = await sharing_harness(make_harness)
    await h.directory.delegate("bob", "alice")
    name, error = await h.call("alice", "Principal/get", {}, account=h.accounts["bob"].id)
    assert (name, error["type"]) == ("error", "accountNotSupportedByMethod")
    name, error = await h.call("alice", "Principal/get", {}, using=(CORE, MAIL))
    assert (name, error["type"]) == ("error", "unknownMethod")
    name, error = await h.call("alice", "Principal/get", {}, account=h.accounts["carol"].id)
    assert (name, error["type"]) == ("error", "accountNotFound")


@pytest_twisted.ensureDeferred
async def test_changes_follow_users_created_and_deleted(make_harness: HarnessFactory) -> None:
    """
    Principal/changes reports users created and deleted since a state,
    merged (created then deleted in the window: nothing), at most
    ``maxChanges`` ids at a time; a state never issued cannot be
    calculated from.
    """
    h = await sharing_harness(make_harness)
    state = (await h.ok("alice", "Principal/get", {"ids": []}))["state"]
    dave = await h.add_user("dave")
    erin = await h.add_user("erin")
    await h.add_user("fleeting")
    await h.directory.delete_user("fleeting")
    await h.directory.delete_user("carol")
    changes = await h.ok("alice", "Principal/changes", {"sinceState": state})
    assert changes["created"] == [dave.id, erin.id]
    assert changes["destroyed"] == [h.users["carol"].id]
    assert changes["updated"] == []
    assert changes["hasMoreChanges"] is False
    current = (await h.ok("alice", "Principal/get", {"ids": []}))["state"]
    assert changes["newState"] == current

    first = await h.ok("alice", "Principal/changes", {"sinceState": state, "maxChanges": 1})
    assert (first["created"], first["hasMoreChanges"]) == ([dave.id], True)
    rest = await h.ok("alice", "Principal/changes", {"sinceState": first["newState"]})
    assert rest["created"] == [erin.id]
    assert rest["destroyed"] == [h.users["carol"].id]
    for bad in ("99999", "nope"):
        name, error = await h.call("alice", "Principal/changes", {"sinceState": bad})
        assert (name, error["type"]) == ("error", "cannotCalculateChanges")


@pytest_twisted.ensureDeferred
async def test_query_filters_and_sorts(make_harness: HarnessFactory) -> None:
    """
    Principal/query filters by name, email, text (any of them), type,
    time zone and the accounts the caller sees, combined with operators,
    and sorts by name either way (ties by id); other filters and sorts are
    refused.
    """
    h = await sharing_harness(make_harness)
    dave = await h.add_user("dave@example.com")
    await h.directory.delegate("bob", "alice")
    ids = {name: user.id for name, user in h.users.items()}

    async def query(arguments: dict[str, object]) -> list[str]:
        return list((await h.ok("alice", "Principal/query", arguments))["ids"])

    by_name = {"sort": [{"property": "name"}]}
    assert await query(by_name) == [ids["alice"], ids["bob"], ids["carol"], dave.id]
    assert await query({"sort": [{"property": "name", "isAscending": False}]}) == [
        dave.id,
        ids["carol"],
        ids["bob"],
        ids["alice"],
    ]
    assert await query({"filter": {"name": "AR"}, **by_name}) == [ids["carol"]]
    assert await query({"filter": {"email": "example"}}) == [dave.id]
    assert await query({"filter": {"text": "example.COM"}}) == [dave.id]
    assert await query({"filter": {"type": "individual"}}) == sorted(ids.values())
    assert await query({"filter": {"type": "group"}}) == []
    assert await query({"filter": {"timeZone": "Europe/Paris"}}) == []
    accounts = [h.accounts["bob"].id, h.accounts["carol"].id]
    assert await query({"filter": {"accountIds": accounts}}) == [ids["bob"]]
    either = {"operator": "OR", "conditions": [{"name": "alice"}, {"email": "dave"}]}
    assert await query({"filter": either, **by_name}) == [ids["alice"], dave.id]
    neither = {"operator": "NOT", "conditions": [either]}
    assert await query({"filter": neither, **by_name}) == [ids["bob"], ids["carol"]]
    window = await h.ok("alice", "Principal/query", {**by_name, "position": 1, "limit": 2})
    assert window["ids"] == [ids["bob"], ids["carol"]]
    assert window["canCalculateChanges"] is True

    for arguments, error in [
        ({"filter": {"role": "admin"}}, "unsupportedFilter"),
        ({"filter": {"name": 3}}, "invalidArguments"),
        ({"filter": {"accountIds": "a1"}}, "invalidArguments"),
        ({"sort": [{"property": "email"}]}, "unsupportedSort"),
        ({"bogus": True}, "invalidArguments"),
    ]:
        name, answer = await h.call("alice", "Principal/query", arguments)
        assert (name, answer["type"]) == ("error", error), arguments


@pytest_twisted.ensureDeferred
async def test_query_changes_places_new_principals(make_harness: HarnessFactory) -> None:
    """
    Principal/queryChanges from a query state reports a user created since
    at their index in the sorted results, and a deleted one removed.
    """
    h = await sharing_harness(make_harness)
    by_name = {"sort": [{"property": "name"}]}
    before = await h.ok("alice", "Principal/query", by_name)
    aaron = await h.add_user("aaron")
    await h.directory.delete_user("carol")
    changes = await h.ok(
        "alice", "Principal/queryChanges", {**by_name, "sinceQueryState": before["queryState"]}
    )
    assert changes["added"] == [{"id": aaron.id, "index": 0}]
    assert changes["removed"] == [h.users["carol"].id]
    after = await h.ok("alice", "Principal/query", by_name)
    assert changes["newQueryState"] == after["queryState"]
    assert after["ids"][0] == aaron.id


@pytest_twisted.ensureDeferred
async def test_set_refuses_every_change(make_harness: HarnessFactory) -> None:
    """
    Principal/set refuses creating, updating and destroying principals
    with ``forbidden``, leaving the state as it is; ``ifInState`` is
    checked against the Principal state.
    """
    h = await sharing_harness(make_harness)
    bob = h.users["bob"].id
    result = await h.ok(
        "alice",
        "Principal/set",
        {"create": {"p": {"name": "mallory"}}, "update": {bob: {"name": "b"}}, "destroy": [bob]},
    )
    assert result["notCreated"]["p"]["type"] == "forbidden"
    assert result["notUpdated"][bob]["type"] == "forbidden"
    assert result["notDestroyed"][bob]["type"] == "forbidden"
    assert result["oldState"] == result["newState"]
    assert (result["created"], result["updated"], result["destroyed"]) == (None, None, None)
    names = {p["name"] for p in (await h.ok("alice", "Principal/get", {}))["list"]}
    assert names == {"alice", "bob", "carol"}
    name, error = await h.call("alice", "Principal/set", {"ifInState": "0", "destroy": [bob]})
    assert (name, error["type"]) == ("error", "stateMismatch")
