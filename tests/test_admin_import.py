"""
Tests of ``jmap-admin``'s refusal of data directories without server data,
``user import``, ``mail import`` and ``mail export``.
"""

from __future__ import annotations

import io
import mailbox
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.admin_import import export_mail, import_mail
from jmap_twisted.auth.passwords import PasswordHasher
from jmap_twisted.store.backends import Stores, StoreSettings, open_stores
from jmap_twisted.store.sqlite.database import DATABASE_FILENAME
from tests.test_admin import admin, assert_failed


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def _open(data: Path) -> Stores:
    from twisted.internet import reactor

    stores = open_stores(StoreSettings(data), reactor)  # type: ignore[arg-type]
    await stores.database.start()
    return stores


async def _account(stores: Stores, username: str) -> str:
    user = await stores.directory.get_user(username)
    assert user is not None
    (account,) = await stores.directory.accounts_for_user(user.id)
    return account.id


async def _mail(stores: Stores, account_id: str) -> dict[str, list[tuple[bytes, frozenset[str]]]]:
    """
    The messages (octets, keywords) of each mailbox by name path, sorted.
    """

    def read(reader: Any) -> dict[str, list[tuple[bytes, frozenset[str]]]]:
        boxes = {m.id: m for m in reader.mailboxes()}

        def path(m: Any) -> str:
            parent = boxes.get(m.parent_id or "")
            return m.name if parent is None else f"{path(parent)}/{m.name}"

        found: dict[str, list[tuple[bytes, frozenset[str]]]] = {}
        for mailbox_id, record in boxes.items():
            email_ids, _ = reader.query_emails({"inMailbox": mailbox_id}, [], False)
            emails = reader.emails(email_ids).values()
            found[path(record)] = sorted((reader.message(e.blob_id), e.keywords) for e in emails)
        return found

    return await stores.mail.read(account_id, read)  # type: ignore[no-any-return]


def make_mbox(path: Path, count: int) -> None:
    """
    An mbox of ``count`` messages; every 10th is read, every 7th answered
    and flagged, every 50th marked deleted; bodies have ``From`` lines.
    """
    box = mailbox.mbox(str(path))
    box.lock()
    try:
        for i in range(count):
            status = "Status: RO\n" if i % 10 == 0 else ""
            x_status = "X-Status: AF\n" if i % 7 == 0 else ""
            if i % 50 == 49:
                x_status = "X-Status: D\n"
            text = (
                f"From: sender{i % 13}@example.com\nTo: rcpt@example.com\n"
                f"Subject: message {i}\nMessage-ID: <m{i}@example.com>\n"
                f"Date: Tue, 01 Dec 2026 10:00:00 +0000\n{status}{x_status}\n"
                f"Body of message {i}.\nFrom here on, quoted.\n"
            )
            box.add(text.encode())
    finally:
        box.unlock()
        box.close()


def make_maildir(path: Path, count: int) -> None:
    """
    A Maildir of ``count`` messages: a third each in its root, ``.Lists``
    and ``.Lists.Python``; flags cycle through none, S, RS, FD and T.
    """
    root = mailbox.Maildir(str(path))
    folders = [root, root.add_folder("Lists"), root.add_folder("Lists.Python")]
    flag_cycle = ["", "S", "RS", "FD", "T"]
    for i in range(count):
        message = mailbox.MaildirMessage(
            f"From: list{i % 5}@example.org\nSubject: md {i}\nMessage-ID: <d{i}@example.org>\n"
            f"\nHello {i}.\n".encode()
        )
        flags = flag_cycle[i % len(flag_cycle)]
        message.set_flags(flags)
        message.set_subdir("cur" if flags else "new")
        folders[i % 3].add(message)


# Refusing a data directory without server data.


def test_missing_store_refused(data: Path) -> None:
    """
    Without --init, a data directory that does not exist is refused, naming
    the database path and how to create it, and nothing is created.
    """
    result = admin(data, "user", "add", "alice", "--no-password", init=False)
    assert_failed(result, f"no server data in {data}")
    assert str(data / DATABASE_FILENAME) in result.stderr
    assert "--init" in result.stderr
    assert not data.exists()


def test_empty_database_refused(data: Path) -> None:
    """
    A database file the server never set up (a mistyped path, an empty
    file) is refused too; --init sets it up.
    """
    data.mkdir()
    (data / DATABASE_FILENAME).write_bytes(b"")
    assert_failed(admin(data, "user", "list", init=False), "holds no server tables")
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    listed = admin(data, "user", "list", init=False)
    assert listed.returncode == 0, listed
    assert listed.stdout.startswith("alice\t")


# user import.


@pytest_twisted.ensureDeferred
async def test_user_import(data: Path, tmp_path: Path) -> None:
    """
    user import creates the users of a CSV file with their passwords (none
    when empty), skips existing ones and says so; a second run creates
    nobody.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    users = tmp_path / "users.csv"
    users.write_text(
        "username,password\n# a comment\nbob,pw-bob-1\n\ncarol,\nalice,ignored\n"
        '"dave","pa,ss ""word"""\n',
        encoding="utf-8",
    )
    first = admin(data, "user", "import", str(users), init=False)
    assert first.returncode == 0, first
    assert "exists, skipped: alice" in first.stdout
    assert first.stdout.splitlines()[-1] == "3 user(s) created, 1 already existed"
    again = admin(data, "user", "import", str(users), init=False)
    assert again.stdout.splitlines()[-1] == "0 user(s) created, 4 already existed"

    stores = await _open(data)
    try:
        hasher = PasswordHasher()
        bob = await stores.directory.get_password_hash("bob")
        carol = await stores.directory.get_password_hash("carol")
        dave = await stores.directory.get_password_hash("dave")
        alice = await stores.directory.get_password_hash("alice")
    finally:
        await stores.database.stop()
    assert bob is not None and bob[1] is not None and hasher.verify("pw-bob-1", bob[1])
    assert dave is not None and dave[1] is not None and hasher.verify('pa,ss "word"', dave[1])
    assert carol is not None and carol[1] is None
    assert alice is not None and alice[1] is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bob,pw\nbad:name,pw\n", ":2: invalid username"),
        ("bob,pw,extra\n", ":1: expected 2 fields"),
        ("bob,pw\nbob,other\n", ":2: bob already on line 1"),
    ],
)
def test_user_import_refuses_bad_rows(data: Path, tmp_path: Path, text: str, message: str) -> None:
    """
    A bad row fails the import with its line number, before any user is
    created.
    """
    assert admin(data, "user", "list").returncode == 0
    users = tmp_path / "users.csv"
    users.write_text(text, encoding="utf-8")
    assert_failed(admin(data, "user", "import", str(users), init=False), message)
    assert admin(data, "user", "list", init=False).stdout == ""


# mail import and export.


@pytest_twisted.ensureDeferred
async def test_mail_import_export_round_trip(data: Path, tmp_path: Path) -> None:
    """
    An mbox and a Maildir import with their keywords and folders, deleted
    messages left out; a second import adds nothing; exports to Maildir
    and to mbox import into another account as the same messages.
    """
    for name in ("alice", "bob", "carol"):
        assert admin(data, "user", "add", name, "--no-password").returncode == 0
    make_mbox(tmp_path / "in.mbox", 100)
    make_maildir(tmp_path / "md", 30)

    imported = admin(data, "mail", "import", "alice", str(tmp_path / "in.mbox"), init=False)
    assert imported.returncode == 0, imported
    assert imported.stdout.startswith("imported 98 message(s) into Inbox of alice; 0 already")
    assert "2 marked deleted not imported" in imported.stdout
    assert imported.stderr == ""  # no progress bar off a terminal
    maildir = admin(data, "mail", "import", "alice", str(tmp_path / "md"), init=False)
    assert maildir.stdout.startswith(
        "imported 24 message(s) into Inbox, Lists, Lists/Python of alice"
    )
    for source in ("in.mbox", "md"):
        again = admin(data, "mail", "import", "alice", str(tmp_path / source), init=False)
        assert again.stdout.startswith("imported 0 message(s) into no mailbox of alice;")

    stores = await _open(data)
    try:
        alice = await _mail(stores, await _account(stores, "alice"))
    finally:
        await stores.database.stop()
    assert len(alice["Inbox"]) == 98 + 8
    assert (len(alice["Lists"]), len(alice["Lists/Python"])) == (8, 8)
    by_subject = {raw.split(b"Subject: ")[1].split(b"\r\n")[0]: k for raw, k in alice["Inbox"]}
    assert by_subject[b"message 0"] == {"$seen", "$answered", "$flagged"}
    assert by_subject[b"message 10"] == {"$seen"}
    assert by_subject[b"message 1"] == frozenset()
    assert b"message 49" not in by_subject
    assert by_subject[b"md 0"] == frozenset()
    assert by_subject[b"md 6"] == {"$seen"}
    assert {k for _, k in alice["Lists/Python"]} >= {frozenset({"$flagged", "$draft"})}
    raw0 = next(raw for raw, _ in alice["Inbox"] if b"Subject: message 0\r\n" in raw)
    assert b"Status" not in raw0
    assert b"\r\nFrom here on, quoted.\r\n" in raw0
    assert b"\n" not in raw0.replace(b"\r\n", b"")

    for fmt, user in (("maildir", "bob"), ("mbox", "carol")):
        out = tmp_path / f"out-{fmt}"
        exported = admin(data, "mail", "export", "alice", str(out), "--format", fmt)
        assert exported.stdout == f"exported 122 message(s) of 8 mailbox(es) of alice to {out}\n"
        source = out if fmt == "maildir" else out / "Inbox.mbox"
        done = admin(data, "mail", "import", user, str(source), init=False)
        assert done.returncode == 0, done
        stores = await _open(data)
        try:
            copy = await _mail(stores, await _account(stores, user))
        finally:
            await stores.database.stop()
        if fmt == "maildir":
            assert copy == alice
        else:
            assert copy["Inbox"] == alice["Inbox"]


@pytest_twisted.ensureDeferred
async def test_mail_import_stops_at_quota(data: Path, tmp_path: Path) -> None:
    """
    An import reaching the account's message limit stops with an error
    saying so, keeping what fitted; after the limit is raised, running it
    again imports the rest, without duplicates.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert admin(data, "quota", "set", "alice", "--messages", "30").returncode == 0
    make_mbox(tmp_path / "in.mbox", 40)
    stopped = admin(data, "mail", "import", "alice", str(tmp_path / "in.mbox"))
    assert stopped.returncode == 1, stopped
    assert stopped.stdout.startswith("imported 30 message(s)")
    assert "import stopped: the account of alice is over quota: 30 of 30 messages" in (
        stopped.stderr
    )
    assert admin(data, "quota", "clear", "alice").returncode == 0
    rest = admin(data, "mail", "import", "alice", str(tmp_path / "in.mbox"))
    assert rest.stdout.startswith("imported 10 message(s) into Inbox of alice; 30 already there")


def test_mail_import_errors(data: Path, tmp_path: Path) -> None:
    """
    A missing source, a file that is not an mbox, an unknown mailbox and
    an unknown user fail with one line saying which.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    (tmp_path / "notes.txt").write_text("hello\n")
    make_mbox(tmp_path / "in.mbox", 1)
    for args, message in [
        (["alice", str(tmp_path / "nowhere")], "no such mbox file or Maildir directory"),
        (["alice", str(tmp_path / "notes.txt")], "is not an mbox file"),
        (["alice", str(tmp_path / "in.mbox"), "--mailbox", "No/Such"], "no such mailbox: No/Such"),
        (["nobody", str(tmp_path / "in.mbox")], "no such user: nobody"),
    ]:
        assert_failed(admin(data, "mail", "import", *args), message)


@pytest.mark.parametrize("count", [2000])
@pytest_twisted.ensureDeferred
async def test_import_counts_and_progress(data: Path, tmp_path: Path, count: int) -> None:
    """
    Importing an mbox and a Maildir of ``count`` messages each stores them
    all (less those marked deleted) with a progress bar drawn when asked
    for; a second run stores nothing new.  (bench/import_rate.py measures
    the rate with 10,000 each.)
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    make_mbox(tmp_path / "big.mbox", count)
    make_maildir(tmp_path / "big-md", count)
    stores = await _open(data)
    try:
        account_id = await _account(stores, "alice")
        for source, deleted in (("big.mbox", count // 50), ("big-md", count // 5)):
            bar = io.StringIO()
            first = await import_mail(
                stores, account_id, tmp_path / source, [], progress=True, progress_stream=bar
            )
            assert (first.imported, first.present, first.deleted) == (
                count - deleted,
                0,
                deleted,
            )
            assert f"{count}/{count}" in bar.getvalue()
            quiet = io.StringIO()
            second = await import_mail(
                stores, account_id, tmp_path / source, [], progress=False, progress_stream=quiet
            )
            assert (second.imported, second.present) == (0, count - deleted)
            assert quiet.getvalue() == ""
        written, _ = await export_mail(stores, account_id, tmp_path / "out", "maildir", False)
        assert written == 2 * count - count // 50 - count // 5
    finally:
        await stores.database.stop()
