"""
The rights matrix: what a sharee may do in an account with each RFC 4314
right on a mailbox (RFC 8621 §2, RFC 9670), method by method.

Alice owns the account.  She shares ``Anchor`` (top level) with bob with
``lrk`` (so bob always sees the account, may read there and may create
inside it), and ``Anchor/Team`` (the mailbox under test) with the letters
of the column: none, each letter alone, and ``lr`` with the letters a
change needs.  Alice's emails: ``inside`` in Team only, ``anchor`` in
Anchor only, ``both`` in Anchor and Team.  Each cell runs on a fresh
account (in memory; a subset on SQLite too) and its outcome is one of:

- ``+`` allowed, and done (checked as alice sees it);
- ``F`` refused with ``forbidden``;
- ``N`` not found: the object is unknown to bob (absent from the results,
  ``notFound``, or ``invalidProperties`` naming it, as for an id that
  does not exist);
- ``H`` accepted, but what bob cannot see was kept (a membership of a
  mailbox he cannot list);
- ``-`` not offered: the account has no such capability for bob
  (``accountNotSupportedByMethod``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from attrs import frozen
from zope.interface.verify import verifyObject

from jmap_twisted import rights
from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.methods.access import ViewReader, ViewWriter, may_upload
from jmap_twisted.records import Account, EmailRecord
from jmap_twisted.testing import message
from tests.methods.harness import CORE, MAIL, SUBMISSION, VACATION, MailHarness
from tests.methods.sharingharness import PRINCIPALS, SharingHarness
from tests.support import ImmediateReactor

QUOTA = "urn:ietf:params:jmap:quota"
USING = (CORE, MAIL, PRINCIPALS, SUBMISSION, VACATION, QUOTA)

ALLOWED, FORBIDDEN, NOT_FOUND, HIDDEN, NOT_OFFERED = "+", "F", "N", "H", "-"

#: The letters bob holds on Team, one column each.
COLUMNS = (
    "",
    *rights.LETTERS,
    "lrs",
    "lrw",
    "lri",
    "lrk",
    "lrx",
    "lrxte",
    "lrte",
    "lra",
)

#: The expected outcome of each method (row) for each column, in the
#: order of :data:`COLUMNS`:  ""  l r s w i p k x t e a lrs lrw lri lrk lrx lrxte lrte lra
EXPECTED = {
    # Mailboxes: seen with l; changed with k (inside), x (itself), a (sharing).
    "Mailbox/get": "N+NNNNNNNNNN++++++++",
    "Mailbox/query": "N+NNNNNNNNNN++++++++",
    "Mailbox/changes": "N+NNNNNNNNNN++++++++",
    "Mailbox/queryChanges": "N+NNNNNNNNNN++++++++",
    "Mailbox/set create inside": "NFNNNNNNNNNNFFF+FFFF",
    "Mailbox/set rename": "NFNNNNNNNNNNFFFF++FF",
    "Mailbox/set destroy empty": "NFNNNNNNNNNNFFFF++FF",
    "Mailbox/set destroy with emails": "NFNNNNNNNNNNFFFFF+FF",
    "Mailbox/set isSubscribed": "N+NNNNNNNNNN++++++++",
    "Mailbox/set shareWith": "NFNNNNNNNNNNFFFFFFF+",
    # Emails: read with l and r on one of their mailboxes.
    "Email/get": "NNNNNNNNNNNN++++++++",
    "Email/query": "NNNNNNNNNNNN++++++++",
    "Email/changes": "NNNNNNNNNNNN++++++++",
    "Email/queryChanges": "NNNNNNNNNNNN++++++++",
    "Thread/get": "NNNNNNNNNNNN++++++++",
    "SearchSnippet/get": "NNNNNNNNNNNN++++++++",
    "download": "NNNNNNNNNNNN++++++++",
    "Email/parse": "NNNNNNNNNNNN++++++++",
    "Email/copy source": "NNNNNNNNNNNN++++++++",
    "Blob/copy source": "NNNNNNNNNNNN++++++++",
    # Emails changed: i to add, t e to remove, s for $seen, w for keywords.
    "Email/set create": "NFNNNNNNNNNNFF+FFFFF",
    "Email/set keywords": "NNNNNNNNNNNNF+FFFFFF",
    "Email/set $seen": "NNNNNNNNNNNN+FFFFFFF",
    "Email/set mailboxIds add": "NFNNNNNNNNNNFF+FFFFF",
    "Email/set mailboxIds remove": "HFHHHHHHHHHHFFFFF++F",
    "Email/set destroy": "NNNNNNNNNNNNFFFFF++F",
    "Email/import": "NFNNNNNNNNNNFF+FFFFF",
    "Email/copy target": "NFNNNNNNNNNNFF+FFFFF",
    # Blobs stored for the account: i on a mailbox bob sees.
    "upload": "FFFFFFFFFFFFFF+FFFFF",
    "Blob/copy target": "FFFFFFFFFFFFFF+FFFFF",
    # The owner's own: never in a view.
    "Identity/get": "--------------------",
    "EmailSubmission/get": "--------------------",
    "VacationResponse/get": "--------------------",
    "Quota/get": "--------------------",
}


@frozen
class Scene:
    """
    Alice's account shared with bob as the module says.
    """

    h: SharingHarness
    account: str
    anchor: str
    team: str
    inside: EmailRecord
    anchored: EmailRecord
    both: EmailRecord

    async def bob(
        self, name: str, arguments: dict[str, Any], account: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """
        A call by bob, in alice's account unless another is named.
        """
        return await self.h.call(
            "bob", name, arguments, account=account or self.account, using=USING
        )

    async def alice(self, fn: Callable[[IMailWriter], Any]) -> Any:
        """
        A change by alice, straight to the store.
        """
        return await self.h.store.write(self.account, fn)

    async def emails(self) -> dict[str, EmailRecord]:
        """
        Every email of alice's account, by id.
        """

        def read(reader: Any) -> dict[str, EmailRecord]:
            ids, _ = reader.query_emails(None, [], False)
            return dict(reader.emails(ids))

        return await self.h.store.read(self.account, read)

    async def mailboxes(self) -> dict[str, Any]:
        """
        Every mailbox of alice's account, by id.
        """
        found = await self.h.store.read(self.account, lambda r: r.mailboxes())
        return {m.id: m for m in found}

    async def view(self) -> Account:
        """
        Alice's account as bob's principal lists it now.
        """
        principal = await self.h.principal("bob")
        return next(a for a in principal.accounts if a.id == self.account)


async def scene(letters: str, base: MailHarness | None = None) -> Scene:
    """
    Alice's account, shared with bob: Anchor with ``lrk``, Team with
    ``letters`` (none if empty).
    """
    h = SharingHarness(base or MailHarness())
    alice = await h.add_user("alice")
    bob = await h.add_user("bob")
    account = h.accounts["alice"].id
    await h.store.setup_account(account)
    await h.store.setup_account(h.accounts["bob"].id)
    at = h.clock.seconds()

    def fill(w: IMailWriter) -> tuple[str, str, EmailRecord, EmailRecord, EmailRecord]:
        anchor = w.create_mailbox("Anchor", None, None, 0, True).id
        team = w.create_mailbox("Team", anchor, None, 0, True).id
        inside = w.add_email(message(subject="inside"), [team], [], at)
        anchored = w.add_email(message(subject="anchor"), [anchor], [], at)
        both = w.add_email(message(subject="both"), [anchor, team], [], at)
        return anchor, team, inside, anchored, both

    anchor, team, inside, anchored, both = await h.store.write(account, fill)
    await h.directory.set_rights(account, anchor, bob.id, "lrk", alice.id)
    if letters:
        await h.directory.set_rights(account, team, bob.id, letters, alice.id)
    return Scene(h, account, anchor, team, inside, anchored, both)


def set_outcome(response: tuple[str, dict[str, Any]], key: str, done: str) -> str:
    """
    The outcome of one object of a ``/set`` (or ``/import``, ``/copy``):
    ``+`` when under ``done``, else from its SetError; an unexpected
    error reads as its type and description, so that it fails the cell.
    """
    name, result = response
    if name == "error":
        return NOT_OFFERED if result["type"] == "accountNotSupportedByMethod" else str(result)
    if key in (result.get(done) or {}):
        return ALLOWED
    failed = "not" + done[0].upper() + done[1:]
    error = (result.get(failed) or {}).get(key)
    if error is None:
        return f"neither {done} nor {failed}: {result}"
    if error["type"] == "forbidden":
        return FORBIDDEN
    if error["type"] == "notFound":
        return NOT_FOUND
    if error["type"] == "invalidProperties" and set(error.get("properties", ())) <= {
        "mailboxIds",
        "parentId",
    }:
        return NOT_FOUND
    return str(error)


def confirmed(outcome: str, done: bool) -> str:
    """
    An allowed outcome whose effect alice does not see is a failure.
    """
    return "allowed, but not done" if outcome == ALLOWED and not done else outcome


def listed(response: tuple[str, dict[str, Any]], key: str, member: str) -> str:
    """
    ``+`` when ``member`` is among ``response[key]``; ``-`` on
    ``accountNotSupportedByMethod``, ``N`` otherwise.
    """
    name, result = response
    if name == "error":
        return NOT_OFFERED if result["type"] == "accountNotSupportedByMethod" else str(result)
    return ALLOWED if member in str(result[key]) else NOT_FOUND


async def mailbox_get(s: Scene) -> str:
    return listed(await s.bob("Mailbox/get", {"ids": [s.team]}), "list", s.team)


async def mailbox_query(s: Scene) -> str:
    return listed(await s.bob("Mailbox/query", {}), "ids", s.team)


async def mailbox_changes(s: Scene) -> str:
    _, before = await s.bob("Mailbox/get", {"ids": []})
    await s.alice(lambda w: w.update_mailbox(s.team, name="Renamed"))
    return listed(
        await s.bob("Mailbox/changes", {"sinceState": before["state"]}), "updated", s.team
    )


async def mailbox_query_changes(s: Scene) -> str:
    _, before = await s.bob("Mailbox/query", {})
    await s.alice(lambda w: w.update_mailbox(s.team, name="Renamed"))
    since = {"sinceQueryState": before["queryState"]}
    return listed(await s.bob("Mailbox/queryChanges", since), "removed", s.team)


async def mailbox_create(s: Scene) -> str:
    response = await s.bob("Mailbox/set", {"create": {"c": {"name": "Sub", "parentId": s.team}}})
    made = any(m.name == "Sub" for m in (await s.mailboxes()).values())
    return confirmed(set_outcome(response, "c", "created"), made)


async def mailbox_rename(s: Scene) -> str:
    response = await s.bob("Mailbox/set", {"update": {s.team: {"name": "Renamed"}}})
    renamed = (await s.mailboxes())[s.team].name == "Renamed"
    return confirmed(set_outcome(response, s.team, "updated"), renamed)


async def mailbox_destroy_empty(s: Scene) -> str:
    def empty(w: IMailWriter) -> None:
        w.destroy_email(s.inside.id)
        w.update_email(s.both.id, mailbox_ids=[s.anchor])

    await s.alice(empty)
    response = await s.bob("Mailbox/set", {"destroy": [s.team]})
    gone = s.team not in await s.mailboxes()
    return confirmed(set_outcome(response, s.team, "destroyed"), gone)


async def mailbox_destroy_with_emails(s: Scene) -> str:
    arguments = {"destroy": [s.team], "onDestroyRemoveEmails": True}
    response = await s.bob("Mailbox/set", arguments)
    emails = await s.emails()
    gone = s.team not in await s.mailboxes() and s.inside.id not in emails
    return confirmed(set_outcome(response, s.team, "destroyed"), gone)


async def mailbox_subscribe(s: Scene) -> str:
    response = await s.bob("Mailbox/set", {"update": {s.team: {"isSubscribed": False}}})
    _, got = await s.bob("Mailbox/get", {"ids": [s.team], "properties": ["isSubscribed"]})
    unsubscribed = got["list"] == [{"id": s.team, "isSubscribed": False}]
    owners_kept = (await s.mailboxes())[s.team].is_subscribed
    return confirmed(set_outcome(response, s.team, "updated"), unsubscribed and owners_kept)


async def mailbox_share(s: Scene) -> str:
    carol = await s.h.add_user("carol")
    patch = {f"shareWith/{carol.id}": {"mayReadItems": True}}
    response = await s.bob("Mailbox/set", {"update": {s.team: patch}})
    shared = await s.h.directory.shares_of_mailboxes(s.account, [s.team])
    done = any(share.user_id == carol.id for share, _ in shared)
    return confirmed(set_outcome(response, s.team, "updated"), done)


async def email_get(s: Scene) -> str:
    return listed(await s.bob("Email/get", {"ids": [s.inside.id]}), "list", s.inside.id)


async def email_query(s: Scene) -> str:
    return listed(await s.bob("Email/query", {}), "ids", s.inside.id)


async def email_changes(s: Scene) -> str:
    _, before = await s.bob("Email/get", {"ids": []})
    await s.alice(lambda w: w.update_email(s.inside.id, keywords=["$flagged"]))
    since = {"sinceState": before["state"]}
    return listed(await s.bob("Email/changes", since), "updated", s.inside.id)


async def email_query_changes(s: Scene) -> str:
    _, before = await s.bob("Email/query", {})
    await s.alice(lambda w: w.update_email(s.inside.id, keywords=["$flagged"]))
    since = {"sinceQueryState": before["queryState"]}
    return listed(await s.bob("Email/queryChanges", since), "removed", s.inside.id)


async def thread_get(s: Scene) -> str:
    response = await s.bob("Thread/get", {"ids": [s.inside.thread_id]})
    return listed(response, "list", s.inside.id)


async def search_snippet(s: Scene) -> str:
    arguments = {"emailIds": [s.inside.id], "filter": {"text": "inside"}}
    return listed(await s.bob("SearchSnippet/get", arguments), "list", s.inside.id)


async def download(s: Scene) -> str:
    principal = await s.h.principal("bob")
    found = await s.h.base.resolver.download(principal, s.account, s.inside.blob_id)
    return ALLOWED if found == (message(subject="inside"), "message/rfc822") else NOT_FOUND


async def email_parse(s: Scene) -> str:
    response = await s.bob("Email/parse", {"blobIds": [s.inside.blob_id]})
    return listed(response, "parsed", s.inside.blob_id)


async def copy_source(s: Scene) -> str:
    bobs = s.h.accounts["bob"].id
    inbox = await s.h.mailbox("bob", "inbox")
    arguments = {
        "fromAccountId": s.account,
        "create": {"c": {"id": s.inside.id, "mailboxIds": {inbox: True}}},
    }
    return set_outcome(await s.bob("Email/copy", arguments, account=bobs), "c", "created")


async def blob_copy_source(s: Scene) -> str:
    bobs = s.h.accounts["bob"].id
    arguments = {"fromAccountId": s.account, "blobIds": [s.inside.blob_id]}
    _, result = await s.bob("Blob/copy", arguments, account=bobs)
    return ALLOWED if s.inside.blob_id in (result["copied"] or {}) else NOT_FOUND


def new_in_team(s: Scene, before: dict[str, EmailRecord], after: dict[str, EmailRecord]) -> bool:
    return any(s.team in e.mailbox_ids for i, e in after.items() if i not in before)


async def email_create(s: Scene) -> str:
    before = await s.emails()
    create = {"c": {"mailboxIds": {s.team: True}, "subject": "new"}}
    response = await s.bob("Email/set", {"create": create})
    return confirmed(
        set_outcome(response, "c", "created"), new_in_team(s, before, await s.emails())
    )


async def email_keywords(s: Scene) -> str:
    update = {s.inside.id: {"keywords/$flagged": True}}
    response = await s.bob("Email/set", {"update": update})
    flagged = "$flagged" in (await s.emails())[s.inside.id].keywords
    return confirmed(set_outcome(response, s.inside.id, "updated"), flagged)


async def email_seen(s: Scene) -> str:
    update = {s.inside.id: {"keywords/$seen": True}}
    response = await s.bob("Email/set", {"update": update})
    seen = "$seen" in (await s.emails())[s.inside.id].keywords
    return confirmed(set_outcome(response, s.inside.id, "updated"), seen)


async def mailbox_ids_add(s: Scene) -> str:
    update = {s.anchored.id: {f"mailboxIds/{s.team}": True}}
    response = await s.bob("Email/set", {"update": update})
    added = s.team in (await s.emails())[s.anchored.id].mailbox_ids
    return confirmed(set_outcome(response, s.anchored.id, "updated"), added)


async def mailbox_ids_remove(s: Scene) -> str:
    update = {s.both.id: {"mailboxIds": {s.anchor: True}}}
    response = await s.bob("Email/set", {"update": update})
    outcome = set_outcome(response, s.both.id, "updated")
    kept = s.team in (await s.emails())[s.both.id].mailbox_ids
    return HIDDEN if outcome == ALLOWED and kept else outcome


async def email_destroy(s: Scene) -> str:
    response = await s.bob("Email/set", {"destroy": [s.inside.id]})
    gone = s.inside.id not in await s.emails()
    return confirmed(set_outcome(response, s.inside.id, "destroyed"), gone)


async def email_import(s: Scene) -> str:
    raw = message(subject="imported")
    blob = await s.h.base.blobs.put(s.h.accounts["bob"].id, raw, "message/rfc822")
    before = await s.emails()
    emails = {"c": {"blobId": blob.blob_id, "mailboxIds": {s.team: True}}}
    response = await s.bob("Email/import", {"emails": emails})
    return confirmed(
        set_outcome(response, "c", "created"), new_in_team(s, before, await s.emails())
    )


async def copy_target(s: Scene) -> str:
    bobs = s.h.accounts["bob"].id
    inbox = await s.h.mailbox("bob", "inbox")
    own = await s.h.store.write(
        bobs, lambda w: w.add_email(message(subject="own"), [inbox], [], 0.0)
    )
    before = await s.emails()
    arguments = {
        "fromAccountId": bobs,
        "create": {"c": {"id": own.id, "mailboxIds": {s.team: True}}},
    }
    response = await s.bob("Email/copy", arguments)
    return confirmed(
        set_outcome(response, "c", "created"), new_in_team(s, before, await s.emails())
    )


async def upload(s: Scene) -> str:
    return ALLOWED if may_upload(await s.view()) else FORBIDDEN


async def blob_copy_target(s: Scene) -> str:
    bobs = s.h.accounts["bob"].id
    blob = await s.h.base.blobs.put(bobs, b"attachment", "text/plain")
    arguments = {"fromAccountId": bobs, "blobIds": [blob.blob_id]}
    _, result = await s.bob("Blob/copy", arguments)
    if blob.blob_id in (result["copied"] or {}):
        return ALLOWED
    return FORBIDDEN if result["notCopied"][blob.blob_id]["type"] == "forbidden" else str(result)


def offered(name: str) -> Callable[[Scene], Awaitable[str]]:
    async def call(s: Scene) -> str:
        response_name, result = await s.bob(name, {"ids": None})
        if response_name == "error" and result["type"] == "accountNotSupportedByMethod":
            return NOT_OFFERED
        return f"{response_name}: {result}"

    return call


ROWS: dict[str, Callable[[Scene], Awaitable[str]]] = {
    "Mailbox/get": mailbox_get,
    "Mailbox/query": mailbox_query,
    "Mailbox/changes": mailbox_changes,
    "Mailbox/queryChanges": mailbox_query_changes,
    "Mailbox/set create inside": mailbox_create,
    "Mailbox/set rename": mailbox_rename,
    "Mailbox/set destroy empty": mailbox_destroy_empty,
    "Mailbox/set destroy with emails": mailbox_destroy_with_emails,
    "Mailbox/set isSubscribed": mailbox_subscribe,
    "Mailbox/set shareWith": mailbox_share,
    "Email/get": email_get,
    "Email/query": email_query,
    "Email/changes": email_changes,
    "Email/queryChanges": email_query_changes,
    "Thread/get": thread_get,
    "SearchSnippet/get": search_snippet,
    "download": download,
    "Email/parse": email_parse,
    "Email/copy source": copy_source,
    "Blob/copy source": blob_copy_source,
    "Email/set create": email_create,
    "Email/set keywords": email_keywords,
    "Email/set $seen": email_seen,
    "Email/set mailboxIds add": mailbox_ids_add,
    "Email/set mailboxIds remove": mailbox_ids_remove,
    "Email/set destroy": email_destroy,
    "Email/import": email_import,
    "Email/copy target": copy_target,
    "upload": upload,
    "Blob/copy target": blob_copy_target,
    "Identity/get": offered("Identity/get"),
    "EmailSubmission/get": offered("EmailSubmission/get"),
    "VacationResponse/get": offered("VacationResponse/get"),
    "Quota/get": offered("Quota/get"),
}

CELLS = [
    pytest.param(row, letters, id=f"{row}[{letters or 'none'}]")
    for row in ROWS
    for letters in COLUMNS
]


def test_the_table_covers_every_row_and_column() -> None:
    """
    The expected table has a row per method and a cell per column.
    """
    assert set(EXPECTED) == set(ROWS)
    assert {len(cells) for cells in EXPECTED.values()} == {len(COLUMNS)}


@pytest.mark.parametrize(("row", "letters"), CELLS)
@pytest_twisted.ensureDeferred
async def test_rights_matrix(row: str, letters: str) -> None:
    """
    With ``letters`` on Team, bob's call has the outcome the table says.
    """
    expected = EXPECTED[row][COLUMNS.index(letters)]
    assert await ROWS[row](await scene(letters)) == expected


@pytest_twisted.async_yield_fixture
async def sqlite_harness(tmp_path: Path) -> AsyncIterator[MailHarness]:
    from twisted.internet import reactor

    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.mail import SQLiteMailStore

    clock = ImmediateReactor()
    clock.advance(1_800_000_000)
    database = SQLiteDatabase(str(tmp_path / "mail.sqlite3"), reactor)
    await database.start()
    yield MailHarness(SQLiteMailStore(database, clock), clock)
    await database.stop()


SQLITE_ROWS = (
    "Mailbox/get",
    "Mailbox/changes",
    "Mailbox/set destroy with emails",
    "Email/query",
    "Email/changes",
    "Email/queryChanges",
    "Thread/get",
    "download",
    "Email/set $seen",
    "Email/set mailboxIds remove",
    "Email/set destroy",
)
SQLITE_COLUMNS = ("", "l", "lrs", "lrxte")


@pytest.mark.parametrize(
    ("row", "letters"),
    [
        pytest.param(row, letters, id=f"{row}[{letters or 'none'}]")
        for row in SQLITE_ROWS
        for letters in SQLITE_COLUMNS
    ],
)
@pytest_twisted.ensureDeferred
async def test_rights_matrix_on_sqlite(row: str, letters: str, sqlite_harness: MailHarness) -> None:
    """
    The SQLite store gives the outcomes of the table too (a subset: the
    cells whose answers come from its queries and change log).
    """
    expected = EXPECTED[row][COLUMNS.index(letters)]
    assert await ROWS[row](await scene(letters, sqlite_harness)) == expected


def granted(*names: str) -> dict[str, bool]:
    """
    A ``myRights`` object with the named rights true, the others false.
    """
    return {name: name in names for name in rights.RIGHTS_PROPERTIES}


#: Bob's myRights on Team (inside Anchor, where he holds ``k``), by letters.
MY_RIGHTS = {
    "l": granted(),
    "lr": granted("mayReadItems"),
    "lrs": granted("mayReadItems", "maySetSeen"),
    "lrw": granted("mayReadItems", "maySetKeywords"),
    "lri": granted("mayReadItems", "mayAddItems"),
    "lrk": granted("mayReadItems", "mayCreateChild"),
    "lrx": granted("mayReadItems", "mayRename", "mayDelete"),
    "lrte": granted("mayReadItems", "mayRemoveItems"),
    "lrt": granted("mayReadItems"),
    "lrp": granted("mayReadItems"),
    "lra": granted("mayReadItems", "mayAdmin"),
    rights.LETTERS: {**dict.fromkeys(rights.RIGHTS_PROPERTIES, True), "maySubmit": False},
}


@pytest.mark.parametrize("letters", list(MY_RIGHTS))
@pytest_twisted.ensureDeferred
async def test_my_rights_follow_the_letters(letters: str) -> None:
    """
    Mailbox/get shows a sharee's rights on a mailbox from their letters
    (RFC 8621 §2): each right needs all its letters, and a sharee never
    submits from another's account.
    """
    s = await scene(letters)
    _, got = await s.bob("Mailbox/get", {"ids": [s.team], "properties": ["myRights"]})
    assert got["list"] == [{"id": s.team, "myRights": MY_RIGHTS[letters]}]


@pytest_twisted.ensureDeferred
async def test_my_rights_at_the_top_level_in_the_inbox_and_for_the_owner() -> None:
    """
    A sharee renames no top-level mailbox (they could not create one) and
    neither renames nor deletes the inbox, whatever their letters; the
    owner holds every right (the non-standard mayAdmin too) but renaming
    and deleting the inbox.
    """
    s = await scene("lr")
    inbox = await s.h.mailbox("alice", "inbox")
    bob = s.h.users["bob"].id
    await s.h.directory.set_rights(s.account, s.anchor, bob, "lrkx", None)
    await s.h.directory.set_rights(s.account, inbox, bob, rights.LETTERS, None)
    ids = {"ids": [s.anchor, inbox], "properties": ["myRights"]}
    _, got = await s.bob("Mailbox/get", ids)
    shown = {m["id"]: m["myRights"] for m in got["list"]}
    assert shown[s.anchor] == granted("mayReadItems", "mayCreateChild", "mayDelete")
    everything_but = {**dict.fromkeys(rights.RIGHTS_PROPERTIES, True), "maySubmit": False}
    assert shown[inbox] == {**everything_but, "mayRename": False, "mayDelete": False}

    owners = await s.h.ok("alice", "Mailbox/get", ids)
    mine = {m["id"]: m["myRights"] for m in owners["list"]}
    assert mine[s.anchor] == dict.fromkeys(rights.RIGHTS_PROPERTIES, True)
    assert mine[inbox] == {
        **dict.fromkeys(rights.RIGHTS_PROPERTIES, True),
        "mayRename": False,
        "mayDelete": False,
    }


@pytest_twisted.ensureDeferred
async def test_what_the_sharee_cannot_see_stays_hidden_and_binds_them() -> None:
    """
    An email also in a mailbox the sharee cannot list shows only the
    mailboxes they list; destroying it, or changing its $seen, needs the
    right on that hidden mailbox too (RFC 8621 §2), so it is forbidden;
    a mailbox whose parent they cannot list reads as top level; the
    counts of a mailbox they list but may not read are zero.
    """
    s = await scene("lrswte")

    def hide(w: IMailWriter) -> str:
        private = w.create_mailbox("Private", None, None, 0, True).id
        w.update_email(s.inside.id, mailbox_ids=[s.team, private])
        w.create_mailbox("Child", private, None, 0, True)
        return private

    private = await s.alice(hide)
    child = next(m.id for m in (await s.mailboxes()).values() if m.name == "Child")
    bob = s.h.users["bob"].id
    await s.h.directory.set_rights(s.account, child, bob, "l", None)
    await s.h.directory.set_rights(s.account, s.anchor, bob, "lrik", None)

    _, got = await s.bob("Email/get", {"ids": [s.inside.id], "properties": ["mailboxIds"]})
    assert got["list"] == [{"id": s.inside.id, "mailboxIds": {s.team: True}}]
    _, result = await s.bob("Email/set", {"destroy": [s.inside.id]})
    assert result["notDestroyed"][s.inside.id]["type"] == "forbidden"
    assert "mayRemoveItems" in result["notDestroyed"][s.inside.id]["description"]
    _, result = await s.bob("Email/set", {"update": {s.inside.id: {"keywords/$seen": True}}})
    assert result["notUpdated"][s.inside.id]["type"] == "forbidden"

    _, moved = await s.bob("Email/set", {"update": {s.inside.id: {"mailboxIds": {s.anchor: True}}}})
    assert moved["updated"] == {s.inside.id: None}
    assert (await s.emails())[s.inside.id].mailbox_ids == {s.anchor, private}

    _, got = await s.bob("Mailbox/get", {"ids": [child], "properties": ["parentId", "totalEmails"]})
    assert got["list"] == [{"id": child, "parentId": None, "totalEmails": 0}]
    await s.alice(lambda w: w.update_email(s.anchored.id, mailbox_ids=[s.anchor, child]))
    _, got = await s.bob("Mailbox/get", {"ids": [child], "properties": ["totalEmails"]})
    assert got["list"] == [{"id": child, "totalEmails": 0}]


@pytest_twisted.ensureDeferred
async def test_destroying_a_mailbox_sees_hidden_children_and_emails() -> None:
    """
    A sharee may not destroy a mailbox that has a child they cannot list
    (mailboxHasChild), nor one holding emails they cannot read without
    onDestroyRemoveEmails (mailboxHasEmail); with it, every email goes,
    those they could not read too.
    """
    s = await scene("lxte")
    hidden = await s.alice(lambda w: w.create_mailbox("Hidden", s.team, None, 0, True).id)
    _, result = await s.bob("Mailbox/set", {"destroy": [s.team]})
    assert result["notDestroyed"][s.team]["type"] == "mailboxHasChild"

    await s.alice(lambda w: w.destroy_mailbox(hidden))
    _, result = await s.bob("Mailbox/set", {"destroy": [s.team]})
    assert result["notDestroyed"][s.team]["type"] == "mailboxHasEmail"
    _, result = await s.bob("Mailbox/set", {"destroy": [s.team], "onDestroyRemoveEmails": True})
    assert result["destroyed"] == [s.team]
    emails = await s.emails()
    assert s.inside.id not in emails
    assert emails[s.both.id].mailbox_ids == {s.anchor}


@pytest_twisted.ensureDeferred
async def test_a_mailbox_a_sharee_creates_is_shared_as_its_parent() -> None:
    """
    A mailbox a sharee creates inside a shared one gets the parent's
    shares (as IMAP servers give it the parent's ACL), so the sharee sees
    it from their next request with the parent's rights, subscribed or
    not as they asked; the owner is not subscribed to it.
    """
    s = await scene("lrik")
    inherited = granted("mayReadItems", "mayAddItems", "mayCreateChild")
    create = {"c": {"name": "Sub", "parentId": s.team, "isSubscribed": False}}
    _, result = await s.bob("Mailbox/set", {"create": create})
    sub = result["created"]["c"]["id"]
    assert result["created"]["c"]["myRights"] == inherited
    shares = await s.h.directory.shares_of_mailboxes(s.account, [sub])
    assert [(share.user_id, share.rights) for share, _ in shares] == [(s.h.users["bob"].id, "lrik")]
    _, got = await s.bob("Mailbox/get", {"ids": [sub], "properties": ["myRights", "isSubscribed"]})
    assert got["list"] == [{"id": sub, "myRights": inherited, "isSubscribed": False}]
    assert result["newState"] == got["state"]
    assert (await s.mailboxes())[sub].is_subscribed is False


@pytest_twisted.ensureDeferred
async def test_changes_outside_the_view_leave_its_states() -> None:
    """
    A change to what the sharee cannot see moves none of their states;
    one to what they see does, and /changes reports it.
    """
    s = await scene("lr")
    inbox = await s.h.mailbox("alice", "inbox")
    _, mailboxes = await s.bob("Mailbox/get", {"ids": []})
    _, emails = await s.bob("Email/get", {"ids": []})
    await s.alice(lambda w: w.add_email(message(subject="private"), [inbox], [], 0.0))
    await s.alice(lambda w: w.update_mailbox(inbox, name="Mine"))
    assert (await s.bob("Mailbox/get", {"ids": []}))[1]["state"] == mailboxes["state"]
    assert (await s.bob("Email/get", {"ids": []}))[1]["state"] == emails["state"]

    await s.alice(lambda w: w.add_email(message(subject="shared"), [s.team], [], 0.0))
    _, changes = await s.bob("Email/changes", {"sinceState": emails["state"]})
    assert len(changes["created"]) == 1
    assert changes["newState"] != emails["state"]


@pytest_twisted.ensureDeferred
async def test_the_owners_own_objects_are_not_in_a_view() -> None:
    """
    A sharee's view has mail only: no identities, submissions, vacation
    response or quota (accountNotSupportedByMethod), even with every
    right; Email/query cannot name the store's inAnyMailbox condition.
    """
    s = await scene(rights.LETTERS)
    for name in ("Identity/set", "EmailSubmission/set", "VacationResponse/set"):
        response_name, error = await s.bob(name, {"update": {}})
        assert (response_name, error["type"]) == ("error", "accountNotSupportedByMethod"), name
    response_name, error = await s.bob("Email/query", {"filter": {"inAnyMailbox": [s.team]}})
    assert (response_name, error["type"]) == ("error", "unsupportedFilter")


@pytest_twisted.ensureDeferred
async def test_views_provide_the_store_interfaces() -> None:
    """
    A sharee's reader and writer provide the store's interfaces, so every
    method runs over them unchanged.
    """
    s = await scene("lr")
    shared = (await s.view()).shared
    assert shared is not None
    assert await s.h.store.read(
        s.account, lambda r: verifyObject(IMailReader, ViewReader(r, shared))
    )
    assert await s.h.store.write(
        s.account, lambda w: verifyObject(IMailWriter, ViewWriter(w, shared))
    )
