"""
``jmap-admin recount``: mailbox counters that disagree with the emails
are found, named and repaired on the database the server uses; each run
in a subprocess.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import pytest_twisted

from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.records import MailboxCounts
from jmap_twisted.store import mailquery
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from tests.mailfactory import message
from tests.test_admin import admin, assert_failed


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _fields(line: str) -> list[str]:
    return line.rstrip("\n").split("\t")


def _account(data: Path, username: str) -> str:
    return _fields(admin(data, "quota", "show", username).stdout)[1]


async def _open_mail(data: Path) -> tuple[SQLiteDatabase, SQLiteMailStore]:
    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(data)), reactor)
    await db.start()
    return db, SQLiteMailStore(db, reactor)


def _fill(writer: IMailWriter) -> str:
    """
    Two threads in the inbox (one of two emails, one read), one email in
    the archive; the inbox's id.
    """
    roles = {m.role: m.id for m in writer.mailboxes()}
    inbox = roles["inbox"]
    writer.add_email(message(subject="a", message_id="a@x"), [inbox], (), 1.0)
    writer.add_email(message(subject="Re: a", in_reply_to="a@x"), [inbox], ("$seen",), 2.0)
    writer.add_email(message(subject="b"), [inbox], ("$seen",), 3.0)
    writer.add_email(message(subject="c"), [roles["archive"]], (), 4.0)
    return inbox


def _counts(reader: IMailReader) -> tuple[dict[str, MailboxCounts], dict[str, MailboxCounts]]:
    mailboxes = reader.mailboxes()
    trash = next(m.id for m in mailboxes if m.role == "trash")
    every, _ = reader.query_emails(None, [], False)
    emails = list(reader.emails(every).values())
    reported = reader.mailbox_counts([m.id for m in mailboxes])
    return reported, {m.id: mailquery.mailbox_counts(m.id, emails, trash) for m in mailboxes}


@pytest_twisted.ensureDeferred
async def test_recount_repairs_and_names_wrong_mailboxes(data: Path) -> None:
    """
    A corrupted counter and thread tally are repaired by ``recount``
    (every user's account when none is named): it prints the mailbox's
    owner, path and id with its counts before and after (emails/unread
    emails/threads/unread threads), then a line per account; the store
    then reports the counts its emails give, and a second run finds
    nothing to repair.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert admin(data, "user", "add", "bob", "--no-password").returncode == 0
    alice, bob = _account(data, "alice"), _account(data, "bob")
    db, store = await _open_mail(data)
    try:
        await store.setup_account(alice)
        await store.setup_account(bob)
        inbox = await store.write(alice, _fill)
        right, _ = await store.read(alice, _counts)
    finally:
        await db.stop()
    assert right[inbox] == MailboxCounts(3, 1, 2, 1)

    with sqlite3.connect(database_path(str(data))) as connection:
        connection.execute(
            "UPDATE mailboxes SET unread_emails = 7, total_threads = 0 WHERE id = ?", (inbox,)
        )
        connection.execute("DELETE FROM thread_unread WHERE account_id = ?", (alice,))
    connection.close()

    result = admin(data, "recount")
    assert result.returncode == 0, result
    lines = [_fields(line) for line in result.stdout.splitlines()]
    assert lines == [
        ["alice", "Inbox", inbox, "was 3/7/0/1", "now 3/1/2/1"],
        ["alice", alice, "1 mailbox(es) fixed, 2 thread tally(ies) fixed"],
        ["bob", bob, "0 mailbox(es) fixed, 0 thread tally(ies) fixed"],
    ]

    db, store = await _open_mail(data)
    try:
        reported, reference = await store.read(alice, _counts)
    finally:
        await db.stop()
    assert reported == reference == right
    again = admin(data, "recount", "alice")
    assert _fields(again.stdout) == [
        "alice",
        alice,
        "0 mailbox(es) fixed, 0 thread tally(ies) fixed",
    ]


def test_recount_of_an_unknown_user_fails(data: Path) -> None:
    """
    Naming a user or account that does not exist is an error, on one line.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, "recount", "alice", "nobody"), "no such user or account: nobody")
