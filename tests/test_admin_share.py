"""
``jmap-admin share``, ``unshare`` and ``shares``: mailbox shares made on
the database the server uses, by mailbox id or name path, with letters or
named sets; each run in a subprocess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IMailWriter
from jmap_twisted.records import MailboxShare
from jmap_twisted.sharing import NOTIFICATION
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.directory import SQLiteDirectory
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from tests.test_admin import admin, assert_failed


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


class Opened:
    """
    The directory and mail store of a data directory, opened in the test.
    """

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db
        self.directory = SQLiteDirectory(db, Clock())
        self.mail = SQLiteMailStore(db, Clock())

    async def account(self, username: str) -> str:
        user = await self.directory.get_user(username)
        assert user is not None
        return (await self.directory.accounts_for_user(user.id))[0].id

    async def notifications(self, username: str) -> dict[str, Any]:
        account = await self.account(username)
        return await self.mail.read(account, lambda r: r.documents(NOTIFICATION))


async def _open(data: Path) -> Opened:
    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(data)), reactor)
    await db.start()
    return Opened(db)


def _users(data: Path, *names: str) -> None:
    for name in names:
        assert admin(data, "user", "add", name, "--no-password").returncode == 0


@pytest_twisted.ensureDeferred
async def test_share_change_list_and_unshare(data: Path) -> None:
    """
    ``share`` takes a name path and a named set or letters, says what the
    sharee had before, and notifies them; ``shares`` lists path, id,
    sharee and letters; ``unshare`` ends a share and refuses one that is
    not there.
    """
    _users(data, "alice", "bob", "carol")
    opened = await _open(data)
    try:
        alice = await opened.account("alice")
        await opened.mail.setup_account(alice)

        def add_child(writer: IMailWriter) -> str:
            inbox = next(m.id for m in writer.mailboxes() if m.role == "inbox")
            return writer.create_mailbox("Team", inbox, None, 0, True).id

        team = await opened.mail.write(alice, add_child)
    finally:
        await opened.db.stop()

    shared = admin(data, "share", "alice", "Inbox/Team", "bob", "read")
    assert shared.returncode == 0, shared
    assert shared.stdout == "shared Inbox/Team of alice with bob: lrs (before: none)\n"
    changed = admin(data, "share", "alice", team, "bob", "lrsw")
    assert changed.stdout == "shared Inbox/Team of alice with bob: lrsw (before: lrs)\n"
    assert admin(data, "share", "alice", "Archive", "carol", "all").returncode == 0

    listed = admin(data, "shares", "alice")
    archive_line, team_line = listed.stdout.splitlines()
    assert team_line == f"Inbox/Team\t{team}\tbob\tlrsw"
    assert archive_line.split("\t")[2:] == ["carol", "lrswipkxtea"]

    opened = await _open(data)
    try:
        bob = await opened.directory.get_user("bob")
        assert bob is not None
        bobs = [s for s in await opened.directory.shares_of_account(alice) if s.user_id == bob.id]
        assert bobs == [MailboxShare(alice, team, bob.id, "lrsw", True)]
        notes = sorted((await opened.notifications("bob")).values(), key=lambda n: n["created"])
        assert [n["objectId"] for n in notes] == [team, team]
        assert notes[0]["changedBy"] == {
            "name": "Administrator",
            "email": None,
            "principalId": None,
        }
        assert {n["newRights"]["maySetKeywords"] for n in notes} == {False, True}
    finally:
        await opened.db.stop()

    unshared = admin(data, "unshare", "alice", "Inbox/Team", "bob")
    assert unshared.stdout == "stopped sharing Inbox/Team of alice with bob (had: lrsw)\n"
    assert_failed(
        admin(data, "unshare", "alice", "Inbox/Team", "bob"),
        "Inbox/Team of alice is not shared with bob",
    )
    assert [line.split("\t")[2] for line in admin(data, "shares", "alice").stdout.splitlines()] == [
        "carol"
    ]


def test_share_refusals(data: Path) -> None:
    """
    An unknown mailbox, user or right, no rights at all, or sharing with
    the owner fail with one line and change nothing.
    """
    _users(data, "alice", "bob")
    for args, message in [
        (("alice", "Nowhere", "bob", "read"), "no such mailbox in the account of alice: Nowhere"),
        (("alice", "Inbox", "nobody", "read"), "no such user: nobody"),
        (("nobody", "Inbox", "bob", "read"), "no such user: nobody"),
        (("alice", "Inbox", "bob", "lrz"), "unknown rights 'z'"),
        (("alice", "Inbox", "bob", ""), "no rights given"),
        (("alice", "Inbox", "alice", "read"), "cannot be shared with its account's owner"),
    ]:
        assert_failed(admin(data, "share", *args), message)
    assert admin(data, "shares", "alice").stdout == ""
