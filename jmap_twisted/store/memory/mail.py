"""
The in-memory mail store: the reference implementation of
:class:`~jmap_twisted.interfaces.IMailStore` and the tests' double.

Each write works on a copy of the account's data and replaces it on
success, so a failing operation leaves nothing behind.

Mailbox counts are counters kept from per-thread tallies, as the SQL
stores keep them (:mod:`jmap_twisted.store.counters`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, TypeVar

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
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
    MailboxCounts,
    MailboxEvent,
    MailboxRecord,
    MailboxRecount,
    MailView,
    Recount,
    StoreCommit,
)
from jmap_twisted.store import counters, ids, mailquery
from jmap_twisted.store import quota as quotas
from jmap_twisted.store.changelog import (
    ADMINS,
    MAIL_TYPES,
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
    view_position,
)
from jmap_twisted.store.counters import Membership, ThreadTally
from jmap_twisted.store.mailmodel import (
    STANDARD_MAILBOXES,
    record_email_added,
    record_email_destroyed,
    record_email_updated,
)
from jmap_twisted.store.summary import summarize

log = Logger()
T = TypeVar("T")


@define
class _AccountData:
    mailboxes: dict[str, MailboxRecord] = field(factory=dict)
    emails: dict[str, EmailRecord] = field(factory=dict)
    blobs: dict[str, bytes] = field(factory=dict)
    #: Change-log entries with the time of their commit, oldest first.
    log: list[tuple[LogEntry, float]] = field(factory=list)
    seq: int = 0
    modseq: int = 0
    #: type → the newest position pruned: older states cannot be resolved.
    oldest: dict[str, int] = field(factory=dict)
    states: dict[str, int] = field(factory=dict)
    #: (type, mailbox id, audience) → the latest entry concerning the
    #: mailbox: high-water marks of sharees' views, never pruned.
    marks: dict[tuple[str, str, int], int] = field(factory=dict)
    #: Message-ID → ids of emails mentioning it (own id or references).
    mentions: dict[str, set[str]] = field(factory=dict)
    #: type → id → JSON document.
    documents: dict[str, dict[str, dict[str, Any]]] = field(factory=dict)
    #: Usage and limits, changed with every email added or destroyed.
    quota: AccountQuota = field(factory=AccountQuota)
    #: thread id → its tally (threads with none are absent).
    tallies: dict[str, ThreadTally] = field(factory=dict)
    #: mailbox id → its counts, for every mailbox.
    counts: dict[str, MailboxCounts] = field(factory=dict)

    def copy(self) -> _AccountData:
        return _AccountData(
            mailboxes=dict(self.mailboxes),
            emails=dict(self.emails),
            blobs=dict(self.blobs),
            log=list(self.log),
            seq=self.seq,
            modseq=self.modseq,
            oldest=dict(self.oldest),
            states=dict(self.states),
            marks=dict(self.marks),
            mentions={k: set(v) for k, v in self.mentions.items()},
            documents={k: dict(v) for k, v in self.documents.items()},
            quota=self.quota,
            tallies=dict(self.tallies),
            counts=dict(self.counts),
        )


def _mentioned(email: EmailRecord) -> set[str]:
    s = email.summary
    return {*s.message_ids, *s.in_reply_to, *s.references}


@implementer(IMailReader)
class _Reader:
    def __init__(self, account_id: str, data: _AccountData) -> None:
        self.account_id = account_id
        self._data = data

    def mailboxes(self) -> list[MailboxRecord]:
        return list(self._data.mailboxes.values())

    def _trash_id(self) -> str | None:
        return next((m.id for m in self._data.mailboxes.values() if m.role == "trash"), None)

    def mailbox_counts(self, mailbox_ids: Collection[str]) -> dict[str, MailboxCounts]:
        counts = self._data.counts
        return {m: counts[m] for m in mailbox_ids if m in counts}

    def emails(self, email_ids: Collection[str]) -> dict[str, EmailRecord]:
        found = self._data.emails
        return {i: found[i] for i in email_ids if i in found}

    def _thread(self, thread_id: str) -> list[EmailRecord]:
        members = [e for e in self._data.emails.values() if e.thread_id == thread_id]
        members.sort(key=lambda e: (e.received_at, e.id))
        return members

    def thread_emails(self, thread_ids: Collection[str]) -> dict[str, list[str]]:
        wanted = set(thread_ids)
        result: dict[str, list[EmailRecord]] = {}
        for email in self._data.emails.values():
            if email.thread_id in wanted:
                result.setdefault(email.thread_id, []).append(email)
        return {
            t: [e.id for e in sorted(members, key=lambda e: (e.received_at, e.id))]
            for t, members in result.items()
        }

    def _headers(self, record: EmailRecord) -> list[tuple[str, str]]:
        raw = self._data.blobs.get(record.blob_id, b"")
        message = BytesHeaderParser(policy=compat32).parsebytes(raw)
        return [(name, str(value)) for name, value in message.items()]

    def query_emails(
        self,
        filter: Mapping[str, Any] | None,
        sort: Sequence[Mapping[str, Any]],
        collapse_threads: bool,
        position: int = 0,
        limit: int | None = None,
    ) -> tuple[list[str], int]:
        matched = mailquery.run_query(
            self._data.emails.values(), filter, sort, collapse_threads, self._thread, self._headers
        )
        end = None if limit is None else position + limit
        return matched[position:end], len(matched)

    def state(self, type_name: str) -> str:
        return encode_state(self._data.states.get(type_name, 0))

    def changes(self, type_name: str, since_state: str, max_changes: int | None) -> ChangeBatch:
        current = self._data.states.get(type_name, 0)
        since = decode_state(since_state, current, self._data.oldest.get(type_name, 0))
        entries = (
            e
            for e, _ in self._data.log
            if e.type_name == type_name and e.seq > since and e.audience != VIEWS
        )
        return merge_changes(entries, since, current, max_changes)

    def _view_position(self, type_name: str, view: MailView) -> int:
        return view_position(self._data.marks, type_name, view)

    def view_state(self, type_name: str, view: MailView) -> str:
        return sharee_state(type_name, view, self._view_position(type_name, view))

    def view_changes(
        self, type_name: str, since_state: str, max_changes: int | None, view: MailView
    ) -> ChangeBatch:
        def entries(after: int) -> list[LogEntry]:
            return [e for e, _ in self._data.log if e.type_name == type_name and e.seq > after]

        def readable_threads(thread_ids: Collection[str]) -> set[str]:
            return {
                e.thread_id
                for e in self._data.emails.values()
                if e.thread_id in thread_ids and not e.mailbox_ids.isdisjoint(view.readable)
            }

        return changes_for_view(
            type_name,
            since_state,
            max_changes,
            view,
            current=self._view_position(type_name, view),
            oldest=self._data.oldest.get(type_name, 0),
            entries=entries,
            readable_threads=readable_threads,
            mailbox_ids=lambda: list(self._data.mailboxes),
        )

    def message(self, blob_id: str) -> bytes | None:
        return self._data.blobs.get(blob_id)

    def documents(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: copy.deepcopy(v) for k, v in self._data.documents.get(type_name, {}).items()}

    def quota(self) -> AccountQuota:
        return self._data.quota


@implementer(IMailWriter)
class _Writer(_Reader):
    def __init__(self, account_id: str, data: _AccountData, recorder: ChangeRecorder) -> None:
        super().__init__(account_id, data)
        self._recorder = recorder

    def state(self, type_name: str) -> str:
        # Inside a write, the state the type will have when it commits, so
        # /set responses can report their newState.
        pending = self._recorder.pending_state(type_name, self._data.seq + 1)
        return super().state(type_name) if pending is None else encode_state(pending)

    def _view_position(self, type_name: str, view: MailView) -> int:
        pending = self._recorder.pending_view_position(type_name, self._data.seq + 1, view)
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
        trash = self._trash_id()
        self._data.mailboxes[record.id] = record
        self._data.counts[record.id] = counters.ZERO
        self._recorder.created("Mailbox", record.id)
        self._recorder.event(MailboxEvent("mailbox_added", frozenset({record.id})))
        self._recount_if_trash_moved(trash)
        return record

    def update_mailbox(self, mailbox_id: str, **fields: Any) -> MailboxRecord:
        trash = self._trash_id()
        record = evolve(self._data.mailboxes[mailbox_id], **fields)
        self._data.mailboxes[mailbox_id] = record
        self._recorder.updated("Mailbox", mailbox_id)
        self._recorder.event(MailboxEvent("mailbox_updated", frozenset({mailbox_id})))
        self._recount_if_trash_moved(trash)
        return record

    def destroy_mailbox(self, mailbox_id: str) -> None:
        trash = self._trash_id()
        del self._data.mailboxes[mailbox_id]
        del self._data.counts[mailbox_id]
        self._recorder.destroyed("Mailbox", mailbox_id)
        self._recorder.event(MailboxEvent("mailbox_deleted", frozenset({mailbox_id})))
        self._recount_if_trash_moved(trash)

    def _recount_if_trash_moved(self, trash_before: str | None) -> None:
        # Which emails count for unreadThreads depends on the trash.
        if self._trash_id() != trash_before:
            self.recount()

    def _move(
        self, thread_id: str, before: Membership | None, after: Membership | None
    ) -> ThreadTally:
        """
        Count one email's change; return its thread's new tally.
        """
        tallies, counts = self._data.tallies, self._data.counts
        tally, deltas = counters.moved(
            tallies.get(thread_id, ThreadTally()), before, after, self._trash_id()
        )
        if tally:
            tallies[thread_id] = tally
        else:
            tallies.pop(thread_id, None)
        for mailbox_id, delta in deltas.items():
            if mailbox_id in counts:
                counts[mailbox_id] = counters.plus(counts[mailbox_id], delta)
        return tally

    def recount(self) -> Recount:
        """
        Recompute the counters from the emails and keep those that differ
        (:class:`~jmap_twisted.interfaces.IMailboxCounters`).
        """
        trash = self._trash_id()
        counted = counters.recount(
            ((e.thread_id, Membership.of(e)) for e in self._data.emails.values()), trash
        )
        kept = self._data.tallies
        wrong_threads = sum(
            kept.get(t, ThreadTally()) != counted.get(t, ThreadTally())
            for t in kept.keys() | counted.keys()
        )
        self._data.tallies = counted
        right = counters.totals(counted.values(), self._data.counts, trash)
        repaired = []
        for mailbox_id, counts in self._data.counts.items():
            if counts != right[mailbox_id]:
                repaired.append(MailboxRecount(mailbox_id, counts, right[mailbox_id]))
                self._recorder.updated("Mailbox", mailbox_id, counts_only=True)
        self._data.counts = right
        return Recount(tuple(repaired), wrong_threads)

    def note_acl_change(self, mailbox_id: str) -> None:
        if mailbox_id not in self._data.mailboxes:
            raise KeyError(mailbox_id)
        self._recorder.updated("Mailbox", mailbox_id, audience=ADMINS)
        self._recorder.event(MailboxEvent("mailbox_updated", frozenset({mailbox_id})))

    def add_email(
        self,
        raw: bytes,
        mailbox_ids: Collection[str],
        keywords: Collection[str],
        received_at: float,
    ) -> EmailRecord:
        quotas.check_room(self._data.quota, len(raw))
        summary = summarize(raw)
        blob_id = ids.blob_id(raw)
        self._data.blobs[blob_id] = raw
        probe = EmailRecord("", blob_id, "", frozenset(), frozenset(), 0, 0.0, summary)
        thread_id = self._find_thread(probe)
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
        self._data.emails[record.id] = record
        for message_id in _mentioned(record):
            self._data.mentions.setdefault(message_id, set()).add(record.id)
        membership = Membership.of(record)
        tally = self._move(record.thread_id, None, membership)
        record_email_added(self._recorder, record, new_thread, counters.others(tally, membership))
        self._data.quota = quotas.with_email(self._data.quota, record.size)
        quotas.record_usage_changed(self._recorder, self._data.quota)
        return record

    def _find_thread(self, probe: EmailRecord) -> str | None:
        for message_id in sorted(_mentioned(probe)):
            for email_id in sorted(self._data.mentions.get(message_id, ())):
                other = self._data.emails[email_id]
                if other.summary.base_subject == probe.summary.base_subject:
                    return other.thread_id
        return None

    def update_email(
        self,
        email_id: str,
        mailbox_ids: Collection[str] | None = None,
        keywords: Collection[str] | None = None,
    ) -> EmailRecord:
        before = self._data.emails[email_id]
        after = before
        if mailbox_ids is not None:
            after = evolve(after, mailbox_ids=frozenset(mailbox_ids))
        if keywords is not None:
            after = evolve(after, keywords=frozenset(keywords))
        self._data.emails[email_id] = after
        was, now = Membership.of(before), Membership.of(after)
        thread_mailboxes: set[str] = set()
        if was != now:
            thread_mailboxes = counters.others(self._move(after.thread_id, was, now), now)
        record_email_updated(self._recorder, before, after, thread_mailboxes)
        return after

    def put_document(self, type_name: str, document_id: str, document: Mapping[str, Any]) -> None:
        documents = self._data.documents.setdefault(type_name, {})
        if document_id in documents:
            self._recorder.updated(type_name, document_id)
        else:
            self._recorder.created(type_name, document_id)
        documents[document_id] = copy.deepcopy(dict(document))

    def delete_document(self, type_name: str, document_id: str) -> None:
        del self._data.documents[type_name][document_id]
        self._recorder.destroyed(type_name, document_id)

    def destroy_email(self, email_id: str) -> None:
        record = self._data.emails.pop(email_id)
        for message_id in _mentioned(record):
            holders = self._data.mentions.get(message_id)
            if holders is not None:
                holders.discard(email_id)
                if not holders:
                    del self._data.mentions[message_id]
        thread_mailboxes = counters.others(
            self._move(record.thread_id, Membership.of(record), None), None
        )
        thread_left = any(e.thread_id == record.thread_id for e in self._data.emails.values())
        if not any(e.blob_id == record.blob_id for e in self._data.emails.values()):
            self._data.blobs.pop(record.blob_id, None)
        record_email_destroyed(self._recorder, record, thread_left, thread_mailboxes)
        self._data.quota = quotas.with_email(self._data.quota, record.size, -1)
        quotas.record_usage_changed(self._recorder, self._data.quota)

    def set_quota(self, storage_limit: int | None, message_limit: int | None) -> AccountQuota:
        before = self._data.quota
        after = evolve(
            before,
            storage_limit=quotas.checked_limit(storage_limit),
            message_limit=quotas.checked_limit(message_limit),
        )
        self._data.quota = after
        quotas.record_limits_changed(self._recorder, before, after)
        return after


@implementer(IMailStore, IChangeLogPruning, IMailboxCounters)
class MemoryMailStore:
    """
    Mail kept in memory.  Operations run synchronously and return fired
    Deferreds.

    :param clock: gives the commit time of change-log entries, for
        :meth:`prune_changes`.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._accounts: dict[str, _AccountData] = {}
        self._commits = CommitListeners()

    def _account(self, account_id: str) -> _AccountData:
        return self._accounts.setdefault(account_id, _AccountData())

    def setup_account(self, account_id: str) -> Deferred[None]:
        def create(writer: IMailWriter) -> None:
            roles = {m.role for m in writer.mailboxes()}
            for name, role, order in STANDARD_MAILBOXES:
                if role not in roles:
                    writer.create_mailbox(name, None, role, order, True)

        return self.write(account_id, create)

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        try:
            return succeed(fn(_Reader(account_id, self._account(account_id))))
        except Exception:
            return fail()

    def write(
        self, account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        data = self._account(account_id).copy()
        recorder = ChangeRecorder()
        try:
            result = fn(_Writer(account_id, data, recorder))
        except Exception:
            return fail()
        commit = self._commit(account_id, data, recorder, delivery)
        self._accounts[account_id] = data
        if commit is not None:
            self._commits.publish(commit)
        return succeed(result)

    def _commit(
        self, account_id: str, data: _AccountData, recorder: ChangeRecorder, delivery: bool
    ) -> StoreCommit | None:
        if not recorder:
            return None
        entries = recorder.entries(data.seq + 1)
        now = self._clock.seconds()
        data.log.extend((entry, now) for entry in entries)
        if entries:
            data.seq = entries[-1].seq
        data.modseq += 1
        changed: dict[str, str] = {}
        for entry in entries:
            if entry.audience != VIEWS:
                data.states[entry.type_name] = entry.seq
                changed[entry.type_name] = encode_state(entry.seq)
        marks = high_water_marks(entries)
        data.marks.update(marks)
        return StoreCommit(
            account_id,
            data.modseq,
            tuple(recorder.events),
            changed,
            delivery,
            touched(marks),
        )

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        return self._commits.subscribe(listener)

    def prune_changes(self, before: float) -> Deferred[int]:
        """
        Drop, in every account, the change-log entries committed before
        ``before`` and any older entry of their type, as the SQL stores do
        (:class:`~jmap_twisted.interfaces.IChangeLogPruning`); the
        high-water marks of sharees' views stay.

        :param before: a POSIX time, as given by the store's clock.
        :return: fires with the number of entries deleted.
        """
        deleted = 0
        for data in self._accounts.values():
            cutoffs: dict[str, int] = {}
            for entry, committed in data.log:
                if committed < before:
                    cutoffs[entry.type_name] = max(cutoffs.get(entry.type_name, 0), entry.seq)
            kept = [
                (entry, committed)
                for entry, committed in data.log
                if entry.seq > cutoffs.get(entry.type_name, 0)
            ]
            deleted += len(data.log) - len(kept)
            data.log = kept
            for type_name, cutoff in cutoffs.items():
                data.oldest[type_name] = max(data.oldest.get(type_name, 0), cutoff)
        return succeed(deleted)

    def recount(self, account_id: str) -> Deferred[Recount]:
        """
        Recompute the account's mailbox counts from its emails
        (:class:`~jmap_twisted.interfaces.IMailboxCounters`).
        """

        def recount(writer: IMailWriter) -> Recount:
            assert isinstance(writer, _Writer)
            return writer.recount()

        return self.write(account_id, recount)


__all__ = ["MAIL_TYPES", "MemoryMailStore"]
