"""
Behaviour of the PostgreSQL backend beyond the contract suites: several
nodes (``PostgresDatabase`` instances) over one database, migrations,
lost connections, DSN redaction, search semantics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.errors import UserExists
from jmap_twisted.interfaces import IDirectory, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import StoreCommit
from jmap_twisted.store.postgres.database import PostgresDatabase, redact_dsn, to_psycopg
from jmap_twisted.store.postgres.directory import PostgresDirectory
from jmap_twisted.store.postgres.mail import PostgresMailStore
from jmap_twisted.store.postgres.schema import MIGRATIONS
from jmap_twisted.store.sql.threaded import SchemaVersionError
from tests.mailfactory import message
from tests.store.postgres_backend import started_database

ACCOUNT = "a0000000000000001"


@pytest_twisted.async_yield_fixture
async def nodes(fresh_postgres_dsn: str) -> AsyncIterator[list[PostgresDatabase]]:
    """
    Two started databases over one fresh PostgreSQL database, as two server
    nodes would have.
    """
    first = await started_database(fresh_postgres_dsn, pool_size=3)
    second = await started_database(fresh_postgres_dsn, pool_size=3)
    try:
        yield [first, second]
    finally:
        await first.stop()
        await second.stop()


def _inbox(reader: IMailReader) -> str:
    return next(m.id for m in reader.mailboxes() if m.role == "inbox")


@pytest_twisted.ensureDeferred
async def test_concurrent_writers_on_two_nodes(nodes: list[PostgresDatabase]) -> None:
    """
    Deliveries to one account from two nodes at once commit with distinct,
    increasing modseqs and Email states, and the change log lists every
    email created: no allocation races, no lost entries.
    """
    from twisted.internet import reactor

    stores = [PostgresMailStore(db, reactor) for db in nodes]
    await stores[0].setup_account(ACCOUNT)
    inbox = await stores[0].read(ACCOUNT, _inbox)
    start = await stores[0].read(ACCOUNT, lambda r: r.state("Email"))
    commits: list[StoreCommit] = []
    for store in stores:
        store.subscribe(commits.append)

    def deliver(n: int) -> Any:
        def add(writer: IMailWriter) -> str:
            return writer.add_email(message(subject=f"m{n}"), [inbox], (), float(n)).id

        return stores[n % 2].write(ACCOUNT, add, delivery=True)

    created = await gatherResults([deliver(n) for n in range(40)])
    modseqs = [c.modseq for c in commits]
    assert len(set(modseqs)) == 40
    email_states = sorted(int(c.states["Email"]) for c in commits)
    assert len(set(email_states)) == 40
    changes = await stores[1].read(ACCOUNT, lambda r: r.changes("Email", start, None))
    assert sorted(changes.created) == sorted(created)
    assert changes.new_state == str(email_states[-1])
    total, _ = await stores[1].read(ACCOUNT, lambda r: r.query_emails(None, [], False))
    assert sorted(total) == sorted(created)


@pytest_twisted.ensureDeferred
async def test_migrations_applied_once_when_nodes_start_together(fresh_postgres_dsn: str) -> None:
    """
    Several databases starting at once over an empty database apply each
    migration exactly once (the advisory lock orders them).
    """
    from twisted.internet import reactor

    dbs = [PostgresDatabase(fresh_postgres_dsn, reactor, pool_size=1) for _ in range(4)]
    results = await DeferredList([db.start() for db in dbs], consumeErrors=True)
    try:
        assert all(ok for ok, _ in results), results
        rows = await dbs[0].read(
            lambda s: s.execute("SELECT version FROM jmap_schema_migrations").fetchall()
        )
        assert sorted(v for (v,) in rows) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for db in dbs:
            await db.stop()


@pytest_twisted.ensureDeferred
async def test_newer_schema_is_refused(fresh_postgres_dsn: str) -> None:
    """
    A database migrated by a newer version is refused at start, naming the
    database without its password.
    """
    from twisted.internet import reactor

    db = await started_database(fresh_postgres_dsn)
    await db.run(
        lambda s: s.execute("INSERT INTO jmap_schema_migrations (version) VALUES (?)", (99,))
    )
    await db.stop()
    with pytest.raises(SchemaVersionError) as raised:
        await PostgresDatabase(fresh_postgres_dsn, reactor, pool_size=1).start()
    assert raised.value.found == 99
    assert "password" not in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_terminated_connections_are_replaced(fresh_postgres_dsn: str) -> None:
    """
    When the server terminates every connection of the pool (as an
    administrator or a restart would), the next operations succeed on new
    connections.
    """
    from twisted.internet import reactor

    db = await started_database(fresh_postgres_dsn, pool_size=2)
    try:
        store = PostgresMailStore(db, reactor)
        await store.setup_account(ACCOUNT)
        with psycopg.connect(fresh_postgres_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'jmap-twisted' AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        inbox = await store.read(ACCOUNT, _inbox)
        email = await store.write(
            ACCOUNT, lambda w: w.add_email(message(), [inbox], (), 1.0), delivery=True
        )
        found = await store.read(ACCOUNT, lambda r: r.emails([email.id]))
        assert list(found) == [email.id]
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_failed_write_rolls_back(fresh_postgres_dsn: str) -> None:
    """
    A write whose function raises leaves nothing behind and the connection
    usable.
    """
    from twisted.internet import reactor

    db = await started_database(fresh_postgres_dsn, pool_size=1)
    try:
        store: IMailStore = PostgresMailStore(db, reactor)
        await store.setup_account(ACCOUNT)
        before = await store.read(ACCOUNT, lambda r: r.state("Email"))
        inbox = await store.read(ACCOUNT, _inbox)

        def fails(writer: IMailWriter) -> None:
            writer.add_email(message(), [inbox], (), 1.0)
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.write(ACCOUNT, fails)
        assert await store.read(ACCOUNT, lambda r: r.state("Email")) == before
        assert await store.read(ACCOUNT, lambda r: r.query_emails(None, [], False)) == ([], 0)
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_search_folds_case_as_python(fresh_postgres_dsn: str) -> None:
    """
    Text conditions fold case with str.casefold (ß matches ss), match
    substrings within one field only, and treat LIKE wildcards literally.
    """
    from twisted.internet import reactor

    db = await started_database(fresh_postgres_dsn, pool_size=1)
    try:
        store = PostgresMailStore(db, reactor)
        await store.setup_account(ACCOUNT)
        inbox = await store.read(ACCOUNT, _inbox)
        email = await store.write(
            ACCOUNT,
            lambda w: w.add_email(
                message(subject="Grüße aus der Straße", body="50% off_today"), [inbox], (), 1.0
            ),
        )

        async def query(condition: dict[str, Any]) -> list[str]:
            found, _ = await store.read(ACCOUNT, lambda r: r.query_emails(condition, [], False))
            return found

        assert await query({"subject": "STRASSE"}) == [email.id]
        assert await query({"text": "grüsse"}) == [email.id]
        assert await query({"body": "50% OFF_"}) == [email.id]
        assert await query({"body": "50%%"}) == []
        assert await query({"subject": "off"}) == []
        assert await query({"text": "straße\x1f"}) == []
        assert await query({"header": ["subject", "AUS DER"]}) == [email.id]
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_same_username_on_two_nodes(nodes: list[PostgresDatabase]) -> None:
    """
    Two nodes creating the same user at once: one succeeds, the other gets
    UserExists.
    """
    directories = [PostgresDirectory(db, Clock()) for db in nodes]
    for directory in directories:
        assert verifyObject(IDirectory, directory)
    results = await DeferredList(
        [d.create_user("alice", None) for d in directories], consumeErrors=True
    )
    outcomes = sorted(ok for ok, _ in results)
    assert outcomes == [False, True]
    failure = next(value for ok, value in results if not ok)
    assert failure.check(UserExists)


@pytest_twisted.ensureDeferred
async def test_access_changes_seen_by_other_nodes(nodes: list[PostgresDatabase]) -> None:
    """
    A delegation granted on one node shows in the access version and the
    access changes another node polls.
    """
    one, two = (PostgresDirectory(db, Clock()) for db in nodes)
    await one.create_user("alice", None)
    bob = await one.create_user("bob", None)
    version = await two.access_version()
    await one.delegate("alice", "bob")
    assert await two.access_version() > version
    assert await two.access_changes_since(version) == [bob.id]


def test_redact_dsn() -> None:
    """
    DSNs are logged without their password, in either syntax.
    """
    assert redact_dsn("host=db port=5433 dbname=mail user=jmap password=s3cret") == (
        "postgresql://jmap@db:5433/mail"
    )
    assert "s3cret" not in redact_dsn("postgresql://jmap:s3cret@db/mail?sslmode=require")
    assert "s3cret" not in redact_dsn("not a dsn password='s3cret")


def test_placeholders() -> None:
    """
    Shared SQL's ``?`` placeholders become psycopg's, literal percent signs
    doubled.
    """
    assert to_psycopg("SELECT ? WHERE x LIKE '%a'") == "SELECT %s WHERE x LIKE '%%a'"


@pytest_twisted.ensureDeferred
async def test_read_past_its_budget_is_stopped(fresh_postgres_dsn: str) -> None:
    """
    An account's read whose statement runs past the budget fails with
    QueryTimeout (``statement_timeout``); the directory's reads have no
    budget, and the connection serves the next read normally.
    """
    from jmap_twisted.errors import QueryTimeout

    db = await started_database(fresh_postgres_dsn, pool_size=1, read_budget=0.2)
    try:
        with pytest.raises(QueryTimeout):
            await db.read_for("mallory", lambda s: s.execute("SELECT pg_sleep(30)").fetchone())
        assert await db.read_for("mallory", lambda s: s.execute("SELECT 7").fetchone()) == (7,)
        slept = await db.read(lambda s: s.execute("SELECT pg_sleep(0.3), 8").fetchone())
        assert slept[1] == 8
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_cancelled_read_stops_its_statement(fresh_postgres_dsn: str) -> None:
    """
    Cancelling an account's read while its statement runs sends a cancel
    request: the statement ends and the only worker thread serves the next
    read, while the directory's reads went on meanwhile.
    """
    import threading

    from twisted.internet.defer import CancelledError

    db = await started_database(fresh_postgres_dsn, pool_size=1, read_budget=None)
    started = threading.Event()

    def endless(statements: Any) -> object:
        started.set()
        return statements.execute("SELECT pg_sleep(3600)").fetchone()

    try:
        running = db.read_for("mallory", endless)
        assert started.wait(30)
        assert await db.read(lambda s: s.execute("SELECT 2").fetchone()) == (2,)
        running.cancel()
        with pytest.raises(CancelledError):
            await running
        # Served only once the cancelled statement has stopped.
        assert await db.read_for("alice", lambda s: s.execute("SELECT 3").fetchone()) == (3,)
    finally:
        await db.stop()
