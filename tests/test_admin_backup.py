"""
Tests of ``jmap-admin backup`` and ``restore``: an online copy of the
SQLite store, taken while it is written to, restores as a consistent
state of every account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.threads import deferToThread

from jmap_twisted import backup
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.store.backends import Stores, StoreSettings, open_stores
from jmap_twisted.store.sqlite.database import DATABASE_FILENAME
from tests.mailfactory import message
from tests.test_admin import admin, assert_failed

TYPES = ("Email", "Mailbox", "Thread")


async def _open(data: Path) -> Stores:
    from twisted.internet import reactor

    stores = open_stores(StoreSettings(data), reactor)  # type: ignore[arg-type]
    await stores.database.start()
    return stores


def _account_view(reader: IMailReader) -> tuple[Any, ...]:
    """
    An account's state strings and the ids of its emails.
    """
    email_ids, _ = reader.query_emails(None, [], False)
    return (*(reader.state(t) for t in TYPES), frozenset(email_ids))


def _emails(reader: IMailReader) -> dict[str, tuple[Any, ...]]:
    """
    Every email of an account (what Email/get serves) with its octets.
    """
    email_ids, _ = reader.query_emails(None, [], False)
    return {
        e.id: (e.blob_id, e.thread_id, e.mailbox_ids, e.keywords, e.received_at, e.size,
               reader.message(e.blob_id))
        for e in reader.emails(email_ids).values()
    }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_backup_while_writing_restores_a_committed_state(tmp_path: Path) -> None:
    """
    A backup taken while emails and blobs are being stored restores into a
    fresh data directory as exactly the state some commit left: every
    account's state strings and emails as they were then, every email's
    octets and every blob stored until then, and nothing later.
    """
    data = tmp_path / "data"
    stores = await _open(data)
    accounts: list[str] = []
    for name in ("alice", "bob"):
        user = await stores.directory.create_user(name, None)
        (account,) = await stores.directory.accounts_for_user(user.id)
        await stores.mail.setup_account(account.id)
        accounts.append(account.id)
    inboxes = {
        a: await stores.mail.read(a, lambda r: next(m.id for m in r.mailboxes() if m.role == "inbox"))
        for a in accounts
    }  # fmt: skip
    blobs: list[tuple[str, str, bytes]] = []
    snapshots: list[tuple[Any, ...]] = []

    async def snapshot() -> None:
        views = [await stores.mail.read(a, _account_view) for a in accounts]
        snapshots.append((*views, len(blobs)))

    writing = True

    async def write() -> None:
        i = 0
        while writing or i < 40:
            account = accounts[i % 2]
            raw = message(subject=f"mail {i}", body="x" * (i * 37 % 3000))
            keywords = ["$seen"] if i % 3 else []
            await stores.mail.write(
                account,
                lambda w, a=account, r=raw, k=keywords, t=1000.0 + i: w.add_email(
                    r, [inboxes[a]], k, t
                ),
            )
            await snapshot()
            if i % 4 == 0:
                data_ = f"blob {i}".encode() * 50
                info = await stores.blobs.put(account, data_, "text/plain")
                blobs.append((account, info.blob_id, data_))
                await snapshot()
            i += 1

    await snapshot()
    writer = write()
    from twisted.internet.defer import ensureDeferred

    done = ensureDeferred(writer)
    copied = await deferToThread(backup.backup, data, tmp_path / "backup")
    writing = False
    await done
    assert copied.path == tmp_path / "backup" / DATABASE_FILENAME

    restored_dir = tmp_path / "restored"
    await deferToThread(backup.restore, tmp_path / "backup", restored_dir)
    restored = await _open(restored_dir)
    try:
        views = [await restored.mail.read(a, _account_view) for a in accounts]
        present = [
            await restored.blobs.get(account, blob_id) is not None for account, blob_id, _ in blobs
        ]
        stored_count = sum(present)
        assert present == [True] * stored_count + [False] * (len(blobs) - stored_count)
        assert (*views, stored_count) in snapshots
        for account, blob_id, octets in blobs[:stored_count]:
            found = await restored.blobs.get(account, blob_id)
            assert found is not None and found[1] == octets
        for account in accounts:
            now = await stores.mail.read(account, _emails)
            then = await restored.mail.read(account, _emails)
            assert then == {email_id: now[email_id] for email_id in then}
        users = [(u.username, u.id) for u in await restored.directory.list_users()]
        assert users == [(u.username, u.id) for u in await stores.directory.list_users()]
    finally:
        await restored.database.stop()
        await stores.database.stop()


def test_backup_and_restore_commands(tmp_path: Path) -> None:
    """
    jmap-admin backup copies a data directory's store into a new directory
    and restore copies it into an empty data directory, where the users
    are; both refuse a target that is not empty and a source without data.
    """
    data, copy, fresh = tmp_path / "data", tmp_path / "copy", tmp_path / "fresh"
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    made = admin(data, "backup", str(copy), init=False)
    assert made.returncode == 0, made
    assert made.stdout.startswith(f"backed up {data} to {copy / DATABASE_FILENAME} (")
    back = admin(fresh, "restore", str(copy), init=False)
    assert back.returncode == 0, back
    assert back.stdout.startswith(f"restored {copy} into {fresh} (")
    assert admin(fresh, "user", "list", init=False).stdout.startswith("alice\t")
    assert sorted(p.name for p in copy.iterdir()) == [DATABASE_FILENAME]

    assert_failed(admin(data, "backup", str(copy), init=False), "is not an empty directory")
    assert_failed(admin(fresh, "restore", str(copy), init=False), "is not an empty directory")
    assert_failed(
        admin(tmp_path / "none", "backup", str(tmp_path / "b2"), init=False), "no server data in"
    )
    assert not (tmp_path / "b2").exists()
    assert_failed(
        admin(tmp_path / "other", "restore", str(tmp_path / "none"), init=False), "no backup at"
    )
    assert not (tmp_path / "other").exists()
