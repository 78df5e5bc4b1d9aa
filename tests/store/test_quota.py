"""
Quota usage of the SQL stores beyond the contract: exact under concurrent
deliveries through several store instances over one database (two
PostgreSQL nodes, two SQLite processes' worth), kept across restarts, and
counted once for the mail stored before the schema had quotas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList

from jmap_twisted.errors import OverQuota
from jmap_twisted.interfaces import IMailStore, IMailWriter
from jmap_twisted.records import AccountQuota
from jmap_twisted.store.postgres.database import PostgresDatabase
from jmap_twisted.store.postgres.mail import PostgresMailStore
from jmap_twisted.store.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from jmap_twisted.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from tests.mailfactory import message
from tests.store.postgres_backend import started_database

ACCOUNT = "a0000000000000001"


def _raw(n: int) -> bytes:
    """
    Messages of one size whatever ``n`` (below 100).
    """
    return message(subject=f"delivery {n:02d}")


async def _deliver_at_once(stores: list[Any], count: int) -> tuple[list[str], list[Any]]:
    """
    Start ``count`` deliveries to the account at once, spread over the
    stores; the ids stored and the failures.
    """

    def deliver(n: int) -> Any:
        def add(writer: IMailWriter) -> str:
            inbox = next(m.id for m in writer.mailboxes() if m.role == "inbox")
            return writer.add_email(_raw(n), [inbox], (), float(n)).id

        return stores[n % len(stores)].write(ACCOUNT, add, delivery=True)

    results = await DeferredList([deliver(n) for n in range(count)], consumeErrors=True)
    stored = [value for ok, value in results if ok]
    failures = [value.value for ok, value in results if not ok]
    return stored, failures


async def _assert_exact(store: IMailStore, stored: list[str], failures: list[Any]) -> None:
    """
    The account holds exactly the emails stored, and its usage says so.
    """
    assert all(isinstance(f, OverQuota) for f in failures), failures
    ids, total = await store.read(ACCOUNT, lambda r: r.query_emails(None, [], False))
    assert sorted(ids) == sorted(stored)
    quota = await store.read(ACCOUNT, lambda r: r.quota())
    assert (quota.used_messages, quota.used_octets) == (total, total * len(_raw(0)))


@pytest_twisted.ensureDeferred
async def test_two_postgres_nodes_delivering_at_once_cannot_pass_a_limit(
    fresh_postgres_dsn: str,
) -> None:
    """
    Two nodes over one PostgreSQL database deliver 30 messages to one
    account at once: exactly as many as the message limit (then the
    storage limit) allows are stored, the others fail with OverQuota, and
    the usage equals what is stored.
    """
    from twisted.internet import reactor

    nodes = [await started_database(fresh_postgres_dsn, pool_size=4) for _ in range(2)]
    try:
        stores = [PostgresMailStore(db, reactor) for db in nodes]
        await stores[0].setup_account(ACCOUNT)
        await stores[0].write(ACCOUNT, lambda w: w.set_quota(None, 10))
        stored, failures = await _deliver_at_once(stores, 30)
        assert (len(stored), len(failures)) == (10, 20)
        await _assert_exact(stores[1], stored, failures)

        size = len(_raw(0))
        await stores[1].write(ACCOUNT, lambda w: w.set_quota(14 * size, None))
        more, failures = await _deliver_at_once(stores, 30)
        assert (len(more), len(failures)) == (4, 26)
        assert {f.resource for f in failures} == {"octets"}
        await _assert_exact(stores[0], stored + more, failures)
    finally:
        for db in nodes:
            await db.stop()


@pytest_twisted.ensureDeferred
async def test_two_sqlite_instances_delivering_at_once_cannot_pass_a_limit(
    tmp_path: Path,
) -> None:
    """
    Two databases over one SQLite file (as two processes would have)
    deliver at once: exactly the limit is stored.
    """
    from twisted.internet import reactor

    path = str(tmp_path / "mail.sqlite3")
    databases = [SQLiteDatabase(path, reactor) for _ in range(2)]
    for db in databases:
        await db.start()
    try:
        stores = [SQLiteMailStore(db, reactor) for db in databases]
        await stores[0].setup_account(ACCOUNT)
        await stores[1].write(ACCOUNT, lambda w: w.set_quota(None, 7))
        stored, failures = await _deliver_at_once(stores, 20)
        assert (len(stored), len(failures)) == (7, 13)
        await _assert_exact(stores[0], stored, failures)
    finally:
        for db in databases:
            await db.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_quota_survives_a_restart(tmp_path: Path) -> None:
    """
    Limits and usage are where they were after the database is stopped
    and opened again, and the limit still holds.
    """
    from twisted.internet import reactor

    path = str(tmp_path / "mail.sqlite3")
    db = SQLiteDatabase(path, reactor)
    await db.start()
    store = SQLiteMailStore(db, reactor)
    await store.setup_account(ACCOUNT)
    await store.write(ACCOUNT, lambda w: w.set_quota(100_000, 3))
    stored, _ = await _deliver_at_once([store], 2)
    await db.stop()

    again = SQLiteDatabase(path, reactor)
    await again.start()
    try:
        store = SQLiteMailStore(again, reactor)
        size = len(_raw(0))
        assert await store.read(ACCOUNT, lambda r: r.quota()) == AccountQuota(
            2 * size, 2, 100_000, 3
        )
        more, failures = await _deliver_at_once([store], 3)
        assert (len(more), len(failures)) == (1, 2)
        await _assert_exact(store, stored + more, failures)
    finally:
        await again.stop()


#: An ``emails`` row of the schema before quotas, by column (SQLite and
#: PostgreSQL share these; PostgreSQL adds the last three).
_EMAIL_ROW = {
    "account_id": ACCOUNT,
    "blob_id": "G0",
    "thread_id": "T1",
    "received_at": 1.0,
    "seen": 0,
    "subject": "",
    "base_subject": "",
    "from_text": "",
    "to_text": "",
    "cc_text": "",
    "bcc_text": "",
    "from_sort": "",
    "to_sort": "",
    "preview": "",
    "has_attachment": 0,
    "message_ids": "[]",
    "in_reply_to": "[]",
    "refs": "[]",
}


def _insert_old_mail(db: Any, extra: dict[str, Any]) -> None:
    """
    Three emails (of 100, 200 and 300 octets) in one account and none in
    another that has a change log, written as a server of the schema
    before quotas would have.
    """
    db.execute("INSERT INTO mail_accounts (account_id) VALUES (?)", (ACCOUNT,))
    db.execute("INSERT INTO mail_accounts (account_id) VALUES (?)", ("empty",))
    for n, size in enumerate((100, 200, 300)):
        row = {**_EMAIL_ROW, **extra, "id": f"M{n}", "size": size}
        db.execute(
            f"INSERT INTO emails ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )


@pytest_twisted.ensureDeferred
async def test_sqlite_migration_counts_the_mail_already_stored(tmp_path: Path) -> None:
    """
    Opening a database of the schema before quotas counts, once, the
    emails each account already holds.
    """
    from twisted.internet import reactor

    path = str(tmp_path / "mail.sqlite3")
    old = SQLiteDatabase(path, reactor, migrations=SQLITE_MIGRATIONS[:6])
    await old.start()
    await old.run(_insert_old_mail, {})
    await old.stop()
    new = SQLiteDatabase(path, reactor)
    await new.start()
    try:
        store = SQLiteMailStore(new, reactor)
        assert await store.read(ACCOUNT, lambda r: r.quota()) == AccountQuota(600, 3)
        assert await store.read("empty", lambda r: r.quota()) == AccountQuota(0, 0)
    finally:
        await new.stop()


@pytest_twisted.ensureDeferred
async def test_postgres_migration_counts_the_mail_already_stored(fresh_postgres_dsn: str) -> None:
    """
    The same for PostgreSQL.
    """
    from twisted.internet import reactor

    old = PostgresDatabase(
        fresh_postgres_dsn, reactor, pool_size=1, migrations=POSTGRES_MIGRATIONS[:3]
    )
    await old.start()
    await old.run(_insert_old_mail, {"body_text": "", "search_doc": "", "headers": "[]"})
    await old.stop()
    new = await started_database(fresh_postgres_dsn)
    try:
        store = PostgresMailStore(new, reactor)
        assert await store.read(ACCOUNT, lambda r: r.quota()) == AccountQuota(600, 3)
        assert await store.read("empty", lambda r: r.quota()) == AccountQuota(0, 0)
    finally:
        await new.stop()
