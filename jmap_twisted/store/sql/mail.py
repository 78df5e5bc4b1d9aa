"""
What every SQL mail store shares: the reader and writer over one account
(:class:`SQLReader`, :class:`SQLWriter`), the change-log bookkeeping of a
write (:func:`record_commit`), pruning, and the store itself
(:class:`SQLMailStore`: subscribers, publishing after the commit).

The SQL here uses ``?`` placeholders and constructs both SQLite and
PostgreSQL accept; each backend subclasses the reader and writer for what
differs: where the searchable text lives and how a query is compiled
(:mod:`jmap_twisted.store.sqlite.mail`, :mod:`jmap_twisted.store.postgres.mail`).

- :meth:`SQLMailStore.write` runs the caller's function and the change-log
  bookkeeping in one transaction in a database thread: the mail, its
  change-log rows, the account's ``seq``/``modseq`` and the type states are
  durable together or not at all.  Parsing and hashing of new messages
  happen there too, never on the reactor thread.  Once the commit is
  durable, the :class:`~jmap_twisted.records.StoreCommit` is published on
  the reactor thread, then the caller's Deferred fires.
- :meth:`SQLMailStore.read` runs the caller's function in a read
  transaction against one snapshot.  Inside a write, ``state()`` reports
  the state the write will commit, as the reference does.
- Other JSON documents (``Identity``, ``VacationResponse``, …) live in
  ``mail_documents`` and share the change log.
- Mailbox counts (:mod:`jmap_twisted.store.counters`) are counters:
  columns of the ``mailboxes`` row, kept from per-thread tallies (rows of
  ``mailbox_threads`` per thread and mailbox, of ``thread_unread`` per
  thread), all changed by the writer in the transaction of every change
  of an email's mailboxes or ``$seen``; reading them is one indexed
  lookup.  :meth:`SQLMailStore.recount` recomputes them from the emails.
- Quotas (:mod:`jmap_twisted.store.quota`): an account's usage (octets and
  messages) and limits are columns of its ``mail_accounts`` row.  Adding
  an email reads them, refuses the email past a limit, and adds to them
  in the same transaction; destroying one takes from them.  The account's
  writers being serialised, the usage read is the latest.
- Nothing is cached in the process: several processes or server nodes may
  share the database.
- Message octets go to the shared, content-addressed ``blobs`` table.  The
  emails refer to them directly (not through ``account_blobs``, whose rows
  need a directory account); octets are deleted when neither an email nor
  an ``account_blobs`` row refers to them any more.
- :meth:`SQLMailStore.prune_changes` drops change-log rows older than a
  time.  Each type remembers the newest position it dropped (``oldest``), so
  only states older than that answer ``cannotCalculateChanges``: a type
  that did not change for a while keeps its state usable.
- Sharees' views (:mod:`jmap_twisted.store.changelog`): the mailboxes an
  entry concerns are rows of ``mail_change_mailboxes`` (pruned with their
  entry), its audience a column of ``mail_changes``, and the high-water
  marks rows of ``mail_mailbox_states`` (never pruned), all written in the
  operation's transaction.  A view's state is one ``MAX`` over the marks'
  primary key for its mailboxes; its changes join the entries to their
  rows for its mailboxes, in batches.
"""

# SQL is assembled from fixed fragments and placeholder lists only; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from attrs import evolve
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.interfaces import (
    IChangeLogPruning,
    IMailboxCounters,
    IMailReader,
    IMailStore,
    IMailWriter,
)
from jmap_twisted.records import (
    AccountQuota,
    ChangeBatch,
    EmailRecord,
    EmailSummary,
    MailboxCounts,
    MailboxEvent,
    MailboxRecord,
    MailboxRecount,
    MailView,
    Recount,
    StoreCommit,
)
from jmap_twisted.store import counters, ids
from jmap_twisted.store import quota as quotas
from jmap_twisted.store.changelog import (
    ADMINS,
    EVERYONE,
    VIEWS,
    ChangeRecorder,
    CommitListeners,
    LogEntry,
    changes_for_view,
    decode_state,
    encode_state,
    high_water_marks,
    merge_changes,
    sharee_state,
    touched,
    view_pools,
)
from jmap_twisted.store.counters import Membership, ThreadTally
from jmap_twisted.store.mailmodel import (
    STANDARD_MAILBOXES,
    record_email_added,
    record_email_destroyed,
    record_email_updated,
)
from jmap_twisted.store.sql.query import QueryCompiler, SQLConnection, run_query
from jmap_twisted.store.sql.threaded import frees_space
from jmap_twisted.store.summary import summarize

log = Logger()
T = TypeVar("T")

SEEN = "$seen"

#: How many change-log rows :meth:`SQLReader.changes` fetches at a time.
CHANGES_BATCH = 256

#: The most ids put in one ``IN (…)`` list.
_CHUNK = 500

_MAILBOX_COLUMNS = "id, name, parent_id, role, sort_order, is_subscribed"

#: The ``mailboxes`` columns of a :class:`MailboxCounts`, in order.
_COUNT_COLUMNS = "total_emails, unread_emails, total_threads, unread_threads"

#: A thread without emails.
_NO_THREAD = ThreadTally()

#: What :meth:`SQLWriter._trash` holds before it looks.
_UNKNOWN = object()

#: The ``emails`` columns of an :class:`EmailRecord` (the body text comes last).
EMAIL_COLUMNS = (
    "e.id, e.blob_id, e.thread_id, e.size, e.received_at, e.subject, e.base_subject,"
    " e.from_text, e.to_text, e.cc_text, e.bcc_text, e.from_sort, e.to_sort, e.sent_at,"
    " e.preview, e.has_attachment, e.message_ids, e.in_reply_to, e.refs"
)


class Database(Protocol):
    """
    What the store uses of its database: one write transaction (``run``)
    or read transaction (``read``; ``read_for`` for one account's data, in
    the account's fair share of the readers) per call, in a database thread.
    """

    def run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def run_for(self, owner: str, fn: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def read(self, fn: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def read_for(self, owner: str, fn: Callable[..., T], *args: Any) -> Deferred[T]: ...


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _mailbox(row: Sequence[Any]) -> MailboxRecord:
    mailbox_id, name, parent_id, role, sort_order, is_subscribed = row
    return MailboxRecord(mailbox_id, name, parent_id, role, sort_order, bool(is_subscribed))


def _summary(row: Sequence[Any]) -> EmailSummary:
    return EmailSummary(
        message_ids=tuple(json.loads(row[16])),
        in_reply_to=tuple(json.loads(row[17])),
        references=tuple(json.loads(row[18])),
        subject=row[5],
        base_subject=row[6],
        from_text=row[7],
        to_text=row[8],
        cc_text=row[9],
        bcc_text=row[10],
        from_sort=row[11],
        to_sort=row[12],
        sent_at=row[13],
        preview=row[14],
        has_attachment=bool(row[15]),
        body_text=row[19] or "",
    )


def _values(counts: MailboxCounts) -> tuple[int, int, int, int]:
    """
    The four counts, in the order of :data:`_COUNT_COLUMNS`.
    """
    return (counts.total_emails, counts.unread_emails, counts.total_threads, counts.unread_threads)


def _mentioned(summary: EmailSummary) -> list[str]:
    return sorted({*summary.message_ids, *summary.in_reply_to, *summary.references})


@implementer(IMailReader)
class SQLReader:
    """
    One account's mail seen through a connection inside a transaction.

    Subclasses say where the body text is read from (:attr:`EMAIL_FROM`)
    and how queries are compiled (:attr:`QUERY_COMPILER`) and run
    (:meth:`_query_connection`).
    """

    #: The ``FROM`` clause of :data:`EMAIL_COLUMNS` and the body text.
    EMAIL_FROM = ""

    #: Compiles ``Email/query`` in the backend's dialect.
    QUERY_COMPILER: type[QueryCompiler] = QueryCompiler

    def __init__(self, connection: SQLConnection, account_id: str) -> None:
        self.account_id = account_id
        self._db = connection

    def mailboxes(self) -> list[MailboxRecord]:
        rows = self._db.execute(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? ORDER BY num",
            (self.account_id,),
        )
        return [_mailbox(row) for row in rows]

    def _mailbox_record(self, mailbox_id: str) -> MailboxRecord:
        row = self._db.execute(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND id = ?",
            (self.account_id, mailbox_id),
        ).fetchone()
        if row is None:
            raise KeyError(mailbox_id)
        return _mailbox(row)

    def _trash_id(self) -> str | None:
        row = self._db.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND role = 'trash' ORDER BY num LIMIT 1",
            (self.account_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    def mailbox_counts(self, mailbox_ids: Collection[str]) -> dict[str, MailboxCounts]:
        # The counters of every mailbox of the account: one index range.
        kept = {
            mailbox_id: MailboxCounts(*(int(count) for count in counts))
            for mailbox_id, *counts in self._db.execute(
                f"SELECT id, {_COUNT_COLUMNS} FROM mailboxes WHERE account_id = ?",
                (self.account_id,),
            )
        }
        return {m: kept[m] for m in mailbox_ids if m in kept}

    def emails(self, email_ids: Collection[str]) -> dict[str, EmailRecord]:
        wanted = list(dict.fromkeys(email_ids))
        rows: dict[str, Sequence[Any]] = {}
        mailboxes: dict[str, set[str]] = {}
        keywords: dict[str, set[str]] = {}
        for chunk in _chunks(wanted):
            params = (self.account_id, *chunk)
            marks = _marks(len(chunk))
            for row in self._db.execute(
                f"SELECT {EMAIL_COLUMNS} {self.EMAIL_FROM}"
                f" WHERE e.account_id = ? AND e.id IN ({marks})",
                params,
            ):
                rows[row[0]] = row
            for email_id, mailbox_id in self._db.execute(
                "SELECT email_id, mailbox_id FROM email_mailboxes"
                f" WHERE account_id = ? AND email_id IN ({marks})",
                params,
            ):
                mailboxes.setdefault(email_id, set()).add(mailbox_id)
            for email_id, keyword in self._db.execute(
                "SELECT email_id, keyword FROM email_keywords"
                f" WHERE account_id = ? AND email_id IN ({marks})",
                params,
            ):
                keywords.setdefault(email_id, set()).add(keyword)
        return {
            email_id: EmailRecord(
                id=email_id,
                blob_id=row[1],
                thread_id=row[2],
                mailbox_ids=frozenset(mailboxes.get(email_id, ())),
                keywords=frozenset(keywords.get(email_id, ())),
                size=row[3],
                received_at=row[4],
                summary=_summary(row),
            )
            for email_id in wanted
            if (row := rows.get(email_id)) is not None
        }

    def _email(self, email_id: str) -> EmailRecord:
        found = self.emails([email_id])
        if email_id not in found:
            raise KeyError(email_id)
        return found[email_id]

    def thread_emails(self, thread_ids: Collection[str]) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(thread_ids))
        members: dict[str, list[str]] = {}
        for chunk in _chunks(wanted):
            for thread_id, email_id in self._db.execute(
                "SELECT thread_id, id FROM emails"
                f" WHERE account_id = ? AND thread_id IN ({_marks(len(chunk))})"
                " ORDER BY thread_id, received_at, id",
                (self.account_id, *chunk),
            ):
                members.setdefault(thread_id, []).append(email_id)
        return {t: members[t] for t in wanted if t in members}

    def query_emails(
        self,
        filter: Mapping[str, Any] | None,
        sort: Sequence[Mapping[str, Any]],
        collapse_threads: bool,
        position: int = 0,
        limit: int | None = None,
    ) -> tuple[list[str], int]:
        return run_query(
            self._query_connection(),
            self.QUERY_COMPILER,
            self.account_id,
            filter,
            sort,
            collapse_threads,
            position,
            limit,
        )

    def _query_connection(self) -> Any:
        """
        The driver's connection, which compiled queries (with the dialect's
        named parameters) run on.
        """
        raise NotImplementedError

    def _type_state(self, type_name: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT seq, oldest FROM mail_states WHERE account_id = ? AND type = ?",
            (self.account_id, type_name),
        ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def state(self, type_name: str) -> str:
        return encode_state(self._type_state(type_name)[0])

    def changes(self, type_name: str, since_state: str, max_changes: int | None) -> ChangeBatch:
        current, oldest = self._type_state(type_name)
        since = decode_state(since_state, current, oldest)
        return merge_changes(self._log(type_name, since), since, current, max_changes)

    def _log(self, type_name: str, since: int) -> Iterator[LogEntry]:
        """
        The type's log entries after ``since``, fetched in batches as the
        consumer asks for them.
        """
        after = since
        while True:
            rows = self._db.execute(
                "SELECT seq, object_id, kind, counts_only FROM mail_changes"
                " WHERE account_id = ? AND type = ? AND seq > ? AND audience <> ?"
                " ORDER BY seq LIMIT ?",
                (self.account_id, type_name, after, VIEWS, CHANGES_BATCH),
            ).fetchall()
            for seq, object_id, kind, counts_only in rows:
                yield LogEntry(seq, type_name, object_id, kind, bool(counts_only))
            if len(rows) < CHANGES_BATCH:
                return
            after = rows[-1][0]

    def _view_position(self, type_name: str, view: MailView) -> int:
        common, admin = view_pools(type_name, view)
        best = 0
        for pool, audiences in ((common, (EVERYONE, VIEWS)), (admin, (ADMINS,))):
            for chunk in _chunks(sorted(pool)):
                (found,) = self._db.execute(
                    "SELECT MAX(seq) FROM mail_mailbox_states"
                    " WHERE account_id = ? AND type = ?"
                    f" AND mailbox_id IN ({_marks(len(chunk))})"
                    f" AND audience IN ({_marks(len(audiences))})",
                    (self.account_id, type_name, *chunk, *audiences),
                ).fetchone()
                if found is not None:
                    best = max(best, int(found))
        return best

    def view_state(self, type_name: str, view: MailView) -> str:
        return sharee_state(type_name, view, self._view_position(type_name, view))

    def view_changes(
        self, type_name: str, since_state: str, max_changes: int | None, view: MailView
    ) -> ChangeBatch:
        return changes_for_view(
            type_name,
            since_state,
            max_changes,
            view,
            current=self._view_position(type_name, view),
            oldest=self._type_state(type_name)[1],
            entries=lambda after: self._view_log(type_name, after, view),
            readable_threads=lambda ids: self._readable_threads(ids, view.readable),
            mailbox_ids=lambda: [m.id for m in self.mailboxes()],
        )

    def _view_log(self, type_name: str, since: int, view: MailView) -> Iterator[LogEntry]:
        """
        The type's entries after ``since`` that concern the view's
        mailboxes, with only those mailboxes, fetched in batches as the
        consumer asks for them.
        """
        common, admin = view_pools(type_name, view)
        if not common:
            return
        # One IN list each: a view of more shared mailboxes than the
        # database takes parameters is not supported.
        admin_only = f" OR x.mailbox_id IN ({_marks(len(admin))})" if admin else ""
        sql = (
            "SELECT x.seq, c.object_id, c.kind, c.counts_only, c.audience,"
            " x.mailbox_id, x.was_in, x.is_in"
            " FROM mail_change_mailboxes x JOIN mail_changes c"
            " ON c.account_id = x.account_id AND c.seq = x.seq"
            " WHERE x.account_id = ? AND x.type = ? AND x.seq {}"
            f" AND x.mailbox_id IN ({_marks(len(common))})"
            f" AND (c.audience <> ?{admin_only})"
            " ORDER BY x.seq, x.mailbox_id"
        )
        pools = (*sorted(common), ADMINS, *sorted(admin))
        after = since
        while True:
            rows = self._db.execute(
                sql.format("> ?") + " LIMIT ?",
                (self.account_id, type_name, after, *pools, CHANGES_BATCH),
            ).fetchall()
            full = len(rows) == CHANGES_BATCH
            if full:
                # The last entry's rows may go on past the batch: read them whole.
                last = rows[-1][0]
                rows = [row for row in rows if row[0] != last]
                rows += self._db.execute(
                    sql.format("= ?"), (self.account_id, type_name, last, *pools)
                ).fetchall()
            entry: LogEntry | None = None
            for seq, object_id, kind, counts_only, audience, mailbox_id, was, is_in in rows:
                concern = (mailbox_id, bool(was), bool(is_in))
                if entry is not None and entry.seq == seq:
                    entry = entry._replace(mailboxes=(*entry.mailboxes, concern))
                    continue
                if entry is not None:
                    yield entry
                entry = LogEntry(
                    seq, type_name, object_id, kind, bool(counts_only), audience, (concern,)
                )
            if entry is not None:
                yield entry
            if not full:
                return
            after = rows[-1][0]

    def _readable_threads(self, thread_ids: Collection[str], readable: Collection[str]) -> set[str]:
        """
        Which of ``thread_ids`` have an email in a mailbox of ``readable``.
        """
        found: set[str] = set()
        mailboxes = sorted(readable)
        if not mailboxes:
            return found
        for chunk in _chunks(sorted(thread_ids)):
            rows = self._db.execute(
                "SELECT DISTINCT thread_id FROM email_mailboxes WHERE account_id = ?"
                f" AND thread_id IN ({_marks(len(chunk))})"
                f" AND mailbox_id IN ({_marks(len(mailboxes))})",
                (self.account_id, *chunk, *mailboxes),
            )
            found.update(thread_id for (thread_id,) in rows)
        return found

    def message(self, blob_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM blobs WHERE id = ?"
            " AND EXISTS (SELECT 1 FROM emails WHERE blob_id = ? AND account_id = ?)",
            (blob_id, blob_id, self.account_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def documents(self, type_name: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, document FROM mail_documents WHERE account_id = ? AND type = ?"
            " ORDER BY num",
            (self.account_id, type_name),
        )
        return {document_id: json.loads(document) for document_id, document in rows}

    def quota(self) -> AccountQuota:
        row = self._db.execute(
            "SELECT used_octets, used_messages, storage_limit, message_limit"
            " FROM mail_accounts WHERE account_id = ?",
            (self.account_id,),
        ).fetchone()
        if row is None:
            return AccountQuota()
        used_octets, used_messages, storage_limit, message_limit = row
        return AccountQuota(
            int(used_octets),
            int(used_messages),
            None if storage_limit is None else int(storage_limit),
            None if message_limit is None else int(message_limit),
        )


@implementer(IMailWriter)
class SQLWriter(SQLReader):
    """
    One account's mail inside a write transaction; records what changes.

    Subclasses store an email's row and its searchable text
    (:meth:`_insert_email`) and delete them (:meth:`_delete_email`).
    """

    def __init__(
        self, connection: SQLConnection, account_id: str, recorder: ChangeRecorder
    ) -> None:
        super().__init__(connection, account_id)
        self._recorder = recorder
        self._trash_cache: object = _UNKNOWN

    def begin(self) -> None:
        """
        Called once at the start of the write transaction, before the
        caller's function (PostgreSQL locks the account's row here).
        """

    def state(self, type_name: str) -> str:
        # Inside a write, the state the type will have when this operation
        # commits (so that /set responses can report their newState).
        row = self._db.execute(
            "SELECT seq FROM mail_accounts WHERE account_id = ?", (self.account_id,)
        ).fetchone()
        pending = self._recorder.pending_state(type_name, (0 if row is None else row[0]) + 1)
        return super().state(type_name) if pending is None else encode_state(pending)

    def _view_position(self, type_name: str, view: MailView) -> int:
        row = self._db.execute(
            "SELECT seq FROM mail_accounts WHERE account_id = ?", (self.account_id,)
        ).fetchone()
        first = (0 if row is None else row[0]) + 1
        pending = self._recorder.pending_view_position(type_name, first, view)
        return super()._view_position(type_name, view) if pending is None else pending

    def create_mailbox(
        self,
        name: str,
        parent_id: str | None,
        role: str | None,
        sort_order: int,
        is_subscribed: bool,
    ) -> MailboxRecord:
        record = MailboxRecord(
            ids.new_mailbox_id(), name, parent_id, role, sort_order, is_subscribed
        )
        becomes_trash = role == "trash" and self._trash() is None
        self._db.execute(
            "INSERT INTO mailboxes (account_id, id, name, parent_id, role, sort_order,"
            " is_subscribed) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.account_id, record.id, name, parent_id, role, sort_order, int(is_subscribed)),
        )
        self._recorder.created("Mailbox", record.id)
        self._recorder.event(MailboxEvent("mailbox_added", frozenset({record.id})))
        if becomes_trash:
            self._trash_changed()
        return record

    def update_mailbox(self, mailbox_id: str, **fields: Any) -> MailboxRecord:
        before = self._mailbox_record(mailbox_id)
        record = evolve(before, **fields)
        roles = {before.role, record.role}
        trash_before = self._trash() if "trash" in roles and len(roles) == 2 else None
        self._db.execute(
            "UPDATE mailboxes SET name = ?, parent_id = ?, role = ?, sort_order = ?,"
            " is_subscribed = ? WHERE account_id = ? AND id = ?",
            (
                record.name,
                record.parent_id,
                record.role,
                record.sort_order,
                int(record.is_subscribed),
                self.account_id,
                mailbox_id,
            ),
        )
        self._recorder.updated("Mailbox", mailbox_id)
        self._recorder.event(MailboxEvent("mailbox_updated", frozenset({mailbox_id})))
        if "trash" in roles and len(roles) == 2:
            self._trash_cache = _UNKNOWN
            if self._trash() != trash_before:
                self._trash_changed()
        return record

    def destroy_mailbox(self, mailbox_id: str) -> None:
        trash_before = self._trash()
        deleted = self._db.execute(
            "DELETE FROM mailboxes WHERE account_id = ? AND id = ?", (self.account_id, mailbox_id)
        )
        if deleted.rowcount == 0:
            raise KeyError(mailbox_id)
        self._recorder.destroyed("Mailbox", mailbox_id)
        self._recorder.event(MailboxEvent("mailbox_deleted", frozenset({mailbox_id})))
        if mailbox_id == trash_before:
            self._trash_changed()

    def note_acl_change(self, mailbox_id: str) -> None:
        self._mailbox_record(mailbox_id)  # KeyError when there is none
        self._recorder.updated("Mailbox", mailbox_id, audience=ADMINS)
        self._recorder.event(MailboxEvent("mailbox_updated", frozenset({mailbox_id})))

    # The counters (jmap_twisted.store.counters).

    def _trash(self) -> str | None:
        """
        The account's trash mailbox, looked up once per transaction (and
        again after a change of roles).
        """
        if self._trash_cache is _UNKNOWN:
            self._trash_cache = self._trash_id()
        return self._trash_cache  # type: ignore[return-value]

    def _tally(self, thread_id: str) -> ThreadTally:
        mailboxes = {}
        unread = 0
        for mailbox_id, emails, unread_emails in self._db.execute(
            "SELECT mailbox_id, emails, unread FROM mailbox_threads"
            " WHERE account_id = ? AND thread_id = ?"
            " UNION ALL SELECT NULL, unread, 0 FROM thread_unread"
            " WHERE account_id = ? AND thread_id = ?",
            (self.account_id, thread_id) * 2,
        ):
            if mailbox_id is None:
                unread = int(emails)
            else:
                mailboxes[mailbox_id] = (int(emails), int(unread_emails))
        return ThreadTally(mailboxes, unread)

    def _keep_tally(self, thread_id: str, old: ThreadTally, new: ThreadTally) -> None:
        """
        Change the thread's stored tally from ``old`` to ``new``.
        """
        key = (self.account_id, thread_id)
        gone = [(*key, m) for m in old.mailboxes if m not in new.mailboxes]
        added = [(*key, m, *c) for m, c in new.mailboxes.items() if m not in old.mailboxes]
        changed = [
            (*c, *key, m)
            for m, c in new.mailboxes.items()
            if m in old.mailboxes and old.mailboxes[m] != c
        ]
        if gone:
            self._db.executemany(
                "DELETE FROM mailbox_threads WHERE account_id = ? AND thread_id = ?"
                " AND mailbox_id = ?",
                gone,
            )
        if added:
            self._db.executemany(
                "INSERT INTO mailbox_threads (account_id, thread_id, mailbox_id, emails, unread)"
                " VALUES (?, ?, ?, ?, ?)",
                added,
            )
        if changed:
            self._db.executemany(
                "UPDATE mailbox_threads SET emails = ?, unread = ?"
                " WHERE account_id = ? AND thread_id = ? AND mailbox_id = ?",
                changed,
            )
        if new.unread == old.unread:
            return
        if not old.unread:
            self._db.execute(
                "INSERT INTO thread_unread (account_id, thread_id, unread) VALUES (?, ?, ?)",
                (*key, new.unread),
            )
        elif not new.unread:
            self._db.execute(
                "DELETE FROM thread_unread WHERE account_id = ? AND thread_id = ?", key
            )
        else:
            self._db.execute(
                "UPDATE thread_unread SET unread = ? WHERE account_id = ? AND thread_id = ?",
                (new.unread, *key),
            )

    def _move(
        self,
        thread_id: str,
        before: Membership | None,
        after: Membership | None,
        new_thread: bool = False,
    ) -> ThreadTally:
        """
        Count one email's change (see :func:`~jmap_twisted.store.counters.moved`).

        :param new_thread: the email starts its thread (nothing to read).
        :return: the thread's tally after the change.
        """
        old = _NO_THREAD if new_thread else self._tally(thread_id)
        new, deltas = counters.moved(old, before, after, self._trash())
        self._keep_tally(thread_id, old, new)
        if deltas:
            self._db.executemany(
                "UPDATE mailboxes SET total_emails = total_emails + ?,"
                " unread_emails = unread_emails + ?, total_threads = total_threads + ?,"
                " unread_threads = unread_threads + ? WHERE account_id = ? AND id = ?",
                [(*_values(d), self.account_id, m) for m, d in sorted(deltas.items())],
            )
        return new

    def _memberships(self) -> Iterator[tuple[str, Membership]]:
        """
        Every email of the account, from its rows: thread and membership.
        """
        mailboxes: dict[str, set[str]] = {}
        for email_id, mailbox_id in self._db.execute(
            "SELECT email_id, mailbox_id FROM email_mailboxes WHERE account_id = ?",
            (self.account_id,),
        ):
            mailboxes.setdefault(email_id, set()).add(mailbox_id)
        for email_id, thread_id, seen in self._db.execute(
            "SELECT id, thread_id, seen FROM emails WHERE account_id = ?", (self.account_id,)
        ):
            yield thread_id, Membership(frozenset(mailboxes.get(email_id, ())), not seen)

    def _kept_tallies(self) -> dict[str, ThreadTally]:
        mailboxes: dict[str, dict[str, tuple[int, int]]] = {}
        unread: dict[str, int] = {}
        for thread_id, mailbox_id, emails, unread_emails in self._db.execute(
            "SELECT thread_id, mailbox_id, emails, unread FROM mailbox_threads"
            " WHERE account_id = ?",
            (self.account_id,),
        ):
            mailboxes.setdefault(thread_id, {})[mailbox_id] = (int(emails), int(unread_emails))
        for thread_id, count in self._db.execute(
            "SELECT thread_id, unread FROM thread_unread WHERE account_id = ?",
            (self.account_id,),
        ):
            unread[thread_id] = int(count)
        return {
            t: ThreadTally(mailboxes.get(t, {}), unread.get(t, 0))
            for t in mailboxes.keys() | unread.keys()
        }

    def recount(self) -> Recount:
        """
        Recompute the account's counters from its emails and keep those
        that differ; mailboxes whose counts change are recorded as
        changed (counts only).
        """
        trash = self._trash()
        counted = counters.recount(self._memberships(), trash)
        kept = self._kept_tallies()
        wrong_threads = 0
        for thread_id in sorted(kept.keys() | counted.keys()):
            old = kept.get(thread_id, _NO_THREAD)
            new = counted.get(thread_id, _NO_THREAD)
            if old != new:
                self._keep_tally(thread_id, old, new)
                wrong_threads += 1
        held = self.mailbox_counts([m.id for m in self.mailboxes()])
        right = counters.totals(counted.values(), held, trash)
        repaired = []
        for mailbox_id, counts in held.items():
            if counts == right[mailbox_id]:
                continue
            fixed = right[mailbox_id]
            self._db.execute(
                "UPDATE mailboxes SET total_emails = ?, unread_emails = ?, total_threads = ?,"
                " unread_threads = ? WHERE account_id = ? AND id = ?",
                (*_values(fixed), self.account_id, mailbox_id),
            )
            self._recorder.updated("Mailbox", mailbox_id, counts_only=True)
            repaired.append(MailboxRecount(mailbox_id, counts, fixed))
        return Recount(tuple(repaired), wrong_threads)

    def _trash_changed(self) -> None:
        # Which emails count for unreadThreads changed: count again.
        self._trash_cache = _UNKNOWN
        self.recount()

    def _find_thread(self, summary: EmailSummary) -> str | None:
        """
        The thread of the first email (by Message-ID, then email id) that
        mentions one of the same Message-IDs and has the same base subject.
        """
        mentioned = _mentioned(summary)
        if not mentioned:
            return None
        row = self._db.execute(
            "SELECT e.thread_id FROM email_message_ids m"
            " JOIN emails e ON e.account_id = m.account_id AND e.id = m.email_id"
            f" WHERE m.account_id = ? AND m.message_id IN ({_marks(len(mentioned))})"
            " AND e.base_subject = ? ORDER BY m.message_id, m.email_id LIMIT 1",
            (self.account_id, *mentioned, summary.base_subject),
        ).fetchone()
        return None if row is None else str(row[0])

    def add_email(
        self,
        raw: bytes,
        mailbox_ids: Collection[str],
        keywords: Collection[str],
        received_at: float,
    ) -> EmailRecord:
        raw = bytes(raw)
        # The account's writers are serialised (its mail_accounts row is
        # locked, or the database's write lock held), so the usage read
        # here is the latest and nobody else takes the room it leaves.
        quota = self.quota()
        quotas.check_room(quota, len(raw))
        summary = summarize(raw)  # parsed and hashed here, on the writer thread
        blob_id = ids.blob_id(raw)
        self._db.execute(
            # Updating a row that exists locks it: a concurrent destroy_email
            # cannot delete the octets under this new email (see _lock_blob).
            "INSERT INTO blobs (id, size, data) VALUES (?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET size = excluded.size",
            (blob_id, len(raw), raw),
        )
        thread_id = self._find_thread(summary)
        new_thread = thread_id is None
        record = EmailRecord(
            id=ids.new_email_id(),
            blob_id=blob_id,
            thread_id=thread_id or ids.new_thread_id(),
            mailbox_ids=frozenset(mailbox_ids),
            keywords=frozenset(keywords),
            size=len(raw),
            received_at=received_at,
            summary=summary,
        )
        seen = int(SEEN in record.keywords)
        self._insert_email(record, raw, seen)
        self._insert_mailboxes(record, record.mailbox_ids, seen)
        self._db.executemany(
            "INSERT INTO email_keywords (account_id, email_id, keyword) VALUES (?, ?, ?)",
            [(self.account_id, record.id, k) for k in record.keywords],
        )
        self._db.executemany(
            "INSERT INTO email_message_ids (account_id, message_id, email_id) VALUES (?, ?, ?)",
            [(self.account_id, m, record.id) for m in _mentioned(summary)],
        )
        membership = Membership.of(record)
        tally = self._move(record.thread_id, None, membership, new_thread)
        record_email_added(self._recorder, record, new_thread, counters.others(tally, membership))
        self._change_usage(record.size, 1)
        quotas.record_usage_changed(self._recorder, quota)
        return record

    def _change_usage(self, size: int, count: int) -> None:
        """
        Add an email's size and one message to the account's quota usage
        (``count`` 1), or take them away (``count`` -1).
        """
        self._db.execute(
            "INSERT INTO mail_accounts (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
            (self.account_id,),
        )
        self._db.execute(
            "UPDATE mail_accounts SET used_octets = used_octets + ?,"
            " used_messages = used_messages + ? WHERE account_id = ?",
            (count * size, count, self.account_id),
        )

    def set_quota(self, storage_limit: int | None, message_limit: int | None) -> AccountQuota:
        before = self.quota()
        after = evolve(
            before,
            storage_limit=quotas.checked_limit(storage_limit),
            message_limit=quotas.checked_limit(message_limit),
        )
        self._db.execute(
            "INSERT INTO mail_accounts (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
            (self.account_id,),
        )
        self._db.execute(
            "UPDATE mail_accounts SET storage_limit = ?, message_limit = ? WHERE account_id = ?",
            (after.storage_limit, after.message_limit, self.account_id),
        )
        quotas.record_limits_changed(self._recorder, before, after)
        return after

    #: The ``emails`` columns every backend has, in the order of :meth:`_email_values`.
    EMAIL_INSERT_COLUMNS = (
        "account_id, id, blob_id, thread_id, size, received_at, seen,"
        " subject, base_subject, from_text, to_text, cc_text, bcc_text, from_sort, to_sort,"
        " sent_at, preview, has_attachment, message_ids, in_reply_to, refs"
    )

    def _email_values(self, record: EmailRecord, seen: int) -> tuple[Any, ...]:
        summary = record.summary
        return (
            self.account_id,
            record.id,
            record.blob_id,
            record.thread_id,
            record.size,
            record.received_at,
            seen,
            summary.subject,
            summary.base_subject,
            summary.from_text,
            summary.to_text,
            summary.cc_text,
            summary.bcc_text,
            summary.from_sort,
            summary.to_sort,
            summary.sent_at,
            summary.preview,
            int(summary.has_attachment),
            json.dumps(list(summary.message_ids)),
            json.dumps(list(summary.in_reply_to)),
            json.dumps(list(summary.references)),
        )

    def _insert_email(self, record: EmailRecord, raw: bytes, seen: int) -> None:
        """
        Insert the email's row and its searchable text.
        """
        raise NotImplementedError

    def _lock_blob(self, blob_id: str) -> None:
        """
        Before deciding whether octets are still referred to: wait for
        transactions that are adding references to them (PostgreSQL; an
        SQLite write holds the database's only write lock already).
        """

    def _delete_email(self, email_id: str) -> None:
        """
        Delete the email's row and its searchable text.
        """
        raise NotImplementedError

    def _insert_mailboxes(
        self, record: EmailRecord, mailbox_ids: Collection[str], seen: int
    ) -> None:
        self._db.executemany(
            "INSERT INTO email_mailboxes (account_id, email_id, mailbox_id, received_at,"
            " thread_id, seen) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (self.account_id, record.id, m, record.received_at, record.thread_id, seen)
                for m in mailbox_ids
            ],
        )

    def update_email(
        self,
        email_id: str,
        mailbox_ids: Collection[str] | None = None,
        keywords: Collection[str] | None = None,
    ) -> EmailRecord:
        before = self._email(email_id)
        after = before
        if mailbox_ids is not None:
            after = evolve(after, mailbox_ids=frozenset(mailbox_ids))
        if keywords is not None:
            after = evolve(after, keywords=frozenset(keywords))
        seen = int(SEEN in after.keywords)
        key = (self.account_id, email_id)
        self._db.executemany(
            "DELETE FROM email_mailboxes WHERE account_id = ? AND email_id = ? AND mailbox_id = ?",
            [(*key, m) for m in before.mailbox_ids - after.mailbox_ids],
        )
        self._insert_mailboxes(after, after.mailbox_ids - before.mailbox_ids, seen)
        self._db.executemany(
            "DELETE FROM email_keywords WHERE account_id = ? AND email_id = ? AND keyword = ?",
            [(*key, k) for k in before.keywords - after.keywords],
        )
        self._db.executemany(
            "INSERT INTO email_keywords (account_id, email_id, keyword) VALUES (?, ?, ?)",
            [(*key, k) for k in after.keywords - before.keywords],
        )
        if seen != int(SEEN in before.keywords):
            self._db.execute(
                "UPDATE emails SET seen = ? WHERE account_id = ? AND id = ?", (seen, *key)
            )
            self._db.execute(
                "UPDATE email_mailboxes SET seen = ? WHERE account_id = ? AND email_id = ?",
                (seen, *key),
            )
        was, now = Membership.of(before), Membership.of(after)
        thread_mailboxes: set[str] = set()
        if was != now:
            tally = self._move(after.thread_id, was, now)
            thread_mailboxes = counters.others(tally, now)
        record_email_updated(self._recorder, before, after, thread_mailboxes)
        return after

    def put_document(self, type_name: str, document_id: str, document: Mapping[str, Any]) -> None:
        existed = self._db.execute(
            "SELECT 1 FROM mail_documents WHERE account_id = ? AND type = ? AND id = ?",
            (self.account_id, type_name, document_id),
        ).fetchone()
        self._db.execute(
            "INSERT INTO mail_documents (account_id, type, id, document) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (account_id, type, id) DO UPDATE SET document = excluded.document",
            (self.account_id, type_name, document_id, json.dumps(dict(document))),
        )
        if existed:
            self._recorder.updated(type_name, document_id)
        else:
            self._recorder.created(type_name, document_id)

    def delete_document(self, type_name: str, document_id: str) -> None:
        deleted = self._db.execute(
            "DELETE FROM mail_documents WHERE account_id = ? AND type = ? AND id = ?",
            (self.account_id, type_name, document_id),
        )
        if deleted.rowcount == 0:
            raise KeyError(document_id)
        self._recorder.destroyed(type_name, document_id)

    def destroy_email(self, email_id: str) -> None:
        record = self._email(email_id)
        key = (self.account_id, email_id)
        self._delete_email(email_id)
        self._db.execute("DELETE FROM email_mailboxes WHERE account_id = ? AND email_id = ?", key)
        self._db.execute("DELETE FROM email_keywords WHERE account_id = ? AND email_id = ?", key)
        self._db.executemany(
            "DELETE FROM email_message_ids WHERE account_id = ? AND message_id = ? AND email_id = ?",
            [(self.account_id, m, email_id) for m in _mentioned(record.summary)],
        )
        # The octets go when nothing refers to them any more, in any account.
        self._lock_blob(record.blob_id)
        self._db.execute(
            "DELETE FROM blobs WHERE id = ?"
            " AND NOT EXISTS (SELECT 1 FROM emails WHERE blob_id = ?)"
            " AND NOT EXISTS (SELECT 1 FROM account_blobs WHERE blob_id = ?)",
            (record.blob_id,) * 3,
        )
        tally = self._move(record.thread_id, Membership.of(record), None)
        thread_mailboxes = counters.others(tally, None)
        thread_left = (
            self._db.execute(
                "SELECT 1 FROM emails WHERE account_id = ? AND thread_id = ? LIMIT 1",
                (self.account_id, record.thread_id),
            ).fetchone()
            is not None
        )
        record_email_destroyed(self._recorder, record, thread_left, thread_mailboxes)
        self._change_usage(record.size, -1)
        quotas.record_usage_changed(self._recorder, self.quota())


def record_commit(
    db: SQLConnection,
    account_id: str,
    recorder: ChangeRecorder,
    delivery: bool,
    now: float,
) -> StoreCommit | None:
    """
    Write an operation's change-log entries (with the mailboxes they
    concern and the high-water marks they move), the account's new
    ``seq`` and ``modseq`` and the types' states, in the operation's
    transaction.
    """
    if not recorder:
        return None
    db.execute(
        "INSERT INTO mail_accounts (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
        (account_id,),
    )
    seq, modseq = db.execute(
        "SELECT seq, modseq FROM mail_accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    modseq += 1
    entries = recorder.entries(seq + 1)
    db.executemany(
        "INSERT INTO mail_changes (account_id, seq, type, object_id, kind, counts_only,"
        " modseq, committed, audience) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                account_id,
                e.seq,
                e.type_name,
                e.object_id,
                e.kind,
                int(e.counts_only),
                modseq,
                now,
                e.audience,
            )
            for e in entries
        ],
    )
    db.executemany(
        "INSERT INTO mail_change_mailboxes (account_id, seq, type, mailbox_id, was_in, is_in)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (account_id, e.seq, e.type_name, mailbox_id, int(was), int(is_in))
            for e in entries
            for mailbox_id, was, is_in in e.mailboxes
        ],
    )
    marks = high_water_marks(entries)
    db.executemany(
        "INSERT INTO mail_mailbox_states (account_id, type, mailbox_id, audience, seq)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, type, mailbox_id, audience)"
        " DO UPDATE SET seq = excluded.seq",
        [(account_id, t, m, a, mark) for (t, m, a), mark in sorted(marks.items())],
    )
    states: dict[str, int] = {}
    for entry in entries:
        if entry.audience != VIEWS:
            states[entry.type_name] = entry.seq
    db.executemany(
        "INSERT INTO mail_states (account_id, type, seq) VALUES (?, ?, ?)"
        " ON CONFLICT (account_id, type) DO UPDATE SET seq = excluded.seq",
        [(account_id, type_name, type_seq) for type_name, type_seq in states.items()],
    )
    if entries:
        seq = entries[-1].seq
    db.execute(
        "UPDATE mail_accounts SET seq = ?, modseq = ? WHERE account_id = ?",
        (seq, modseq, account_id),
    )
    return StoreCommit(
        account_id,
        modseq,
        tuple(recorder.events),
        {t: encode_state(s) for t, s in states.items()},
        delivery,
        touched(marks),
    )


def write_transaction(
    db: SQLConnection,
    writer_class: type[SQLWriter],
    account_id: str,
    fn: Callable[[IMailWriter], T],
    delivery: bool,
    now: float,
) -> tuple[T, StoreCommit | None]:
    """
    One :meth:`SQLMailStore.write`, inside the database's write transaction.
    """
    recorder = ChangeRecorder()
    writer = writer_class(db, account_id, recorder)
    try:
        writer.begin()
        result = fn(writer)
        return result, record_commit(db, account_id, recorder, delivery, now)
    finally:
        if recorder.only_removes():
            frees_space()  # destroying mail works on a full disk


def prune(db: SQLConnection, older_than: float) -> int:
    """
    Delete, per account and type, the change-log entries committed before
    ``older_than`` (and any older entry of the type) with the mailboxes
    they concern, moving the type's ``oldest`` to the newest entry
    deleted.  High-water marks stay.
    """
    cutoffs = db.execute(
        "SELECT account_id, type, MAX(seq) FROM mail_changes WHERE committed < ?"
        " GROUP BY account_id, type",
        (older_than,),
    ).fetchall()
    deleted = 0
    for account_id, type_name, cutoff in cutoffs:
        deleted += db.execute(
            "DELETE FROM mail_changes WHERE account_id = ? AND type = ? AND seq <= ?",
            (account_id, type_name, cutoff),
        ).rowcount
        db.execute(
            "DELETE FROM mail_change_mailboxes WHERE account_id = ? AND type = ? AND seq <= ?",
            (account_id, type_name, cutoff),
        )
        db.execute(
            "UPDATE mail_states SET oldest = CASE WHEN oldest > ? THEN oldest ELSE ? END"
            " WHERE account_id = ? AND type = ?",
            (cutoff, cutoff, account_id, type_name),
        )
    return deleted


@implementer(IMailStore, IChangeLogPruning, IMailboxCounters)
class SQLMailStore:
    """
    :class:`~jmap_twisted.interfaces.IMailStore` in an SQL database;
    subclasses name their reader and writer classes.

    :param db: the started database, possibly shared with the directory
        and blob stores.
    :param clock: gives the commit time recorded with change-log entries,
        for :meth:`prune_changes`; read on the reactor thread.
    """

    reader_class: type[SQLReader] = SQLReader
    writer_class: type[SQLWriter] = SQLWriter

    def __init__(self, db: Database, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock
        self._commits = CommitListeners()

    def setup_account(self, account_id: str) -> Deferred[None]:
        """
        Create the standard mailboxes the account lacks.  Looked at in a
        read transaction first: an account that has them all (every
        delivery asks) costs no write transaction and no commit flush.
        """

        def missing(reader: IMailReader) -> bool:
            roles = {m.role for m in reader.mailboxes()}
            return any(role not in roles for _, role, _ in STANDARD_MAILBOXES)

        def create(writer: IMailWriter) -> None:
            roles = {m.role for m in writer.mailboxes()}
            for name, role, order in STANDARD_MAILBOXES:
                if role not in roles:
                    writer.create_mailbox(name, None, role, order, True)

        def maybe_create(needed: bool) -> Deferred[None]:
            return self.write(account_id, create) if needed else succeed(None)

        return self.read(account_id, missing).addCallback(maybe_create)

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        reader_class = self.reader_class
        return self._db.read_for(
            account_id, lambda connection: fn(reader_class(connection, account_id))
        )

    def write(
        self, account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        committed = self._db.run_for(
            account_id,
            write_transaction,
            self.writer_class,
            account_id,
            fn,
            delivery,
            self._clock.seconds(),
        )
        published: Deferred[T] = committed.addCallback(self._published)
        # A write goes on once submitted, whoever stops waiting for it
        # (a client going away): cancelling the caller's Deferred must not
        # skip publishing the commit.
        result: Deferred[T] = Deferred()
        published.chainDeferred(result)
        return result

    def _published(self, outcome: tuple[T, StoreCommit | None]) -> T:
        result, commit = outcome
        if commit is not None:
            self._commits.publish(commit)
        return result

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        return self._commits.subscribe(listener)

    def prune_changes(self, before: float) -> Deferred[int]:
        """
        Drop the change-log entries committed before ``before``, in every
        account (:class:`~jmap_twisted.interfaces.IChangeLogPruning`).

        A type's states from before the newest entry dropped then answer
        ``cannotCalculateChanges``; later states, and the states of types
        whose entries were all kept, still work.

        :param before: a POSIX time, as given by the store's clock.
        :return: fires with the number of entries deleted.
        """
        return self._db.run(prune, before)

    def recount(self, account_id: str) -> Deferred[Recount]:
        """
        Recompute the account's mailbox counts from its emails
        (:class:`~jmap_twisted.interfaces.IMailboxCounters`).
        """

        def recount(writer: IMailWriter) -> Recount:
            assert isinstance(writer, SQLWriter)
            return writer.recount()

        return self.write(account_id, recount)
