"""
Mailbox counters (:mod:`jmap_twisted.store.counters`): the change of one
email against a recount from scratch, the schema migrations that fill the
counters of mail stored before them, and the repair of corrupted counters
in both SQL stores.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.interfaces import IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import MailboxCounts, MailboxRecount, Recount
from jmap_twisted.store import counters, mailquery
from jmap_twisted.store.counters import Membership, ThreadTally
from jmap_twisted.store.postgres.mail import PostgresMailStore
from jmap_twisted.store.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from jmap_twisted.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from jmap_twisted.testing import CONTRACT_ACCOUNTS
from jmap_twisted.testing._counts import _Scenario
from jmap_twisted.testing._doubles import message
from tests.store.postgres_backend import started_database

ACCOUNT, OTHER = CONTRACT_ACCOUNTS


def test_changes_add_up_to_a_recount() -> None:
    """
    Applying random email changes one by one to the tallies and counts
    gives what a recount of the resulting emails gives, with or without
    a trash, and the mailboxes of the other emails of the thread.
    """
    rng = random.Random(17)
    boxes = ["inbox", "archive", "trash", "junk"]
    for trash in ("trash", None):
        emails: dict[int, tuple[str, Membership]] = {}
        tallies: dict[str, ThreadTally] = {}
        counts = dict.fromkeys(boxes, counters.ZERO)
        for n in range(400):
            email = rng.choice([*emails, n]) if emails else n
            before = emails.get(email)
            thread = before[0] if before else f"t{rng.randrange(8)}"
            after = None
            if rng.random() < 0.85:
                mailboxes = frozenset(rng.sample(boxes, rng.choice((0, 1, 1, 1, 2, 3))))
                after = Membership(mailboxes, rng.random() < 0.5)
            tally, deltas = counters.moved(
                tallies.get(thread, ThreadTally()), before and before[1], after, trash
            )
            tallies[thread] = tally
            for mailbox, delta in deltas.items():
                counts[mailbox] = counters.plus(counts[mailbox], delta)
            if after is None:
                emails.pop(email, None)
            else:
                emails[email] = (thread, after)
            others = {
                m
                for e, (t, m_) in emails.items()
                if t == thread and e != email
                for m in m_.mailbox_ids
            }
            assert counters.others(tally, after) == others
        counted = counters.recount(emails.values(), trash)
        assert {t: v for t, v in tallies.items() if v} == counted
        assert counts == counters.totals(counted.values(), boxes, trash)
        assert all(c.total_emails >= 0 and c.unread_threads >= 0 for c in counts.values())


def _reference(reader: IMailReader) -> tuple[dict[str, MailboxCounts], dict[str, MailboxCounts]]:
    mailboxes = reader.mailboxes()
    trash = next((m.id for m in mailboxes if m.role == "trash"), None)
    every, _ = reader.query_emails(None, [], False)
    emails = list(reader.emails(every).values())
    reported = reader.mailbox_counts([m.id for m in mailboxes])
    return reported, {m.id: mailquery.mailbox_counts(m.id, emails, trash) for m in mailboxes}


def _trash_cases(writer: IMailWriter) -> None:
    """
    Threads the trash rule treats apart: a read email in the inbox with an
    unread reply only in the trash; an unread email in the inbox and the
    archive with a read reply in the trash; an unread email in the trash
    and the junk mailbox.
    """
    roles = {m.role: m.id for m in writer.mailboxes()}
    inbox, trash = roles["inbox"], roles["trash"]
    writer.add_email(message(subject="a", message_id="a@x"), [inbox], ["$seen"], 1.0)
    writer.add_email(message(subject="Re: a", in_reply_to="a@x"), [trash], [], 2.0)
    writer.add_email(message(subject="b", message_id="b@x"), [inbox, roles["archive"]], [], 3.0)
    writer.add_email(message(subject="Re: b", in_reply_to="b@x"), [trash], ["$seen"], 4.0)
    writer.add_email(message(subject="c"), [trash, roles["junk"]], [], 5.0)


async def _fill(store: IMailStore) -> None:
    """
    Random operations in one account, the trash cases in the other.
    """
    await store.setup_account(ACCOUNT)
    scenario = _Scenario(store, 11)
    for _ in range(50):
        await scenario.write(scenario.step())
    await store.setup_account(OTHER)
    await store.write(OTHER, _trash_cases)


async def _check_both(store: IMailStore) -> None:
    for account in CONTRACT_ACCOUNTS:
        reported, reference = await store.read(account, _reference)
        assert reported == reference, account
        assert await store.recount(account) == Recount(), account
    counts = await store.read(OTHER, lambda r: r.mailbox_counts([m.id for m in r.mailboxes()]))
    by_role = {m.role: counts[m.id] for m in await store.read(OTHER, lambda r: r.mailboxes())}
    assert by_role["inbox"] == MailboxCounts(2, 1, 2, 1)
    assert by_role["trash"] == MailboxCounts(3, 2, 3, 2)
    assert by_role["junk"] == MailboxCounts(1, 1, 1, 1)


def _forget_counters(db: Any, version: str) -> None:
    """
    Make the database what the schema before the counters was, with its
    mail (``version``: how to record the older version).
    """
    db.execute("DROP TABLE mailbox_threads")
    db.execute("DROP TABLE thread_unread")
    for column in ("total_emails", "unread_emails", "total_threads", "unread_threads"):
        db.execute(f"ALTER TABLE mailboxes DROP COLUMN {column}")
    db.execute(version)


@pytest_twisted.ensureDeferred
async def test_sqlite_migration_counts_the_mail_already_stored(tmp_path: Path) -> None:
    """
    Opening a database of the schema before the counters fills them from
    the mail it holds: every mailbox's counts are those of its emails.
    """
    from twisted.internet import reactor

    path = str(tmp_path / "mail.sqlite3")
    db = SQLiteDatabase(path, reactor)
    await db.start()
    await _fill(SQLiteMailStore(db, Clock()))
    await db.run(_forget_counters, f"PRAGMA user_version = {len(SQLITE_MIGRATIONS) - 1}")
    await db.stop()
    db = SQLiteDatabase(path, reactor)
    await db.start()
    try:
        store = SQLiteMailStore(db, Clock())
        await _check_both(store)
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_postgres_migration_counts_the_mail_already_stored(fresh_postgres_dsn: str) -> None:
    """
    The same for PostgreSQL.
    """
    db = await started_database(fresh_postgres_dsn)
    await _fill(PostgresMailStore(db, Clock()))
    await db.run(
        _forget_counters,
        f"DELETE FROM jmap_schema_migrations WHERE version = {len(POSTGRES_MIGRATIONS)}",
    )
    await db.stop()
    db = await started_database(fresh_postgres_dsn)
    try:
        store = PostgresMailStore(db, Clock())
        await _check_both(store)
    finally:
        await db.stop()


async def _corrupt_and_repair(store: IMailStore, db: Any) -> None:
    await _fill(store)
    reported, reference = await store.read(ACCOUNT, _reference)
    inbox = next(
        m.id for m in await store.read(ACCOUNT, lambda r: r.mailboxes()) if m.role == "inbox"
    )
    await db.run(
        lambda c: c.execute(
            "UPDATE mailboxes SET total_emails = total_emails + 5 WHERE id = ?", (inbox,)
        )
    )
    await db.run(
        lambda c: c.execute("DELETE FROM mailbox_threads WHERE account_id = ?", (ACCOUNT,))
    )
    state = await store.read(ACCOUNT, lambda r: r.state("Mailbox"))
    repaired = await store.recount(ACCOUNT)
    wrong = reported[inbox]
    assert repaired.mailboxes == (
        MailboxRecount(
            inbox,
            MailboxCounts(
                wrong.total_emails + 5,
                wrong.unread_emails,
                wrong.total_threads,
                wrong.unread_threads,
            ),
            reference[inbox],
        ),
    )
    assert repaired.threads > 0
    changes = await store.read(ACCOUNT, lambda r: r.changes("Mailbox", state, None))
    assert (changes.updated, changes.counts_only) == ((inbox,), True)
    assert await store.read(ACCOUNT, _reference) == (reference, reference)
    assert await store.recount(ACCOUNT) == Recount()


@pytest_twisted.ensureDeferred
async def test_sqlite_recount_repairs_corrupted_counters(tmp_path: Path) -> None:
    """
    A recount finds a mailbox whose counter was changed behind the store's
    back and thread tallies that were deleted, keeps the right values and
    records the mailbox as changed (its counts); the counts are right
    again and a second recount finds nothing.
    """
    from twisted.internet import reactor

    db = SQLiteDatabase(str(tmp_path / "mail.sqlite3"), reactor)
    await db.start()
    try:
        await _corrupt_and_repair(SQLiteMailStore(db, Clock()), db)
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_postgres_recount_repairs_corrupted_counters(fresh_postgres_dsn: str) -> None:
    """
    The same for PostgreSQL.
    """
    db = await started_database(fresh_postgres_dsn)
    try:
        await _corrupt_and_repair(PostgresMailStore(db, Clock()), db)
    finally:
        await db.stop()
