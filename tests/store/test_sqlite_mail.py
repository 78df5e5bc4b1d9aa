"""
Tests of :class:`jmap_twisted.store.sqlite.mail.SQLiteMailStore` beyond the
shared contract (:mod:`tests.store.test_mail_contract`): durability,
atomicity, sharing a file, pruning, threads, query plans, blob clean-up,
and agreement with the in-memory reference on a varied mailbox.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.errors import CannotCalculateChanges
from jmap_twisted.interfaces import IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import MailView, StoreCommit
from jmap_twisted.store import ids
from jmap_twisted.store.memory.mail import MemoryMailStore
from jmap_twisted.store.sql import mail as sql_mail
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.store.sqlite.directory import SQLiteBlobStore, SQLiteDirectory
from jmap_twisted.store.sqlite.mail import SQLiteMailStore
from jmap_twisted.store.sqlite.query import compile_query
from tests.mailfactory import message

ACCOUNT = "a0000000000000001"
OTHER = "a0000000000000002"

#: Tables the mail store writes.
MAIL_TABLES = (
    "mail_accounts",
    "mail_states",
    "mail_changes",
    "mail_change_mailboxes",
    "mail_mailbox_states",
    "mailboxes",
    "emails",
    "email_mailboxes",
    "email_keywords",
    "email_message_ids",
    "email_search",
    "mail_documents",
    "blobs",
)


def _database(path: Path) -> SQLiteDatabase:
    from twisted.internet import reactor

    return SQLiteDatabase(str(path), reactor)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mail.sqlite3"


@pytest_twisted.async_yield_fixture
async def db(db_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = _database(db_path)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_000_000)
    return clock


@pytest_twisted.async_yield_fixture
async def store(db: SQLiteDatabase, clock: Clock) -> AsyncIterator[SQLiteMailStore]:
    mail = SQLiteMailStore(db, clock)
    await mail.setup_account(ACCOUNT)
    yield mail


def roles(reader: IMailReader) -> dict[str, str]:
    return {m.role: m.id for m in reader.mailboxes() if m.role}


async def add(store: IMailStore, raw: bytes, role: str = "inbox", at: float = 1000.0) -> Any:
    return await store.write(ACCOUNT, lambda w: w.add_email(raw, [roles(w)[role]], (), at))


def counts(connection: sqlite3.Connection) -> dict[str, int]:
    return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in MAIL_TABLES}


def test_provides_interface(tmp_path: Path) -> None:
    """
    The store provides IMailStore.
    """
    assert verifyObject(IMailStore, SQLiteMailStore(_database(tmp_path / "x"), Clock()))


@pytest_twisted.ensureDeferred
async def test_views_provide_interfaces(store: SQLiteMailStore) -> None:
    """
    Readers provide IMailReader and writers IMailWriter.
    """
    assert await store.read(ACCOUNT, lambda r: verifyObject(IMailReader, r))
    assert await store.write(ACCOUNT, lambda w: verifyObject(IMailWriter, w))


@pytest_twisted.ensureDeferred
async def test_data_survives_restart(db_path: Path, clock: Clock) -> None:
    """
    Emails, states and the change log committed before the database stops
    are all there after it starts again.
    """
    first = _database(db_path)
    await first.start()
    store = SQLiteMailStore(first, clock)
    await store.setup_account(ACCOUNT)
    before = await store.read(ACCOUNT, lambda r: r.state("Email"))
    email = await add(store, message(subject="Kept"))
    states = await store.read(ACCOUNT, lambda r: {t: r.state(t) for t in ("Email", "Mailbox")})
    await first.stop()

    second = _database(db_path)
    await second.start()
    try:
        again = SQLiteMailStore(second, clock)
        assert await again.read(ACCOUNT, lambda r: r.emails([email.id])) == {email.id: email}
        assert (
            await again.read(ACCOUNT, lambda r: {t: r.state(t) for t in ("Email", "Mailbox")})
            == states
        )
        batch = await again.read(ACCOUNT, lambda r: r.changes("Email", before, None))
        assert batch.created == (email.id,)
        assert await again.read(ACCOUNT, lambda r: r.message(email.blob_id)) == message(
            subject="Kept"
        )
        commits: list[StoreCommit] = []
        again.subscribe(commits.append)
        await add(again, message(subject="Next"))
        assert int(commits[0].states["Email"]) > int(states["Email"])
    finally:
        await second.stop()


@pytest_twisted.ensureDeferred
async def test_failed_write_leaves_no_rows(store: SQLiteMailStore, db: SQLiteDatabase) -> None:
    """
    A write whose function raises after adding, flagging and destroying
    emails leaves every table as it was, blobs and change log included.
    """
    kept = await add(store, message(subject="Kept"))
    before = await db.read(counts)

    def broken(w: IMailWriter) -> None:
        inbox = roles(w)["inbox"]
        w.add_email(message(subject="Lost", message_id="lost@x"), [inbox], ["$seen"], 1.0)
        w.update_email(kept.id, keywords={"$flagged"})
        w.put_document("Identity", "i1", {"name": "Ann"})
        w.create_mailbox("Lost", None, None, 9, True)
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        await store.write(ACCOUNT, broken)
    assert await db.read(counts) == before
    record = (await store.read(ACCOUNT, lambda r: r.emails([kept.id])))[kept.id]
    assert record.keywords == frozenset()


@pytest_twisted.ensureDeferred
async def test_two_databases_share_a_file(db_path: Path, clock: Clock) -> None:
    """
    Two database instances on one file see each other's commits at once:
    nothing is cached in the store.
    """
    first, second = _database(db_path), _database(db_path)
    await first.start()
    await second.start()
    try:
        a, b = SQLiteMailStore(first, clock), SQLiteMailStore(second, clock)
        await a.setup_account(ACCOUNT)
        email = await add(a, message(subject="From A"))
        assert await b.read(ACCOUNT, lambda r: r.emails([email.id])) == {email.id: email}
        state = await b.read(ACCOUNT, lambda r: r.state("Email"))
        other = await add(b, message(subject="From B"))
        batch = await a.read(ACCOUNT, lambda r: r.changes("Email", state, None))
        assert batch.created == (other.id,)
        newest = [{"property": "receivedAt", "isAscending": False}]
        assert (await a.read(ACCOUNT, lambda r: r.query_emails(None, newest, False)))[1] == 2
    finally:
        await first.stop()
        await second.stop()


@pytest_twisted.ensureDeferred
async def test_prune_changes(store: SQLiteMailStore, clock: Clock) -> None:
    """
    Pruning drops the entries committed before a time: states from before
    the newest dropped entry of a type cannot be calculated, later ones
    still can, and a type whose entries were all kept keeps its states.
    """
    mailbox_state = await store.read(ACCOUNT, lambda r: r.state("Mailbox"))
    document_state = await store.read(ACCOUNT, lambda r: r.state("Identity"))
    clock.advance(100)
    old_state = await store.read(ACCOUNT, lambda r: r.state("Email"))
    await add(store, message(subject="old"))
    middle = await store.read(ACCOUNT, lambda r: r.state("Email"))
    mailbox_middle = await store.read(ACCOUNT, lambda r: r.state("Mailbox"))
    clock.advance(100)
    cutoff = clock.seconds()
    clock.advance(100)
    recent = await add(store, message(subject="recent"))
    await store.write(ACCOUNT, lambda w: w.put_document("Identity", "i1", {"name": "Ann"}))

    deleted = await store.prune_changes(cutoff)
    assert deleted == 6 + 3  # six mailboxes set up; the old email, its thread, inbox counts
    for type_name, state in (("Email", old_state), ("Mailbox", mailbox_state)):
        with pytest.raises(CannotCalculateChanges):
            await store.read(ACCOUNT, lambda r, t=type_name, s=state: r.changes(t, s, None))
    batch = await store.read(ACCOUNT, lambda r: r.changes("Email", middle, None))
    assert batch.created == (recent.id,)
    mailbox_batch = await store.read(ACCOUNT, lambda r: r.changes("Mailbox", mailbox_middle, None))
    assert mailbox_batch.counts_only
    identity = await store.read(ACCOUNT, lambda r: r.changes("Identity", document_state, None))
    assert identity.created == ("i1",)
    assert await store.prune_changes(cutoff) == 0


@pytest_twisted.ensureDeferred
async def test_parsing_and_hashing_happen_on_the_writer_thread(
    store: SQLiteMailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    add_email parses and hashes the message on the database's writer
    thread, never on the reactor's.
    """
    where: list[threading.Thread] = []

    def watched(wrapped: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        def call(raw: bytes) -> Any:
            where.append(threading.current_thread())
            return wrapped(raw)

        return call

    monkeypatch.setattr(sql_mail, "summarize", watched(sql_mail.summarize))
    monkeypatch.setattr(ids, "blob_id", watched(ids.blob_id))
    reactor_thread = threading.current_thread()
    await add(store, message())
    assert len(where) == 2
    assert all(t is not reactor_thread and "jmap-sqlite-writer" in t.name for t in where)


@pytest_twisted.ensureDeferred
async def test_listener_failure_is_logged_and_ignored(store: SQLiteMailStore) -> None:
    """
    A failing listener does not fail the write nor stop other listeners.
    """
    seen: list[StoreCommit] = []

    def broken(commit: StoreCommit) -> None:
        raise ValueError("listener bug")

    store.subscribe(broken)
    unsubscribe = store.subscribe(seen.append)
    email = await add(store, message())
    assert [e.email_ids for c in seen for e in c.events] == [(email.id,)]
    unsubscribe()
    await add(store, message(subject="again"))
    assert len(seen) == 1


def _plan(connection: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[str]:
    return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest_twisted.ensureDeferred
async def test_mailbox_listing_walks_the_index(store: SQLiteMailStore, db: SQLiteDatabase) -> None:
    """
    inMailbox sorted by receivedAt descending with a limit reads index
    email_mailboxes_by_mailbox in order (no sorting step), and its total
    is counted from an index of the mailbox's members alone.
    """
    inbox = await store.read(ACCOUNT, lambda r: roles(r)["inbox"])
    query = compile_query(
        ACCOUNT, {"inMailbox": inbox}, [{"property": "receivedAt", "isAscending": False}], False
    )
    params = dict(query.params, limit=50, offset=0)
    select_plan = await db.read(_plan, query.select, params)
    count_plan = await db.read(_plan, query.count, query.params)
    assert any("email_mailboxes_by_mailbox" in step for step in select_plan), select_plan
    assert not any("TEMP B-TREE" in step for step in select_plan), select_plan
    assert len(count_plan) == 1 and "COVERING INDEX email_mailboxes_by_" in count_plan[0]
    # Another condition joins the emails by their key, still in index order.
    flagged = compile_query(
        ACCOUNT,
        {"inMailbox": inbox, "minSize": 10},
        [{"property": "receivedAt", "isAscending": False}],
        False,
    )
    plan = await db.read(_plan, flagged.select, dict(flagged.params, limit=50, offset=0))
    assert any("email_mailboxes_by_mailbox" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


@pytest_twisted.ensureDeferred
async def test_text_search_starts_from_the_index(
    store: SQLiteMailStore, db: SQLiteDatabase
) -> None:
    """
    A text condition of three characters or more, even next to inMailbox,
    starts the query from the full-text index's matches.
    """
    inbox = await store.read(ACCOUNT, lambda r: roles(r)["inbox"])
    query = compile_query(
        ACCOUNT,
        {"operator": "AND", "conditions": [{"inMailbox": inbox}, {"text": "invoice"}]},
        [{"property": "receivedAt", "isAscending": False}],
        False,
    )
    plan = await db.read(_plan, query.select, dict(query.params, limit=50, offset=0))
    assert plan[0].startswith("SCAN f VIRTUAL TABLE"), plan
    assert "INTEGER PRIMARY KEY" in plan[1], plan


@pytest_twisted.ensureDeferred
async def test_trigram_case_folding(store: SQLiteMailStore) -> None:
    """
    Text conditions ignore case across Unicode; the one documented
    difference from the reference: for needles of three characters or
    more, characters whose full case folding expands (ß → ss) match only
    themselves.
    """
    email = await add(store, message(subject="Grüße aus der Straße"))

    def subject(needle: str) -> Any:
        return store.read(ACCOUNT, lambda r: r.query_emails({"subject": needle}, [], False)[0])

    for needle in ("GRÜßE", "grüße aus", "STRAßE", "ß", "SS", "ü", "Üß", "strassen"):
        expected = [email.id] if needle.casefold() in "grüße aus der straße".casefold() else []
        assert await subject(needle) == expected, needle
    for needle in ("strasse", "GRÜSSE"):  # the reference (str.casefold) matches these
        assert await subject(needle) == []


@pytest_twisted.ensureDeferred
async def test_changes_read_the_log_in_batches(
    store: SQLiteMailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Paging through a bulk change with a small maxChanges reads only the
    log rows it needs, a batch at a time.
    """
    monkeypatch.setattr(sql_mail, "CHANGES_BATCH", 16)

    def many(w: IMailWriter) -> list[str]:
        inbox = roles(w)["inbox"]
        return [w.add_email(message(subject=f"m{i}"), [inbox], [], float(i)).id for i in range(100)]

    since = await store.read(ACCOUNT, lambda r: r.state("Email"))
    created = await store.write(ACCOUNT, many)

    def traced(r: IMailReader, limit: int | None) -> tuple[Any, list[str]]:
        statements: list[str] = []
        connection = r._db  # type: ignore[attr-defined]
        connection.set_trace_callback(statements.append)
        try:
            batch = r.changes("Email", since, limit)
        finally:
            connection.set_trace_callback(None)
        return batch, [s for s in statements if "FROM mail_changes" in s]

    batch, reads = await store.read(ACCOUNT, lambda r: traced(r, 10))
    assert batch.created == tuple(created[:10]) and batch.has_more_changes
    assert len(reads) == 1
    batch, reads = await store.read(ACCOUNT, lambda r: traced(r, 40))
    assert batch.created == tuple(created[:40])
    assert len(reads) == 3
    batch, reads = await store.read(ACCOUNT, lambda r: traced(r, None))
    assert batch.created == tuple(created) and not batch.has_more_changes
    assert len(reads) == 7


@pytest_twisted.ensureDeferred
async def test_blob_octets_are_deleted_when_unreferenced(
    store: SQLiteMailStore, db: SQLiteDatabase, clock: Clock
) -> None:
    """
    Destroying an email deletes its octets unless another email (of any
    account) or an uploaded blob still refers to them; deleting a user
    never deletes octets an email refers to.
    """
    await store.setup_account(OTHER)

    async def blob_exists(blob_id: str) -> bool:
        return await db.read(_has_blob, blob_id)

    lonely = await add(store, message(subject="lonely"))
    await store.write(ACCOUNT, lambda w: w.destroy_email(lonely.id))
    assert not await blob_exists(lonely.blob_id)

    shared = message(subject="shared")
    mine = await add(store, shared)
    theirs = await store.write(OTHER, lambda w: w.add_email(shared, [roles(w)["inbox"]], (), 1.0))
    await store.write(ACCOUNT, lambda w: w.destroy_email(mine.id))
    assert await blob_exists(mine.blob_id)
    assert await store.read(OTHER, lambda r: r.message(theirs.blob_id)) == shared
    assert await store.read(ACCOUNT, lambda r: r.message(mine.blob_id)) is None

    directory = SQLiteDirectory(db, clock)
    user = await directory.create_user("ann", None)
    (account,) = await directory.accounts_for_user(user.id)
    uploaded = message(subject="uploaded")
    await SQLiteBlobStore(db, clock).put(account.id, uploaded, "message/rfc822")
    imported = await add(store, uploaded)
    await store.write(ACCOUNT, lambda w: w.destroy_email(imported.id))
    assert await blob_exists(imported.blob_id)  # still uploaded by ann

    both = await add(store, uploaded)
    await directory.delete_user("ann")
    assert await store.read(ACCOUNT, lambda r: r.message(both.blob_id)) == uploaded


def _has_blob(connection: sqlite3.Connection, blob_id: str) -> bool:
    return connection.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone() is not None


@pytest_twisted.ensureDeferred
async def test_documents(store: SQLiteMailStore) -> None:
    """
    JSON documents are stored per type, replaced, deleted, and recorded in
    their type's change log; inside a write, state() already reports the
    state the write will commit.
    """
    before = await store.read(ACCOUNT, lambda r: r.state("Identity"))

    def put(w: IMailWriter) -> str:
        w.put_document("Identity", "i1", {"name": "Ann", "email": "ann@example.com"})
        w.put_document("Identity", "i2", {"name": "Bob"})
        return w.state("Identity")

    pending = await store.write(ACCOUNT, put)
    assert pending == await store.read(ACCOUNT, lambda r: r.state("Identity"))
    assert await store.read(ACCOUNT, lambda r: r.documents("Identity")) == {
        "i1": {"name": "Ann", "email": "ann@example.com"},
        "i2": {"name": "Bob"},
    }
    middle = pending
    await store.write(ACCOUNT, lambda w: w.put_document("Identity", "i1", {"name": "Anne"}))
    await store.write(ACCOUNT, lambda w: w.delete_document("Identity", "i2"))
    batch = await store.read(ACCOUNT, lambda r: r.changes("Identity", middle, None))
    assert (batch.updated, batch.destroyed) == (("i1",), ("i2",))
    assert (await store.read(ACCOUNT, lambda r: r.changes("Identity", before, None))).created == (
        "i1",
    )
    with pytest.raises(KeyError):
        await store.write(ACCOUNT, lambda w: w.delete_document("Identity", "i2"))
    assert await store.read(ACCOUNT, lambda r: r.documents("Other")) == {}


# Agreement with the in-memory reference.

_ATTACHMENT = (
    b"From: Carol <carol@example.org>\r\n"
    b"To: Ann <ann@example.com>\r\n"
    b"Subject: Report attached\r\n"
    b"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n"
    b"Message-ID: <att@x>\r\n"
    b"X-Tracker: Ticket 4711\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"See the quarterly figures attached.\r\n"
    b"--b1\r\n"
    b'Content-Type: application/pdf; name="q3.pdf"\r\n'
    b'Content-Disposition: attachment; filename="q3.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)


def _corpus() -> list[tuple[bytes, tuple[str, ...], tuple[str, ...], float]]:
    """
    (message, mailbox roles, keywords, receivedAt) of a varied mailbox.
    """
    return [
        (
            message(subject="Plans", message_id="p1@x", body="Lunch at noon?"),
            ("inbox",),
            ("$seen",),
            100.0,
        ),
        (
            message(
                subject="Re: Plans",
                message_id="p2@x",
                in_reply_to="p1@x",
                sender="Bob <bob@example.net>",
                body="Yes, noon works.",
            ),
            ("inbox",),
            (),
            200.0,
        ),
        (
            message(
                subject="RE: plans",
                message_id="p3@x",
                in_reply_to="p2@x",
                to="ann@example.com, Zoë <zoe@example.com>",
            ),
            ("trash",),
            (),
            300.0,
        ),
        (
            message(
                subject="Ärger im Büro",
                message_id="u1@x",
                sender="Jürgen <j@example.de>",
                body="Grüße aus Köln",
            ),
            ("inbox", "archive"),
            ("$flagged",),
            300.0,
        ),
        (
            message(
                subject="Invoice 42",
                message_id="i1@x",
                extra="Cc: Accounts <acc@example.com>",
                date="Mon, 01 Jan 2024 00:00:00 +0000",
            ),
            ("archive",),
            ("$seen", "$flagged"),
            50.0,
        ),
        (
            message(
                subject="Fwd: Invoice 42",
                message_id="i2@x",
                in_reply_to="i1@x",
                extra="Bcc: boss@example.com",
            ),
            ("sent",),
            ("$seen",),
            400.0,
        ),
        (
            message(subject="ab", message_id="s1@x", body="x" * 300, date="bad date"),
            ("junk",),
            (),
            250.0,
        ),
        (
            message(
                subject='quote "this" 100%_done', message_id="q1@x", body="under_score and 50% off"
            ),
            ("inbox",),
            ("$seen",),
            250.0,
        ),
        (_ATTACHMENT, ("inbox", "trash"), (), 260.0),
        (message(subject="Lonely trash", message_id="t1@x"), ("trash",), ("$seen",), 10.0),
        (
            message(subject="Plans", message_id="p4@x", sender="eve@example.com"),
            ("drafts",),
            ("$draft",),
            200.0,
        ),
    ]


def _queries(boxes: dict[str, str]) -> list[tuple[Any, list[dict[str, Any]], bool]]:
    newest = [{"property": "receivedAt", "isAscending": False}]
    filters: list[Any] = [
        None,
        {},
        {"inMailbox": boxes["inbox"]},
        {"inMailbox": boxes["trash"]},
        {"inMailbox": "m-nonexistent"},
        {"inMailboxOtherThan": [boxes["trash"], boxes["junk"]]},
        {"inMailboxOtherThan": []},
        {"before": 250.0},
        {"after": 250.0},
        {"after": 100.0, "before": 300.0, "inMailbox": boxes["inbox"]},
        {"minSize": 300},
        {"maxSize": 300},
        {"hasKeyword": "$seen"},
        {"notKeyword": "$seen"},
        {"allInThreadHaveKeyword": "$seen"},
        {"someInThreadHaveKeyword": "$seen"},
        {"noneInThreadHaveKeyword": "$seen"},
        {"someInThreadHaveKeyword": "$flagged", "inMailbox": boxes["archive"]},
        {"hasAttachment": True},
        {"hasAttachment": False},
        {"from": "bob"},
        {"from": "BOB@EXAMPLE"},
        {"from": "b"},
        {"from": "jü"},
        {"from": "JÜRGEN"},
        {"to": "zoë"},
        {"to": "zo"},
        {"cc": "accounts"},
        {"bcc": "boss"},
        {"bcc": "b"},
        {"subject": "plans"},
        {"subject": "re: p"},
        {"subject": "ärger"},
        {"subject": "äR"},
        {"subject": '"this"'},
        {"subject": "100%_"},
        {"subject": "%"},
        {"subject": "_"},
        {"subject": ""},
        {"body": "noon"},
        {"body": "NOON WORKS"},
        {"body": "grüße"},
        {"body": "xx"},
        {"body": "50% off"},
        {"body": "q3.pdf"},
        {"text": "example.net"},
        {"text": "invoice"},
        {"text": "ab"},
        {"text": "z"},
        {"text": "nothing-like-this"},
        {"header": ["X-Tracker"]},
        {"header": ["x-tracker", "4711"]},
        {"header": ["X-Tracker", "nope"]},
        {"header": ["Message-ID", "P1@"]},
        {"operator": "AND", "conditions": [{"inMailbox": boxes["inbox"]}, {"notKeyword": "$seen"}]},
        {"operator": "AND", "conditions": [{"hasKeyword": "$seen"}, {"inMailbox": boxes["inbox"]}]},
        {"operator": "OR", "conditions": [{"inMailbox": boxes["trash"]}, {"subject": "invoice"}]},
        {"operator": "NOT", "conditions": [{"inMailbox": boxes["inbox"]}, {"from": "bob"}]},
        {"operator": "AND", "conditions": []},
        {"operator": "OR", "conditions": []},
        {"operator": "NOT", "conditions": []},
        {
            "operator": "OR",
            "conditions": [
                {"operator": "AND", "conditions": [{"text": "plans"}, {"before": 250.0}]},
                {"operator": "NOT", "conditions": [{"text": "e"}]},
            ],
        },
    ]
    sorts: list[list[dict[str, Any]]] = [
        [],
        newest,
        [{"property": "receivedAt"}],
        [{"property": "size"}],
        [{"property": "size", "isAscending": False}],
        [{"property": "from"}],
        [{"property": "to", "isAscending": False}],
        [{"property": "subject"}, {"property": "receivedAt", "isAscending": False}],
        [{"property": "sentAt"}],
        [{"property": "sentAt", "isAscending": False}],
        [{"property": "hasKeyword", "keyword": "$seen"}, *newest],
        [{"property": "allInThreadHaveKeyword", "keyword": "$seen", "isAscending": False}],
        [{"property": "someInThreadHaveKeyword", "keyword": "$flagged"}, {"property": "size"}],
    ]
    queries = [(f, newest, c) for f in filters for c in (False, True)]
    queries += [(None, s, c) for s in sorts for c in (False, True)]
    queries += [({"inMailbox": boxes["inbox"]}, s, c) for s in sorts for c in (False, True)]
    return queries


async def _fill(store: IMailStore) -> dict[str, str]:
    await store.setup_account(ACCOUNT)
    await store.setup_account(OTHER)
    boxes = await store.read(ACCOUNT, roles)
    created = []
    for raw, where, keywords, at in _corpus():
        record = await store.write(
            ACCOUNT,
            lambda w, raw=raw, where=where, keywords=keywords, at=at: w.add_email(
                raw, [boxes[r] for r in where], keywords, at
            ),
            delivery=True,
        )
        created.append(record)
    await store.write(
        OTHER, lambda w: w.add_email(message(subject="Plans"), [roles(w)["inbox"]], (), 1.0)
    )
    await store.write(
        ACCOUNT, lambda w: w.update_email(created[1].id, keywords={"$seen", "$flagged"})
    )
    await store.write(
        ACCOUNT,
        lambda w: w.update_email(created[0].id, mailbox_ids={boxes["inbox"], boxes["archive"]}),
    )
    await store.write(ACCOUNT, lambda w: w.destroy_email(created[5].id))
    lists = await store.write(ACCOUNT, lambda w: w.create_mailbox("Lists", None, None, 10, False))
    await store.write(ACCOUNT, lambda w: w.update_mailbox(lists.id, name="Mailing lists"))
    boxes["lists"] = lists.id
    return boxes


@pytest.fixture
def deterministic_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """
    Make new mailbox, email and thread ids a predictable sequence; the
    returned function restarts it.
    """
    counter = itertools.count()

    def restart() -> None:
        nonlocal counter
        counter = itertools.count()

    monkeypatch.setattr(ids, "new_mailbox_id", lambda: f"m{next(counter):04d}")
    monkeypatch.setattr(ids, "new_email_id", lambda: f"e{1000 - next(counter):04d}")
    monkeypatch.setattr(ids, "new_thread_id", lambda: f"T{next(counter):04d}")
    return restart


@pytest_twisted.ensureDeferred
async def test_agrees_with_the_reference(
    db: SQLiteDatabase, deterministic_ids: Callable[[], None]
) -> None:
    """
    Given the same operations, the SQLite store answers every query,
    count, thread, record, state and change request exactly as the
    in-memory reference does.
    """
    from twisted.internet import reactor

    reference = MemoryMailStore(reactor)
    boxes = await _fill(reference)
    deterministic_ids()
    sqlite = SQLiteMailStore(db, reactor)
    assert await _fill(sqlite) == boxes

    def snapshot(reader: IMailReader) -> dict[str, Any]:
        everything, _ = reader.query_emails(None, [], False)
        records = reader.emails([*everything, "e-nope"])
        return {
            "mailboxes": reader.mailboxes(),
            "counts": reader.mailbox_counts([*boxes.values(), "m-nope"]),
            "records": records,
            "threads": reader.thread_emails({r.thread_id for r in records.values()}),
            "states": {t: reader.state(t) for t in ("Mailbox", "Email", "Thread", "Identity")},
            "changes": {
                (t, since, limit): reader.changes(t, str(since), limit)
                for t in ("Mailbox", "Email", "Thread")
                for since in range(0, int(reader.state(t)) + 1)
                for limit in (None, 1, 3)
            },
            "messages": {i: reader.message(r.blob_id) for i, r in records.items()},
        }

    assert await sqlite.read(ACCOUNT, snapshot) == await reference.read(ACCOUNT, snapshot)
    assert await sqlite.read(OTHER, snapshot) == await reference.read(OTHER, snapshot)

    mismatches = []
    checked = nonempty = 0
    for filter, sort, collapse in _queries(boxes):
        for window in ((0, None), (1, 2), (100, 5)):

            def query(r: IMailReader, f=filter, s=sort, c=collapse, w=window) -> Any:
                return r.query_emails(f, s, c, *w)

            expected = await reference.read(ACCOUNT, query)
            actual = await sqlite.read(ACCOUNT, query)
            checked += 1
            nonempty += bool(expected[0])
            if actual != expected:
                mismatches.append((filter, sort, collapse, window, expected, actual))
    assert mismatches == []
    assert checked > 500 and nonempty > checked // 3


@pytest_twisted.ensureDeferred
async def test_pruner_service_prunes_by_retention(tmp_path: Any) -> None:
    """
    The pruner deletes entries older than the retention period, so states
    from before it answer cannotCalculateChanges, and keeps recent ones.
    """
    from twisted.internet import reactor
    from twisted.internet.task import Clock

    from jmap_twisted.errors import CannotCalculateChanges
    from jmap_twisted.service import ChangeLogPruner
    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.mail import SQLiteMailStore

    clock = Clock()
    clock.advance(1_000_000)
    db = SQLiteDatabase(str(tmp_path / "p.sqlite3"), reactor)
    await db.start()
    try:
        store = SQLiteMailStore(db, clock)
        await store.setup_account("acct")
        old = await store.read("acct", lambda r: r.state("Mailbox"))
        clock.advance(2 * 86400)
        await store.write("acct", lambda w: w.create_mailbox("New", None, None, 0, True))
        recent = await store.read("acct", lambda r: r.state("Mailbox"))
        pruner = ChangeLogPruner(store, clock, retention_days=1)
        await pruner.prune()
        with pytest.raises(CannotCalculateChanges):
            await store.read("acct", lambda r: r.changes("Mailbox", "0", None))
        assert await store.read("acct", lambda r: r.changes("Mailbox", recent, None).created) == ()
        assert old != recent
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_cancelled_write_still_commits_and_publishes(store: SQLiteMailStore) -> None:
    """
    Cancelling a write's Deferred (its client went away) fails it for the
    caller at once, but the write commits and its StoreCommit is still
    published to subscribers; an account's reads go on as before.
    """
    from twisted.internet.defer import CancelledError, Deferred

    published: Deferred[StoreCommit] = Deferred()
    store.subscribe(lambda commit: published.called or published.callback(commit))
    release = threading.Event()

    def slow_add(writer: IMailWriter) -> Any:
        release.wait(30)
        return writer.add_email(message(subject="kept"), [roles(writer)["inbox"]], (), 1.0)

    writing = store.write(ACCOUNT, slow_add)
    writing.cancel()
    release.set()
    with pytest.raises(CancelledError):
        await writing
    commit = await published
    assert commit.account_id == ACCOUNT
    total = await store.read(ACCOUNT, lambda r: r.query_emails(None, [], False)[1])
    assert total == 1


@pytest_twisted.ensureDeferred
async def test_prune_drops_the_mailboxes_of_pruned_entries_only(
    store: SQLiteMailStore, db: SQLiteDatabase, clock: Clock
) -> None:
    """
    Pruning deletes the mailboxes the pruned entries concern with them,
    keeps those of the entries it keeps, and never deletes high-water
    marks.
    """
    await add(store, message(subject="old"))
    clock.advance(100)
    cutoff = clock.seconds()
    await add(store, message(subject="recent"), role="archive")
    before = await db.read(counts)
    assert await store.prune_changes(cutoff) == 6 + 3
    after = await db.read(counts)
    # Six mailboxes set up, the old email, its thread and the inbox's counts.
    assert after["mail_change_mailboxes"] == before["mail_change_mailboxes"] - (6 + 3)
    assert after["mail_change_mailboxes"] == after["mail_changes"] == 3
    assert after["mail_mailbox_states"] == before["mail_mailbox_states"] > 0


@pytest_twisted.ensureDeferred
async def test_view_changes_read_whole_entries_across_batches(
    store: SQLiteMailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A sharee's changes are read in batches of rows; an entry whose
    mailboxes straddle a batch's end is read whole: emails moved between
    mailboxes the sharee reads are updated for them (never created or
    destroyed, as a part of their mailboxes would say), each once, with
    every page's state exact.
    """
    # Three mailboxes per entry: a batch of four ends one row into an entry.
    monkeypatch.setattr(sql_mail, "CHANGES_BATCH", 4)
    ids = await store.read(ACCOUNT, roles)
    shared = [ids["inbox"], ids["archive"], ids["junk"]]
    view = MailView(1, 0, frozenset(shared), frozenset(shared), frozenset())

    def many(w: IMailWriter) -> list[str]:
        return [
            w.add_email(message(subject=f"m{i}"), [ids["archive"]], (), float(i)).id
            for i in range(7)
        ]

    moved = await store.write(ACCOUNT, many)
    since = start = await store.read(ACCOUNT, lambda r: r.view_state("Email", view))

    def move(w: IMailWriter) -> None:
        for email_id in moved:
            w.update_email(email_id, mailbox_ids={ids["inbox"], ids["junk"]})

    await store.write(ACCOUNT, move)
    batch = await store.read(ACCOUNT, lambda r: r.view_changes("Email", start, None, view))
    assert (batch.created, batch.updated, batch.destroyed) == ((), tuple(moved), ())
    seen: list[str] = []
    while True:
        page = await store.read(ACCOUNT, lambda r, s=since: r.view_changes("Email", s, 3, view))
        assert page.created == page.destroyed == ()
        seen.extend(page.updated)
        since = page.new_state
        if not page.has_more_changes:
            break
    assert seen == moved


@pytest_twisted.ensureDeferred
async def test_a_sharees_query_of_one_mailbox_walks_it(
    store: SQLiteMailStore, db: SQLiteDatabase
) -> None:
    """
    The server's inAnyMailbox of a single mailbox (a sharee reading one
    shared mailbox) walks that mailbox's index like inMailbox.
    """
    inbox = await store.read(ACCOUNT, lambda r: roles(r)["inbox"])
    query = compile_query(
        ACCOUNT,
        {"inAnyMailbox": frozenset({inbox})},
        [{"property": "receivedAt", "isAscending": False}],
        False,
    )
    plan = await db.read(_plan, query.select, dict(query.params, limit=50, offset=0))
    assert any("email_mailboxes_by_mailbox" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
