"""
``jmap-admin quota``: limits set, cleared and shown on the database the
server uses, by username or account id; each run in a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import IMailWriter
from jmap_twisted.records import AccountQuota
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from tests.mailfactory import message
from tests.test_admin import admin, assert_failed


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _fields(line: str) -> list[str]:
    return line.rstrip("\n").split("\t")


async def _open_mail(data: Path) -> tuple[SQLiteDatabase, SQLiteMailStore]:
    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(data)), reactor)
    await db.start()
    return db, SQLiteMailStore(db, reactor)


def _deliver(writer: IMailWriter) -> str:
    inbox = next(m.id for m in writer.mailboxes() if m.role == "inbox")
    return writer.add_email(message(), [inbox], (), 1.0).id


@pytest_twisted.ensureDeferred
async def test_quota_set_show_and_clear(data: Path) -> None:
    """
    ``quota set`` takes sizes with binary units and a message count and
    prints the account's line (username, account id, octets used, storage
    limit, messages, message limit); the limits hold for a store opened
    on the database, which ``quota show`` reflects; ``quota clear``
    removes one limit or both; the account id names the account too.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert admin(data, "user", "add", "bob", "--no-password").returncode == 0
    result = admin(data, "quota", "set", "alice", "--storage", "2K", "--messages", "1")
    assert result.returncode == 0, result
    username, account, used, storage, messages, limit = _fields(result.stdout)
    assert (username, used, storage, messages, limit) == ("alice", "0", "2048", "0", "1")

    db, store = await _open_mail(data)
    try:
        await store.setup_account(account)
        await store.write(account, _deliver)
        with pytest.raises(OverQuota):
            await store.write(account, _deliver)
        quota = await store.read(account, lambda r: r.quota())
    finally:
        await db.stop()
    assert quota == AccountQuota(len(message()), 1, 2048, 1)

    shown = admin(data, "quota", "show", account)
    assert _fields(shown.stdout) == ["alice", account, str(len(message())), "2048", "1", "1"]
    every = admin(data, "quota", "show").stdout.splitlines()
    assert [_fields(line)[0] for line in every] == ["alice", "bob"]
    assert _fields(every[1])[2:] == ["0", "-", "0", "-"]

    cleared = admin(data, "quota", "clear", "alice", "--messages")
    assert _fields(cleared.stdout)[3:] == ["2048", "1", "-"]
    more = admin(data, "quota", "set", account, "--messages", "10")
    assert _fields(more.stdout)[3:] == ["2048", "1", "10"]
    cleared = admin(data, "quota", "clear", "alice")
    assert _fields(cleared.stdout)[3:] == ["-", "1", "-"]


def test_quota_errors(data: Path) -> None:
    """
    An unknown user or account, or no limit to set, fails with one line;
    a malformed size is a usage error.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, "quota", "set", "nobody", "--messages", "1"), "no such user")
    assert_failed(admin(data, "quota", "show", "nobody"), "no such user or account")
    assert_failed(admin(data, "quota", "set", "alice"), "give --storage, --messages or both")
    for size in ("1X", "-1", "", "K"):
        result = admin(data, "quota", "set", "alice", "--storage", size)
        assert result.returncode == 2, result
        assert "invalid size" in result.stderr
